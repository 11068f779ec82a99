package coord

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

// Step results go into the Raft log, whose entries fsm.Command.Encode
// refuses past fsm.MaxEntryBytes. The coordinator keeps every result well
// under that: the lists a step may grow without bound (a snapshot's
// warnings, a restore's damaged files, a verify's problems) are cut to
// their first entries here, with the total kept beside them ("… and N
// more" for lists of text), and a result still over maxRecordedResult
// fails its step for good, marked fsm.ErrEntryTooLarge, instead of being
// proposed and refused again on every attempt. Large per-node data
// (the dedup step's skip lists) never enters a result: it stays on the
// node (dedup.go).

const (
	// maxRecordedResult bounds one step result in the log: the command
	// around it (progress, error text, ids) fits in the rest of
	// fsm.MaxEntryBytes.
	maxRecordedResult = 768 << 10
	// maxListBytes is the budget of the cut lists of one result.
	maxListBytes = 256 << 10
	// maxRecordedError bounds a step's error text.
	maxRecordedError = 8 << 10
	// maxWarnings and maxWarningBytes bound a snapshot's warnings.
	maxWarnings     = 100
	maxWarningBytes = 1 << 10
	// maxProblemBackups bounds the backups one verify problem names.
	maxProblemBackups = 100
)

// capStrings keeps the first n strings of list, each cut to maxBytes, and
// says how many more there were in a last "… and N more" entry.
func capStrings(list []string, n, maxBytes int) []string {
	if len(list) == 0 {
		return list
	}
	out := make([]string, 0, min(len(list), n+1))
	for i, s := range list {
		if i == n {
			out = append(out, fmt.Sprintf("… and %d more", len(list)-n))
			break
		}
		out = append(out, cutString(s, maxBytes))
	}
	return out
}

// cutString cuts s to at most max bytes on a rune boundary, marking the cut.
func cutString(s string, max int) string {
	if len(s) <= max {
		return s
	}
	const mark = " …(cut)"
	i := max - len(mark)
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + mark
}

// fitList returns how many of the first entries of a list fit in budget
// bytes of JSON (size measures one entry).
func fitList(n int, budget int, size func(i int) int) int {
	used := 0
	for i := range n {
		used += size(i) + 1
		if used > budget {
			return i
		}
	}
	return n
}

func jsonSize(v any) int {
	b, _ := json.Marshal(v)
	return len(b)
}

// boundSnapshot caps a snapshot result's warnings.
func boundSnapshot(res wire.SnapshotResult) wire.SnapshotResult {
	res.Warnings = capStrings(res.Warnings, maxWarnings, maxWarningBytes)
	return res
}

// boundRestore cuts a restore (or drill) result's damage lists to the
// budget; DamagedTotal and DamagedBlobsTotal keep counting all of them.
func boundRestore(rr wire.RestoreResult) wire.RestoreResult {
	if rr.DamagedTotal < int64(len(rr.Damaged)) {
		rr.DamagedTotal = int64(len(rr.Damaged))
	}
	if rr.DamagedBlobsTotal < int64(len(rr.DamagedBlobs)) {
		rr.DamagedBlobsTotal = int64(len(rr.DamagedBlobs))
	}
	for i := range rr.Damaged {
		rr.Damaged[i].Path = cutString(rr.Damaged[i].Path, 4<<10)
	}
	rr.Damaged = rr.Damaged[:fitList(len(rr.Damaged), maxListBytes, func(i int) int { return jsonSize(rr.Damaged[i]) })]
	rr.DamagedBlobs = rr.DamagedBlobs[:fitList(len(rr.DamagedBlobs), maxListBytes/4, func(int) int { return 67 })]
	return rr
}

// RecordedVerify is the recorded result of a verify step: the report,
// its problems cut to the budget, and how many there were.
type RecordedVerify struct {
	storage.VerifyReport
	// ProblemsTotal counts every problem found (Problems lists the first).
	ProblemsTotal int `json:"problems_total"`
}

// boundVerify cuts a verify report's problems (and the backups each
// names) to the budget.
func boundVerify(rep storage.VerifyReport) RecordedVerify {
	out := RecordedVerify{VerifyReport: rep, ProblemsTotal: len(rep.Problems)}
	problems := make([]storage.Problem, len(rep.Problems))
	for i, p := range rep.Problems {
		p.Detail = cutString(p.Detail, 2<<10)
		p.Object = cutString(p.Object, 1<<10)
		p.Backups = capStrings(p.Backups, maxProblemBackups, 256)
		problems[i] = p
	}
	out.Problems = problems[:fitList(len(problems), maxListBytes, func(i int) int { return jsonSize(problems[i]) })]
	return out
}

// recordable checks a step's encoded result against the log's budget: a
// result over maxRecordedResult fails the step for good, marked
// fsm.ErrEntryTooLarge, and is not recorded.
func recordable(step fsm.Step, result json.RawMessage, err error) (json.RawMessage, error) {
	if len(result) <= maxRecordedResult {
		return result, err
	}
	tooLarge := fmt.Errorf("%w: the result of step %s is %d bytes, over the %d the log records of one step",
		fsm.ErrEntryTooLarge, stepLabel(step), len(result), maxRecordedResult)
	if err != nil {
		tooLarge = fmt.Errorf("%w (the step failed too: %v)", tooLarge, err)
	}
	return nil, wire.Permanent(tooLarge)
}

func stepLabel(st fsm.Step) string {
	if st.Node != "" {
		return st.Name + "@" + st.Node
	}
	return st.Name
}
