package storage

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLocksSharedAndExclusive(t *testing.T) {
	ctx := context.Background()
	url, r1 := newFileRepo(t)
	r2 := openRepo(t, url)

	if err := r1.Lock(ctx, "op-a", LockShared, "node-1 backup a"); err != nil {
		t.Fatal(err)
	}
	if err := r2.Lock(ctx, "op-b", LockShared, "node-2 restore b"); err != nil {
		t.Fatalf("shared + shared: %v", err)
	}
	// Exclusive is blocked by a shared lock, names the holder, and leaves
	// no lock of its own behind.
	err := r2.Lock(ctx, "gc", LockExclusive, "node-2 gc")
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "op-") || !strings.Contains(err.Error(), "shared") {
		t.Fatalf("exclusive over shared: %v", err)
	}
	if got := strings.Join(lockIDs(t, r1), ","); got != "op-a,op-b" {
		t.Fatalf("locks after a refused exclusive: %s", got)
	}
	// Taking the same id again is a refresh.
	if err := r1.Lock(ctx, "op-a", LockShared, "node-1 backup a"); err != nil {
		t.Fatalf("re-lock: %v", err)
	}
	if err := r1.Unlock(ctx, "op-a"); err != nil {
		t.Fatal(err)
	}
	if err := r2.Unlock(ctx, "op-b"); err != nil {
		t.Fatal(err)
	}
	if err := r2.Unlock(ctx, "op-b"); err != nil {
		t.Fatalf("unlock twice: %v", err)
	}
	if err := r2.Lock(ctx, "gc", LockExclusive, "node-2 gc"); err != nil {
		t.Fatal(err)
	}
	err = r1.Lock(ctx, "op-c", LockShared, "node-1 backup c")
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), `"gc"`) || !strings.Contains(err.Error(), "node-2 gc") {
		t.Fatalf("shared over exclusive: %v", err)
	}
	if err := r1.Lock(ctx, "gc2", LockExclusive, "x"); !errors.Is(err, ErrLocked) {
		t.Fatalf("exclusive over exclusive: %v", err)
	}
	ls, err := r1.Locks(ctx)
	if err != nil || len(ls) != 1 || ls[0].ID != "gc" || ls[0].Kind != LockExclusive || ls[0].Owner != "node-2 gc" || ls[0].Stale {
		t.Fatalf("locks: %+v %v", ls, err)
	}
	if err := r1.Lock(ctx, "bad/id", LockShared, ""); err == nil {
		t.Fatal("lock id with a slash accepted")
	}
}

func TestStaleLocksAreIgnoredAndLost(t *testing.T) {
	ctx := context.Background()
	url, r1 := newFileRepo(t)
	r2 := openRepo(t, url)
	if err := r2.Lock(ctx, "gc", LockExclusive, "crashed gc"); err != nil {
		t.Fatal(err)
	}
	backdate(t, url, "locks/gc", LockStaleAfter+time.Minute)
	ls, _ := r1.Locks(ctx)
	if len(ls) != 1 || !ls[0].Stale {
		t.Fatalf("backdated lock not reported stale: %+v", ls)
	}
	if err := r1.Lock(ctx, "op-a", LockShared, "backup"); err != nil {
		t.Fatalf("a stale exclusive lock blocks: %v", err)
	}
	// Its holder finds out at its next refresh: it must abort.
	err := r2.RefreshLock(ctx, "gc")
	if !errors.Is(err, ErrLockLost) || errors.Is(err, ErrNotFound) {
		t.Fatalf("refresh of a stale lock: %v", err)
	}
	// The loss is final: the next refresh fails too.
	err = r2.RefreshLock(ctx, "gc")
	if !errors.Is(err, ErrLockLost) || !errors.Is(err, ErrNotFound) {
		t.Fatalf("second refresh of a lost lock: %v", err)
	}
	// A lock someone removed.
	if err := r2.Lock(ctx, "gc2", LockExclusive, "gc"); !errors.Is(err, ErrLocked) {
		t.Fatalf("exclusive over op-a: %v", err)
	}
	if err := r2.Lock(ctx, "op-b", LockShared, "b"); err != nil {
		t.Fatal(err)
	}
	if err := r1.Unlock(ctx, "op-b"); err != nil {
		t.Fatal(err)
	}
	err = r2.RefreshLock(ctx, "op-b")
	if !errors.Is(err, ErrLockLost) || !errors.Is(err, ErrNotFound) {
		t.Fatalf("refresh of a removed lock: %v", err)
	}
	m := testManifest("b-late")
	m.Nodes = nil
	if err := r2.PutManifestLocked(ctx, "op-b", m); !errors.Is(err, ErrLockLost) {
		t.Fatalf("commit under a lost lock: %v", err)
	}
	if err := r1.PutManifestLocked(ctx, "op-a", m); err != nil {
		t.Fatalf("commit under a held lock: %v", err)
	}
	// A fresh lock refreshes fine, and stays fresh.
	if err := r1.RefreshLock(ctx, "op-a"); err != nil {
		t.Fatal(err)
	}
	// The shorter stale time of tests applies too.
	defer func(d time.Duration) { lockStaleAfter = d }(lockStaleAfter)
	lockStaleAfter = 50 * time.Millisecond
	time.Sleep(80 * time.Millisecond)
	if err := r2.Lock(ctx, "gc", LockExclusive, "gc"); err != nil {
		t.Fatalf("exclusive over a stale shared lock: %v", err)
	}
	if err := r1.RefreshLock(ctx, "op-a"); !errors.Is(err, ErrLockLost) {
		t.Fatalf("refresh after going stale: %v", err)
	}
}

// TestLockRace: two exclusive acquirers at once never both succeed.
func TestLockRace(t *testing.T) {
	ctx := context.Background()
	url, r1 := newFileRepo(t)
	r2 := openRepo(t, url)
	for i := range 20 {
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for j, r := range []*Repository{r1, r2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[j] = r.Lock(ctx, []string{"x", "y"}[j], LockExclusive, "racer")
			}()
		}
		wg.Wait()
		if errs[0] == nil && errs[1] == nil {
			t.Fatalf("round %d: both exclusive locks taken", i)
		}
		for j, err := range errs {
			if err != nil && !errors.Is(err, ErrLocked) {
				t.Fatal(err)
			}
			r := []*Repository{r1, r2}[j]
			r.Unlock(ctx, []string{"x", "y"}[j])
		}
	}
}
