package backend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func newFaulty(t *testing.T, seed int64) *Faulty {
	t.Helper()
	return NewFaulty(openT(t, "mem://"), seed)
}

func TestFaultyPassThrough(t *testing.T) {
	// With nothing scripted a Faulty is its backend: the whole suite passes.
	testBackend(t, newFaulty(t, 1))
}

func TestFaultyFailNext(t *testing.T) {
	ctx := context.Background()
	f := newFaulty(t, 1)
	e1, e2 := errors.New("one"), errors.New("two")
	f.FailNext(OpPut, 2, e1)
	f.FailNext(OpPut, 1, e2)
	for i, want := range []error{e1, e1, e2, nil} {
		if err := f.Put(ctx, "k", []byte("v"), false); err != want {
			t.Fatalf("Put #%d = %v, want %v", i+1, err, want)
		}
	}
	// Failures before the call do not reach the backend.
	f.FailNext(OpDelete, 1, e1)
	if err := f.Delete(ctx, "k"); err != e1 {
		t.Fatal(err)
	}
	if _, err := f.Unwrap().Get(ctx, "k"); err != nil {
		t.Fatalf("the failed Delete reached the backend: %v", err)
	}
	// Other ops are unaffected.
	f.FailNext(OpSize, 1, e1)
	if _, err := f.Get(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Size(ctx, "k"); err != e1 {
		t.Fatal(err)
	}
	if _, err := f.Size(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	want := map[Op]int{OpPut: 4, OpDelete: 1, OpGet: 1, OpSize: 2}
	if got := f.Counts(); !mapsEqual(got, want) {
		t.Fatalf("Counts = %v, want %v", got, want)
	}
}

func TestFaultyFailNextAfter(t *testing.T) {
	ctx := context.Background()
	f := newFaulty(t, 1)
	lost := errors.New("reply lost")
	f.FailNextAfter(OpPut, 1, lost)
	if err := f.Put(ctx, "k", []byte("v"), false); err != lost {
		t.Fatalf("Put = %v", err)
	}
	if got, err := f.Get(ctx, "k"); err != nil || string(got) != "v" {
		t.Fatalf("the Put did not land: %q, %v", got, err)
	}
	f.FailNextAfter(OpDelete, 1, lost)
	if err := f.Delete(ctx, "k"); err != lost {
		t.Fatal(err)
	}
	if _, err := f.Get(ctx, "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the Delete did not happen: %v", err)
	}
	// A List failing "after" delivers everything first.
	for i := range 3 {
		f.Put(ctx, fmt.Sprintf("l/%d", i), nil, false)
	}
	f.FailNextAfter(OpList, 1, lost)
	n := 0
	if err := f.List(ctx, "l/", func(ObjectInfo) error { n++; return nil }); err != lost || n != 3 {
		t.Fatalf("List = %v after %d keys", err, n)
	}
	// Heal drops scripted faults.
	f.FailNext(OpGet, 5, lost)
	f.Heal()
	if _, err := f.Get(ctx, "l/0"); err != nil {
		t.Fatal(err)
	}
}

func TestFaultyErrorRateSeeded(t *testing.T) {
	ctx := context.Background()
	pattern := func(seed int64) []bool {
		f := newFaulty(t, seed)
		f.SetErrorRate(OpSize, 0.5, errFlaky)
		var out []bool
		for range 1000 {
			_, err := f.Size(ctx, "missing")
			if err != errFlaky && !errors.Is(err, ErrNotFound) {
				t.Fatal(err)
			}
			out = append(out, err == errFlaky)
		}
		return out
	}
	a, b, c := pattern(7), pattern(7), pattern(8)
	fails := 0
	for _, x := range a {
		if x {
			fails++
		}
	}
	if fails < 400 || fails > 600 {
		t.Fatalf("rate 0.5 failed %d of 1000 calls", fails)
	}
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatal("same seed, different failure pattern")
	}
	if fmt.Sprint(a) == fmt.Sprint(c) {
		t.Fatal("different seeds, same failure pattern")
	}

	f := newFaulty(t, 1)
	f.SetErrorRate(OpGet, 1, errFlaky)
	for range 10 {
		if _, err := f.Get(ctx, "x"); err != errFlaky {
			t.Fatal(err)
		}
	}
	f.SetErrorRate(OpGet, 0, nil)
	if _, err := f.Get(ctx, "x"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
}

func TestFaultyLatency(t *testing.T) {
	ctx := context.Background()
	f := newFaulty(t, 1)
	f.SetLatency(OpGet, 50*time.Millisecond)
	start := time.Now()
	f.Get(ctx, "x")
	if el := time.Since(start); el < 50*time.Millisecond {
		t.Fatalf("Get took %v, want at least 50ms", el)
	}
	start = time.Now()
	f.Size(ctx, "x")
	if el := time.Since(start); el > 40*time.Millisecond {
		t.Fatalf("Size took %v; latency applies to Get only", el)
	}
	f.SetLatency(OpGet, time.Hour)
	cctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if _, err := f.Get(cctx, "x"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get with a short deadline = %v", err)
	}
}

func TestFaultyTruncateAndCorruptReads(t *testing.T) {
	ctx := context.Background()
	f := newFaulty(t, 3)
	data := randBytes(9, 4096)
	if err := f.Put(ctx, "k", data, false); err != nil {
		t.Fatal(err)
	}
	if err := f.Put(ctx, "empty", nil, false); err != nil {
		t.Fatal(err)
	}

	f.TruncateReads(1)
	for range 50 {
		got, err := f.Get(ctx, "k")
		if err != nil {
			t.Fatalf("truncated Get reported %v; a lying server reports nothing", err)
		}
		if len(got) >= len(data) || !bytes.Equal(got, data[:len(got)]) {
			t.Fatalf("truncated Get returned %d bytes, not a strict prefix", len(got))
		}
		got, err = f.GetRange(ctx, "k", 100, 1000)
		if err != nil || len(got) >= 1000 || !bytes.Equal(got, data[100:100+len(got)]) {
			t.Fatalf("truncated GetRange = %d bytes, %v", len(got), err)
		}
	}
	if got, err := f.Get(ctx, "empty"); err != nil || len(got) != 0 {
		t.Fatalf("Get(empty) = %d bytes, %v", len(got), err)
	}
	f.TruncateReads(0)

	f.CorruptReads(1)
	for range 50 {
		got, err := f.Get(ctx, "k")
		if err != nil || len(got) != len(data) {
			t.Fatalf("corrupted Get = %d bytes, %v", len(got), err)
		}
		diff := 0
		for i := range got {
			if got[i] != data[i] {
				diff++
			}
		}
		if diff != 1 {
			t.Fatalf("corrupted Get differs in %d bytes, want 1", diff)
		}
	}
	f.CorruptReads(0)
	// The stored object was never touched.
	if got, err := f.Get(ctx, "k"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get after distortions off = %d bytes, %v", len(got), err)
	}

	// At p=0.5 some reads are clean and some are not.
	f.CorruptReads(0.5)
	clean := 0
	for range 200 {
		got, _ := f.Get(ctx, "k")
		if bytes.Equal(got, data) {
			clean++
		}
	}
	if clean < 60 || clean > 140 {
		t.Fatalf("%d of 200 reads clean at p=0.5", clean)
	}
}

func TestFaultyConcurrent(t *testing.T) {
	// Run under -race: settings change while calls are in flight.
	ctx := context.Background()
	f := newFaulty(t, 5)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				key := fmt.Sprintf("w%d/%d", w, i%10)
				f.Put(ctx, key, []byte(key), false)
				f.Get(ctx, key)
				f.GetRange(ctx, key, 0, 2)
				f.Size(ctx, key)
				f.List(ctx, fmt.Sprintf("w%d/", w), func(ObjectInfo) error { return nil })
				if i%10 == 9 {
					f.Delete(ctx, key)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 200 {
			p := float64(i%3) / 4
			f.SetErrorRate(Op(1+i%6), p, errFlaky)
			f.FailNext(OpGet, 1, errFlaky)
			f.TruncateReads(p)
			f.CorruptReads(p)
			f.SetLatency(OpSize, time.Duration(i%2)*time.Microsecond)
			_ = f.Counts()
		}
		f.Heal()
	}()
	wg.Wait()
	c := f.Counts()
	if c[OpPut] != 800 || c[OpGet] != 800 || c[OpList] != 800 || c[OpDelete] != 80 {
		t.Fatalf("Counts = %v", c)
	}
}
