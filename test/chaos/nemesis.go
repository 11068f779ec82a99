package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"sync"
	"time"
)

// Fault kinds the nemesis injects.
const (
	FaultKillRandom    = "kill-random"
	FaultKillLeader    = "kill-leader"
	FaultKillMajority  = "kill-majority"
	FaultPauseLeader   = "pause-leader"
	FaultIsolateLeader = "partition-isolate-leader"
	FaultHalves        = "partition-halves"
	FaultBridge        = "partition-bridge"
	FaultStoreOutage   = "store-outage"  // S3 answers 503 to everything
	FaultStoreSlow     = "store-latency" // S3 answers late (gofakes3: 300 ms; SeaweedFS: 100–500 ms)
	// The faults of a real S3 server behind the fault proxy (SeaweedFS).
	FaultStoreThrottle  = "store-throttle"  // 20–80% of requests answer 503 SlowDown or 429
	FaultStoreReset     = "store-reset"     // open connections reset; each new one resets after 16 KiB–4 MiB
	FaultStoreStall     = "store-stall"     // answers held back: a hung server
	FaultStoreBandwidth = "store-bandwidth" // 256 KiB/s–2.25 MiB/s each way
	FaultStoreRestart   = "store-restart"   // SeaweedFS killed, restarted on healing
	// FaultClockOffset skews one node's wall clock (sometimes the
	// leader's) by ±1 min–3 h for 3× the usual hold, while other faults
	// go on (node/wallclock, chaosfaults builds).
	FaultClockOffset = "clock-offset"
	// FaultWipe kills a node, deletes its data dir and brings it back
	// under a new node id; the old id is removed from the cluster.
	FaultWipe = "wipe-node"
)

// StoreFaults are the faults of the in-process S3 emulator.
var StoreFaults = []string{FaultStoreOutage, FaultStoreSlow}

// SeaweedFaults are the faults of SeaweedFS behind the fault proxy.
var SeaweedFaults = []string{FaultStoreOutage, FaultStoreSlow, FaultStoreThrottle, FaultStoreReset, FaultStoreStall,
	FaultStoreBandwidth, FaultStoreRestart}

// AllFaults lists every kind, in schedule order of preference.
var AllFaults = []string{FaultKillRandom, FaultKillLeader, FaultKillMajority, FaultPauseLeader, FaultIsolateLeader, FaultHalves, FaultBridge,
	FaultClockOffset, FaultWipe}

// FaultRecord is one line of the nemesis schedule.
type FaultRecord struct {
	Kind    string   `json:"kind"`
	Targets []string `json:"targets"`
	Start   int64    `json:"start"`
	End     int64    `json:"end"`
	Detail  string   `json:"detail,omitempty"`
	// Skipped: the fault could not be injected (a wipe while another
	// wipe's old id is not removed yet, or while a node is down).
	Skipped bool `json:"skipped,omitempty"`
}

// Nemesis injects faults on a seeded schedule. With the same seed it
// draws the same sequence of kinds, durations and target choices (the
// targets it resolves at run time, such as "the leader", depend on the
// cluster).
type Nemesis struct {
	c        *Cluster
	rng      *rand.Rand
	clock    func() int64
	kinds    []string
	mu       sync.Mutex
	schedule []FaultRecord
	out      *json.Encoder
	cuts     [][2]string // installed ip rules (from, to)

	clocks   sync.WaitGroup // clock offsets not healed yet
	offsets  map[*Agent]int // agent → the clock fault that set its offset
	removing sync.WaitGroup // a wiped node's old id being removed
	pending  string         // that old id, until removed
}

// NewNemesis writes its schedule to path.
func NewNemesis(c *Cluster, seed uint64, kinds []string, clock func() int64, path string) (*Nemesis, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	return &Nemesis{c: c, rng: rand.New(rand.NewPCG(seed, 99)), clock: clock, kinds: kinds, out: json.NewEncoder(f), offsets: map[*Agent]int{}}, nil
}

// Schedule returns the faults injected so far.
func (n *Nemesis) Schedule() []FaultRecord {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]FaultRecord{}, n.schedule...)
}

// Run injects faults until ctx ends, then heals everything (a wiped
// node's old id may still await removal: see FinishRemovals).
func (n *Nemesis) Run(ctx context.Context) {
	defer n.HealAll()
	defer n.clocks.Wait()
	for {
		pause := time.Duration(500+n.rng.IntN(2500)) * time.Millisecond
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		kind := n.kinds[n.rng.IntN(len(n.kinds))]
		hold := time.Duration(1000+n.rng.IntN(4000)) * time.Millisecond
		rec := FaultRecord{Kind: kind, Start: n.clock()}
		heal := n.inject(ctx, kind, &rec)
		if kind == FaultClockOffset {
			// A skewed clock stays skewed while the next faults (kills,
			// partitions, pauses of the leader) move leadership around.
			n.clocks.Add(1)
			go func(heal func(), hold time.Duration) {
				defer n.clocks.Done()
				select {
				case <-ctx.Done():
				case <-time.After(hold):
				}
				heal()
				n.record(rec)
			}(heal, 3*hold)
			hold = 0
			heal = nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(hold):
		}
		if heal != nil {
			heal()
			n.record(rec)
		}
	}
}

