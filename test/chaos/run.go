package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Config is one chaos run.
type Config struct {
	Nodes    int
	Clients  int
	Duration time.Duration
	Seed     uint64
	Faults   []string // kinds (default AllFaults, plus the store's faults)
	Dir      string   // the report directory (created)
	Bin      string   // the crayfish binary
	Env      []string // extra environment of the agents (bug injection)
	// Store is the repository's store (NewS3Store, NewSeaweedStore; its
	// faults join the default kinds); nil: file:// under Dir. Run does not
	// close it.
	Store *Store
	// Log receives progress lines.
	Log func(format string, args ...any)
}

// Report is the outcome of a run.
type Report struct {
	Seed  uint64 `json:"seed"`
	Store string `json:"store"`
	// StoreTraffic counts what reached the store (SeaweedFS's proxy).
	StoreTraffic string                    `json:"store_traffic,omitempty"`
	Duration     string                    `json:"duration"`
	Nodes        int                       `json:"nodes"`
	Ops          map[string]map[string]int `json:"ops"`    // f → outcome → count
	Faults       map[string]int            `json:"faults"` // kind → count
	Verdicts     []Verdict                 `json:"verdicts"`
	Pass         bool                      `json:"pass"`
}

// Verdict returns the named checker's verdict.
func (r *Report) Verdict(name string) (Verdict, bool) {
	for _, v := range r.Verdicts {
		if v.Checker == name {
			return v, true
		}
	}
	return Verdict{}, false
}

// Run runs a chaos test and writes its report into cfg.Dir. It must run
// inside a private network namespace (SetupNamespaceRouting done).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if cfg.Clients == 0 {
		cfg.Clients = 4
	}
	defaultFaults := len(cfg.Faults) == 0
	if defaultFaults {
		cfg.Faults = AllFaults
	}
	var err error
	logf := cfg.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	os.WriteFile(filepath.Join(cfg.Dir, "seed.txt"), fmt.Appendf(nil, "%d\n", cfg.Seed), 0o644)
	store := cfg.Store
	if store == nil {
		store = NewFileStore(cfg.Dir)
	}
	if defaultFaults {
		cfg.Faults = append(slices.Clone(cfg.Faults), store.Faults()...)
	}
	c, err := NewCluster(cfg.Bin, cfg.Dir, cfg.Nodes, cfg.Env, store)
	if err != nil {
		return nil, err
	}
	defer c.StopAll()
	for _, a := range c.Agents {
		if err := c.Start(a); err != nil {
			return nil, err
		}
	}
	if err := waitFormed(ctx, c, time.Minute); err != nil {
		return nil, err
	}
	logf("cluster of %d formed", cfg.Nodes)
	h, err := NewHistory(filepath.Join(cfg.Dir, "history.jsonl"))
	if err != nil {
		return nil, err
	}
	defer h.Close()
	writers := map[string]*Writer{} // by tree: a wiped node keeps its tree
	stopWriters := make(chan struct{})
	var wg sync.WaitGroup
	for i, a := range c.Agents {
		w := NewWriter(a.Tree, a.Root, filepath.Join(cfg.Dir, "staging", a.Tree), cfg.Seed+uint64(i), h.Now)
		_ = w.Step()
		writers[a.Tree] = w
		wg.Add(1)
		go func() { defer wg.Done(); w.Run(stopWriters) }()
	}
	nem, err := NewNemesis(c, cfg.Seed, cfg.Faults, h.Now, filepath.Join(cfg.Dir, "nemesis.jsonl"))
	if err != nil {
		return nil, err
	}
	acked := &Acked{backups: map[string]AckedBackup{}}
	scratch := filepath.Join(cfg.Dir, "scratch")
	runCtx, stop := context.WithTimeout(ctx, cfg.Duration)
	defer stop()
	nemDone := make(chan struct{})
	go func() { defer close(nemDone); nem.Run(runCtx) }()
	var clients sync.WaitGroup
	for p := range cfg.Clients {
		cl := newClient(p, c, h, cfg.Seed+1000, acked, writers, scratch)
		clients.Add(1)
		go func() { defer clients.Done(); cl.Run(runCtx) }()
	}
	<-runCtx.Done()
	<-nemDone // healed: partitions and clock offsets removed, killed agents restarted, paused ones resumed
	for _, a := range c.Agents {
		c.Resume(a)
		_ = c.Start(a)
	}
	if err := nem.FinishRemovals(time.Minute); err != nil {
		logf("%v", err) // liveness-after-heal reports it
	}
	logf("faults stopped after %s; waiting for clients", cfg.Duration)
	clients.Wait()
	close(stopWriters)
	wg.Wait()

	rep := &Report{Seed: cfg.Seed, Store: store.String(), Duration: cfg.Duration.String(), Nodes: cfg.Nodes, Ops: map[string]map[string]int{}, Faults: map[string]int{}}
	hist := h.Events()
	for _, e := range hist {
		if e.Type == OK || e.Type == Fail || e.Type == Info {
			if rep.Ops[e.F] == nil {
				rep.Ops[e.F] = map[string]int{}
			}
			rep.Ops[e.F][e.Type]++
		}
	}
	for _, f := range nem.Schedule() {
		if f.Skipped {
			rep.Faults[f.Kind+" (skipped)"]++
			continue
		}
		rep.Faults[f.Kind]++
	}
	logf("checking: %d events, faults %v", len(hist), rep.Faults)
	live := checkLiveness(ctx, c, 90*time.Second)
	rep.Verdicts = append(rep.Verdicts, live)
	if live.Pass {
		rep.Verdicts = append(rep.Verdicts, checkStoreQuiet(ctx, c))
	}
	rep.Verdicts = append(rep.Verdicts, checkFencing(ctx, c), checkMutex(ctx, c),
		checkLinearizable(hist, filepath.Join(cfg.Dir, "porcupine.html")))
	ops, err := finalOps(ctx, c)
	var expected []AckedBackup
	if err != nil {
		rep.Verdicts = append(rep.Verdicts, verdict(CheckTimeOrder, []string{err.Error()}, "could not read the operations"))
	} else {
		rep.Verdicts = append(rep.Verdicts, checkTimeOrder(ops))
	}
	if err != nil {
		rep.Verdicts = append(rep.Verdicts, verdict(CheckNoLost, []string{err.Error()}, "could not read the operations"))
	} else if excused, err := excusedBackups(ops, hist, acked.All()); err != nil {
		rep.Verdicts = append(rep.Verdicts, verdict(CheckNoLost, []string{err.Error()}, "could not decide"))
	} else {
		var v Verdict
		v, expected = checkNoLost(ctx, c, acked.All(), excused)
		rep.Verdicts = append(rep.Verdicts, v)
	}
	sort.Slice(expected, func(i, j int) bool { return expected[i].Acked < expected[j].Acked })
	sample := expected
	if len(sample) > 4 { // the oldest, the newest and two between
		sample = []AckedBackup{expected[0], expected[len(expected)/3], expected[2*len(expected)/3], expected[len(expected)-1]}
	}
	rep.Verdicts = append(rep.Verdicts, checkRestorable(ctx, c, scratch, sample, writers, hist))
	rep.Verdicts = append(rep.Verdicts, checkGCSafety(ctx, c, scratch, expected, writers))
	rep.StoreTraffic = store.Stats()
	rep.Pass = true
	for _, v := range rep.Verdicts {
		rep.Pass = rep.Pass && v.Pass
	}
	writeReport(cfg.Dir, rep, acked, writers)
	return rep, nil
}

