package chaos

import (
	"context"
	"fmt"
	"time"
)

// CheckStoreQuiet: once the cluster has healed and no operation runs, the
// agents leave the store alone. A retry loop that never gives up, or a
// background task that spins on an error it met during a fault, shows as
// traffic here.
const CheckStoreQuiet = "store-quiet-after-heal"

// quietWindow is how long the store is watched, and quietMaxRequests how
// many requests the whole cluster may make in it: idle agents refresh
// nothing in the store (a repository lock is refreshed every 2 minutes,
// and only while an operation holds it).
const (
	quietWindow      = 20 * time.Second
	quietMaxRequests = 10
)

// checkStoreQuiet watches the proxy's request count for quietWindow. It
// runs after the liveness check has seen no operation running; an
// operation that starts meanwhile (none should: the clients have
// stopped) is evidence too.
func checkStoreQuiet(ctx context.Context, c *Cluster) Verdict {
	p := c.Store.proxy
	if p == nil {
		return verdict(CheckStoreQuiet, nil, "not checked: the store has no proxy (%s)", c.Store.Kind())
	}
	before := p.Stats()
	select {
	case <-ctx.Done():
		return verdict(CheckStoreQuiet, []string{ctx.Err().Error()}, "interrupted")
	case <-time.After(quietWindow):
	}
	after := p.Stats()
	n := after.Requests - before.Requests
	var evidence []string
	if n > quietMaxRequests {
		evidence = append(evidence, fmt.Sprintf("%d requests reached the store in %s of quiet (at most %d expected); %d connections opened",
			n, quietWindow, quietMaxRequests, after.Connections-before.Connections))
	}
	if running := runningOps(ctx, c); len(running) > 0 {
		evidence = append(evidence, fmt.Sprintf("operations running after the clients stopped: %v", running))
	}
	return verdict(CheckStoreQuiet, evidence, "%d requests in %s with no operation running (total %d requests, %d answered by the proxy)",
		n, quietWindow, after.Requests, after.Injected)
}