func (n *Nemesis) record(rec FaultRecord) {
	rec.End = n.clock()
	n.mu.Lock()
	n.schedule = append(n.schedule, rec)
	_ = n.out.Encode(rec)
	n.mu.Unlock()
}

func (n *Nemesis) pick(k int) []*Agent {
	idx := n.rng.Perm(len(n.c.Agents))[:k]
	var out []*Agent
	for _, i := range idx {
		out = append(out, n.c.Agents[i])
	}
	return out
}

func (n *Nemesis) leaderOr(ctx context.Context, fallback *Agent) *Agent {
	if l := n.c.Leader(ctx); l != nil {
		return l
	}
	return fallback
}

// inject starts a fault and returns what heals it.
func (n *Nemesis) inject(ctx context.Context, kind string, rec *FaultRecord) func() {
	random := n.pick(len(n.c.Agents)) // drawn every time, so the rng sequence does not depend on the kind
	targets := func(as ...*Agent) {
		for _, a := range as {
			rec.Targets = append(rec.Targets, a.ID())
		}
	}
	restart := func(as ...*Agent) func() {
		return func() {
			for _, a := range as {
				if err := n.c.Start(a); err != nil {
					rec.Detail += fmt.Sprintf("restart %s: %v; ", a.ID(), err)
				}
			}
		}
	}
	switch kind {
	case FaultKillRandom:
		targets(random[0])
		n.c.KillKeepingAudits(ctx, random[0])
		return restart(random[0])
	case FaultKillLeader:
		l := n.leaderOr(ctx, random[0])
		targets(l)
		n.c.KillKeepingAudits(ctx, l)
		return restart(l)
	case FaultKillMajority:
		maj := random[:len(random)/2+1]
		targets(maj...)
		for _, a := range maj {
			n.c.KillKeepingAudits(ctx, a)
		}
		return restart(maj...)
	case FaultPauseLeader:
		l := n.leaderOr(ctx, random[0])
		targets(l)
		n.c.Pause(l)
		return func() { n.c.Resume(l) }
	case FaultIsolateLeader:
		l := n.leaderOr(ctx, random[0])
		targets(l)
		for _, o := range n.c.Agents {
			if o != l {
				n.cut(l, o, rec)
			}
		}
		return n.healCuts
	case FaultHalves:
		half := random[:len(random)/2]
		targets(half...)
		in := map[*Agent]bool{}
		for _, a := range half {
			in[a] = true
		}
		for _, a := range half {
			for _, o := range n.c.Agents {
				if !in[o] {
					n.cut(a, o, rec)
				}
			}
		}
		return n.healCuts
	case FaultStoreOutage, FaultStoreSlow, FaultStoreThrottle, FaultStoreReset, FaultStoreStall, FaultStoreBandwidth, FaultStoreRestart:
		if !slices.Contains(n.c.Store.Faults(), kind) {
			rec.Skipped, rec.Detail = true, "skipped: the store ("+n.c.Store.Kind()+") cannot take it"
			return func() {}
		}
		heal, detail := n.c.Store.Inject(kind, n.rng)
		rec.Detail = detail
		return func() {
			if d := heal(); d != "" {
				rec.Detail += "; " + d
			}
		}
	case FaultClockOffset:
		offset := time.Minute + time.Duration(n.rng.Int64N(int64(3*time.Hour-time.Minute)))
		if n.rng.IntN(2) == 0 {
			offset = -offset
		}
		offset = offset.Round(time.Second)
		a := random[0]
		if n.rng.IntN(2) == 0 {
			a = n.leaderOr(ctx, a)
		}
		targets(a)
		rec.Detail = "offset " + offset.String()
		n.mu.Lock()
		n.offsets[a]++
		mine := n.offsets[a]
		n.mu.Unlock()
		if err := setOffset(a, offset); err != nil {
			rec.Detail += fmt.Sprintf("; %v", err)
		}
		return func() {
			n.mu.Lock()
			defer n.mu.Unlock()
			if n.offsets[a] == mine { // not skewed again meanwhile
				_ = setOffset(a, 0)
			}
		}
	case FaultWipe:
		a := random[0]
		targets(a)
		if why := n.cannotWipe(ctx, a); why != "" {
			rec.Skipped, rec.Detail = true, "skipped: "+why
			return func() {}
		}
		old := a.ID()
		audit := n.c.Retire(ctx, a)
		if audit != "" {
			rec.Detail += "audits: " + audit + "; "
		}
		return func() {
			nu, err := n.c.Reincarnate(a)
			rec.Detail += fmt.Sprintf("%s wiped, back as %s", old, nu)
			if err != nil {
				rec.Detail += fmt.Sprintf("; restart: %v", err)
			}
			n.mu.Lock()
			n.pending = old
			n.mu.Unlock()
			n.removing.Add(1)
			go func() { defer n.removing.Done(); n.remove(ctx, old) }()
		}
	case FaultBridge:
		// random[0] sees both sides; the rest are split in two.
		bridge, rest := random[0], random[1:]
		targets(bridge)
		a, b := rest[:len(rest)/2], rest[len(rest)/2:]
		for _, x := range a {
			for _, y := range b {
				n.cut(x, y, rec)
			}
		}
		return n.healCuts
	}
	return func() {}
}

