package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
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
	FaultStoreSlow     = "store-latency" // S3 answers 300 ms late
)

// StoreFaults are the object-store faults (S3 store only).
var StoreFaults = []string{FaultStoreOutage, FaultStoreSlow}

// AllFaults lists every kind, in schedule order of preference.
var AllFaults = []string{FaultKillRandom, FaultKillLeader, FaultKillMajority, FaultPauseLeader, FaultIsolateLeader, FaultHalves, FaultBridge}

// FaultRecord is one line of the nemesis schedule.
type FaultRecord struct {
	Kind    string   `json:"kind"`
	Targets []string `json:"targets"`
	Start   int64    `json:"start"`
	End     int64    `json:"end"`
	Detail  string   `json:"detail,omitempty"`
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
}

// NewNemesis writes its schedule to path.
func NewNemesis(c *Cluster, seed uint64, kinds []string, clock func() int64, path string) (*Nemesis, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	return &Nemesis{c: c, rng: rand.New(rand.NewPCG(seed, 99)), clock: clock, kinds: kinds, out: json.NewEncoder(f)}, nil
}

// Schedule returns the faults injected so far.
func (n *Nemesis) Schedule() []FaultRecord {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]FaultRecord{}, n.schedule...)
}

// Run injects faults until ctx ends, then heals everything.
func (n *Nemesis) Run(ctx context.Context) {
	defer n.HealAll()
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
		select {
		case <-ctx.Done():
		case <-time.After(hold):
		}
		heal()
		rec.End = n.clock()
		n.mu.Lock()
		n.schedule = append(n.schedule, rec)
		_ = n.out.Encode(rec)
		n.mu.Unlock()
	}
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
			rec.Targets = append(rec.Targets, a.ID)
		}
	}
	restart := func(as ...*Agent) func() {
		return func() {
			for _, a := range as {
				if err := n.c.Start(a); err != nil {
					rec.Detail += fmt.Sprintf("restart %s: %v; ", a.ID, err)
				}
			}
		}
	}
	switch kind {
	case FaultKillRandom:
		targets(random[0])
		n.c.Kill(random[0])
		return restart(random[0])
	case FaultKillLeader:
		l := n.leaderOr(ctx, random[0])
		targets(l)
		n.c.Kill(l)
		return restart(l)
	case FaultKillMajority:
		maj := random[:len(random)/2+1]
		targets(maj...)
		for _, a := range maj {
			n.c.Kill(a)
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
		return n.HealAll
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
		return n.HealAll
	case FaultStoreOutage, FaultStoreSlow:
		mode := storeOutage
		if kind == FaultStoreSlow {
			mode = storeSlow
		}
		n.c.Store.SetMode(mode)
		return func() { n.c.Store.SetMode(storeHealthy) }
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
		return n.HealAll
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

// HealAll removes every partition rule.
func (n *Nemesis) HealAll() {
	for _, pair := range n.cuts {
		_ = exec.Command("ip", "rule", "del", "pref", "10", "from", pair[0], "to", pair[1], "prohibit").Run()
	}
	n.cuts = nil
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