func waitFormed(ctx context.Context, c *Cluster, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if l := c.Leader(ctx); l != nil {
			if st, err := Status(ctx, l); err == nil {
				voters := 0
				for _, m := range st.Members {
					if m.Suffrage == "Voter" {
						voters++
					}
				}
				if voters == len(c.Agents) {
					return nil
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("the cluster did not form within %s", within)
}

func writeReport(dir string, rep *Report, acked *Acked, writers map[string]*Writer) {
	b, _ := json.MarshalIndent(rep, "", "  ")
	os.WriteFile(filepath.Join(dir, "report.json"), b, 0o644)
	b, _ = json.MarshalIndent(acked.All(), "", "  ")
	os.WriteFile(filepath.Join(dir, "acked.json"), b, 0o644)
	states := map[string][]TreeState{}
	for id, w := range writers {
		states[id] = w.States()
	}
	b, _ = json.Marshal(states)
	os.WriteFile(filepath.Join(dir, "tree-states.json"), b, 0o644)
	os.WriteFile(filepath.Join(dir, "summary.txt"), []byte(rep.Summary()), 0o644)
}

// Summary is the human-readable verdict table.
func (r *Report) Summary() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "seed %d, %d nodes, %s, store %s\n", r.Seed, r.Nodes, r.Duration, r.Store)
	for _, f := range keys(r.Ops) {
		fmt.Fprintf(&sb, "  %-10s ok %d  fail %d  info %d\n", f, r.Ops[f][OK], r.Ops[f][Fail], r.Ops[f][Info])
	}
	fmt.Fprintf(&sb, "faults: %v\n", r.Faults)
	if r.StoreTraffic != "" {
		fmt.Fprintf(&sb, "store %s\n", r.StoreTraffic)
	}
	for _, v := range r.Verdicts {
		mark := "PASS"
		if !v.Pass {
			mark = "FAIL"
		}
		fmt.Fprintf(&sb, "%s %-24s %s\n", mark, v.Checker, v.Summary)
		for _, e := range v.Evidence {
			fmt.Fprintf(&sb, "     - %s\n", e)
		}
	}
	return sb.String()
}