func (n *Nemesis) cut(a, b *Agent, rec *FaultRecord) {
	for _, pair := range [][2]string{{a.IP, b.IP}, {b.IP, a.IP}} {
		if out, err := exec.Command("ip", "rule", "add", "pref", "10", "from", pair[0], "to", pair[1], "prohibit").CombinedOutput(); err != nil {
			rec.Detail += fmt.Sprintf("ip rule: %v %s; ", err, out)
			continue
		}
		n.cuts = append(n.cuts, pair)
	}
}

// HealAll removes every partition rule and clock offset.
func (n *Nemesis) HealAll() {
	n.healCuts()
	for _, a := range n.c.Agents {
		_ = setOffset(a, 0)
	}
}

// healCuts removes every partition rule.
func (n *Nemesis) healCuts() {
	for _, pair := range n.cuts {
		_ = exec.Command("ip", "rule", "del", "pref", "10", "from", pair[0], "to", pair[1], "prohibit").Run()
	}
	n.cuts = nil
}

// setOffset writes a's wall-clock offset (the agent re-reads it within
// 100 ms).
func setOffset(a *Agent, d time.Duration) error {
	tmp := a.ClockFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(d.String()+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, a.ClockFile)
}

// cannotWipe says why no node may be wiped now: at most one wipe is in
// flight (until its old id is removed and every current id is a voter
// again), and none while a node is down. A wipe's old id leaves the Raft
// configuration before its new id joins it, so for a moment a 3-node
// cluster has 2 voters: wiping one of them then destroys half the
// voters, and no leader can form to repair it (a 75-minute run did that
// once, 0.2 s after the previous wipe's removal). Operators replace one
// node at a time and wait for it to be a voter; so does the nemesis.
func (n *Nemesis) cannotWipe(ctx context.Context, target *Agent) string {
	n.mu.Lock()
	pending := n.pending
	n.mu.Unlock()
	if pending != "" {
		return "the previous wipe's old id " + pending + " is not removed yet"
	}
	for _, a := range n.c.Agents {
		if !a.Running() {
			return a.ID() + " is down"
		}
	}
	l := n.c.Leader(ctx)
	if l == nil {
		return "no leader to check the voters with"
	}
	st, err := Status(ctx, l)
	if err != nil {
		return "the leader's status: " + err.Error()
	}
	voters := map[string]bool{}
	for _, m := range st.Members {
		if m.Suffrage == "Voter" {
			voters[m.ID] = true
		}
	}
	for _, a := range n.c.Agents {
		if !voters[a.ID()] {
			return a.ID() + " is not a voter yet"
		}
	}
	if len(voters) != len(n.c.Agents) {
		return fmt.Sprintf("%d voters, %d agents", len(voters), len(n.c.Agents))
	}
	// Its audits are read just before the wipe destroys them; a node
	// that does not answer yet (restarted a moment ago) would leave the
	// fencing and mutual-exclusion checkers unable to verify it (two long
	// runs: 1 of 56 and 8 of 66 wipes).
	var probe any
	if err := getJSON(ctx, quick, target.URL()+"/internal/v1/fence", &probe); err != nil {
		return target.ID() + "'s audits cannot be read now: " + err.Error()
	}
	return ""
}

// remove asks the leader to remove a wiped node's old id until it
// succeeds (or the id is already unknown) or ctx ends.
func (n *Nemesis) remove(ctx context.Context, old string) {
	for attempt := 1; ctx.Err() == nil; attempt++ {
		code, err := n.c.RemoveMember(ctx, old)
		if err == nil && (code == http.StatusOK || code == http.StatusNotFound) {
			n.mu.Lock()
			n.pending = ""
			_ = n.out.Encode(FaultRecord{Kind: "removed", Targets: []string{old}, Start: n.clock(), End: n.clock(),
				Detail: fmt.Sprintf("HTTP %d after %d attempts", code, attempt)})
			n.mu.Unlock()
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// FinishRemovals waits for the removal in flight and, if the run ended
// before it succeeded, retries it for up to within.
func (n *Nemesis) FinishRemovals(within time.Duration) error {
	n.removing.Wait()
	n.mu.Lock()
	old := n.pending
	n.mu.Unlock()
	if old == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	n.remove(ctx, old)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.pending != "" {
		return fmt.Errorf("the wiped node's old id %s was not removed within %s", old, within)
	}
	return nil
}

// SetupNamespaceRouting makes loopback traffic pass through rules that
// partitions can cut (run once, inside the private network namespace).
func SetupNamespaceRouting() error {
	for _, args := range [][]string{{"link", "set", "lo", "up"}, {"rule", "add", "pref", "100", "lookup", "local"}, {"rule", "del", "pref", "0"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %v: %v: %s", args, err, out)
		}
	}
	return nil
}
