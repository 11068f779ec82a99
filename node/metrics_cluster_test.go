package node

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
	"github.com/crayfish-backup/crayfish/transport/gossip"
)

// TestClusterCollector: the cluster metrics follow the replicated state
// (progress while a backup runs, its figures once it succeeded, failed
// attempts) and this node's Raft and gossip view.
func TestClusterCollector(t *testing.T) {
	m := fsm.NewMachine()
	t0 := time.Date(2026, 12, 5, 1, 0, 0, 0, time.UTC)
	idx := uint64(0)
	apply := func(c fsm.Command) {
		t.Helper()
		idx++
		if c.Time.IsZero() {
			c.Time = t0.Add(time.Duration(idx) * time.Second)
		}
		b, _ := c.Encode()
		if r, ok := m.Apply(&raft.Log{Index: idx, Data: b}).(fsm.Response); !ok || r.Err != nil {
			t.Fatalf("apply %+v: %v", c, r.Err)
		}
	}
	apply(fsm.Command{Type: fsm.CmdClaim, Node: "n1"})
	apply(fsm.Command{Type: fsm.CmdStart, Op: &fsm.Operation{ID: "b1", Kind: fsm.KindBackup, Steps: []fsm.Step{
		{Name: wire.StepUpload, Node: "n1", Phase: 1}, {Name: wire.StepUpload, Node: "n2", Phase: 1}, {Name: wire.StepManifest}}}})
	apply(fsm.Command{Type: fsm.CmdStepStarted, OpID: "b1", Epoch: 1, Step: 0})
	apply(fsm.Command{Type: fsm.CmdStepStarted, OpID: "b1", Epoch: 1, Step: 1})
	apply(fsm.Command{Type: fsm.CmdStepProgress, OpID: "b1", Epoch: 1, Step: 0, Progress: &fsm.Progress{BytesDone: 10, BytesTotal: 40, FilesDone: 1, FilesTotal: 4}})

	c := &clusterCollector{plugin: "files", fsm: m,
		raft: func() Status {
			return Status{State: "Follower", LeaderID: "n2", Term: 3, CommitIndex: 9, LastContact: "250ms"}
		},
		members: func() []gossip.Member {
			return []gossip.Member{{Status: gossip.StatusAlive}, {Status: gossip.StatusAlive}, {Status: gossip.StatusDead}}
		},
		epoch: func() uint64 { return 1 }}
	expect(t, c, `
crayfish_operations_running{kind="backup"} 1
crayfish_operation_progress_bytes{node="n1",of="done",step="upload"} 10
crayfish_operation_progress_files{node="n1",of="total",step="upload"} 4
crayfish_raft_state{state="Follower"} 1
crayfish_raft_state{state="Leader"} 0
crayfish_raft_term 3
crayfish_raft_last_contact_seconds 0.25
crayfish_raft_leader_present 1
crayfish_gossip_members{status="alive"} 2
crayfish_gossip_members{status="dead"} 1
crayfish_node_fencing_epoch 1`)

	up := func(uploaded, stored int64) json.RawMessage {
		b, _ := json.Marshal(wire.UploadResult{UploadedBytes: uploaded, StoredBytes: stored})
		return b
	}
	apply(fsm.Command{Type: fsm.CmdStepDone, OpID: "b1", Epoch: 1, Step: 0, Result: up(300, 100)})
	apply(fsm.Command{Type: fsm.CmdStepDone, OpID: "b1", Epoch: 1, Step: 1, Result: up(100, 100)})
	apply(fsm.Command{Type: fsm.CmdStepStarted, OpID: "b1", Epoch: 1, Step: 2})
	apply(fsm.Command{Type: fsm.CmdStepStarted, OpID: "b1", Epoch: 1, Step: 2}) // a retry
	apply(fsm.Command{Type: fsm.CmdStepDone, OpID: "b1", Epoch: 1, Step: 2, Result: json.RawMessage(`{"backup_id":"x","files":7,"bytes":800}`)})
	apply(fsm.Command{Type: fsm.CmdFinish, OpID: "b1", Epoch: 1, Time: t0.Add(time.Minute)})
	expect(t, c, `crayfish_backup_last_success_timestamp_seconds{plugin="files"} `+formatFloat(float64(t0.Add(time.Minute).Unix())))
	expect(t, c, `
crayfish_operations_started_total{kind="backup"} 1
crayfish_operations_finished_total{kind="backup",state="succeeded"} 1
crayfish_operations_running{kind="backup"} 0
crayfish_step_attempt_failures_total{reason="retried",step="manifest"} 1
crayfish_backup_last_duration_seconds{plugin="files"} 58
crayfish_backup_last_files{plugin="files"} 7
crayfish_backup_last_logical_bytes{plugin="files"} 800
crayfish_backup_last_stored_new_bytes{plugin="files"} 200
crayfish_backup_last_dedup_ratio{plugin="files"} 2
crayfish_backup_last_compression_ratio{plugin="files"} 2`)

	// A verify that found a problem, then a garbage collection.
	verify, _ := json.Marshal(storage.VerifyReport{Packs: 3, Blobs: 9, Problems: []storage.Problem{{Kind: storage.ProblemMissing}}})
	gc, _ := json.Marshal(storage.GCReport{BytesBefore: 1000, BytesFreed: 300,
		Classification: storage.GCClassification{Unreferenced: storage.GCTally{Bytes: 400}}})
	for _, o := range []struct {
		id   string
		kind fsm.OpKind
		step string
		res  json.RawMessage
		fail bool
	}{{"v1", fsm.KindVerify, wire.StepVerify, verify, true}, {"g1", fsm.KindGC, wire.StepGC, gc, false}} {
		apply(fsm.Command{Type: fsm.CmdStart, Op: &fsm.Operation{ID: o.id, Kind: o.kind, Steps: []fsm.Step{{Name: o.step}}}})
		apply(fsm.Command{Type: fsm.CmdStepStarted, OpID: o.id, Epoch: 1})
		done := fsm.CmdStepDone
		if o.fail {
			done = fsm.CmdStepFailed
		}
		apply(fsm.Command{Type: done, OpID: o.id, Epoch: 1, Result: o.res, Error: "1 problem"})
		apply(fsm.Command{Type: fsm.CmdFinish, OpID: o.id, Epoch: 1})
	}
	expect(t, c, `
crayfish_verify_last_success 0
crayfish_verify_last_problems 1
crayfish_repository_packs 3
crayfish_repository_blobs 9
crayfish_repository_stored_bytes 700
crayfish_repository_reclaimable_bytes 100
crayfish_operations_finished_total{kind="verify",state="failed"} 1`)
	if n := testutil.CollectAndCount(c, "crayfish_operation_progress_bytes"); n != 0 {
		t.Errorf("%d progress series with nothing running", n)
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

// expect checks that each line of want ("series value") is exposed.
func expect(t *testing.T, c prometheus.Collector, want string) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			name := mf.GetName()
			if len(labels) > 0 {
				name += "{" + strings.Join(labels, ",") + "}"
			}
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			got.WriteString(name + " " + formatFloat(v) + "\n")
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(want), "\n") {
		if !strings.Contains(got.String(), line+"\n") {
			t.Errorf("missing %q in\n%s", line, got.String())
		}
	}
}

func formatFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
