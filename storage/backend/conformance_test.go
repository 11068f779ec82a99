package backend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testBackend is the conformance suite every driver must pass. b must be
// empty; each case works under its own key prefix.
func testBackend(t *testing.T, b Backend) {
	t.Helper()
	cases := []struct {
		name string
		fn   func(t *testing.T, ctx context.Context, b Backend, p string)
	}{
		{"PutGet", testPutGet},
		{"EmptyObject", testEmptyObject},
		{"GetRange", testGetRange},
		{"Size", testSize},
		{"ListOrderAndPrefixes", testListOrder},
		{"ListStopsOnCallbackError", testListStop},
		{"Delete", testDelete},
		{"IfNotExist", testIfNotExist},
		{"NotFound", testNotFound},
		{"InvalidKeys", testInvalidKeys},
		{"Large20MiB", testLarge},
		{"ConcurrentPutsDistinctKeys", testConcurrentPuts},
		{"ConcurrentIfNotExistOneWinner", testIfNotExistRace},
		{"ReadersNeverSeePartialObjects", testAtomicOverwrite},
		{"CancelledPutStoresNothing", testCancelledPut},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			c.fn(t, ctx, b, fmt.Sprintf("case%02d/", i))
		})
	}
}

func randBytes(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

func mustPut(t *testing.T, ctx context.Context, b Backend, key string, data []byte) {
	t.Helper()
	if err := b.Put(ctx, key, data, false); err != nil {
		t.Fatalf("Put(%q, %d bytes): %v", key, len(data), err)
	}
}

func mustGet(t *testing.T, ctx context.Context, b Backend, key string, want []byte) {
	t.Helper()
	got, err := b.Get(ctx, key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%q) = %d bytes, want %d bytes (equal: %v)", key, len(got), len(want), bytes.Equal(got, want))
	}
}

func listKeys(t *testing.T, ctx context.Context, b Backend, prefix string) []ObjectInfo {
	t.Helper()
	var out []ObjectInfo
	if err := b.List(ctx, prefix, func(oi ObjectInfo) error {
		out = append(out, oi)
		return nil
	}); err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return out
}

func keysOf(infos []ObjectInfo) []string {
	keys := make([]string, len(infos))
	for i, oi := range infos {
		keys[i] = oi.Key
	}
	return keys
}

func testPutGet(t *testing.T, ctx context.Context, b Backend, p string) {
	data := []byte("hello, crayfish")
	mustPut(t, ctx, b, p+"obj", data)
	mustGet(t, ctx, b, p+"obj", data)
	// Plain Put replaces.
	data2 := randBytes(1, 3000)
	mustPut(t, ctx, b, p+"obj", data2)
	mustGet(t, ctx, b, p+"obj", data2)
	// Deep keys and every allowed character.
	deep := p + "packs/ab/AZaz09._-x"
	mustPut(t, ctx, b, deep, data)
	mustGet(t, ctx, b, deep, data)
	// The caller's slice may be reused after Put.
	buf := []byte("original")
	mustPut(t, ctx, b, p+"reuse", buf)
	copy(buf, "XXXXXXXX")
	mustGet(t, ctx, b, p+"reuse", []byte("original"))
}

func testEmptyObject(t *testing.T, ctx context.Context, b Backend, p string) {
	key := p + "empty"
	mustPut(t, ctx, b, key, nil)
	got, err := b.Get(ctx, key)
	if err != nil || len(got) != 0 {
		t.Fatalf("Get(empty) = %d bytes, %v", len(got), err)
	}
	if size, err := b.Size(ctx, key); err != nil || size != 0 {
		t.Fatalf("Size(empty) = %d, %v", size, err)
	}
	if got, err := b.GetRange(ctx, key, 0, -1); err != nil || len(got) != 0 {
		t.Fatalf("GetRange(empty, 0, -1) = %d bytes, %v", len(got), err)
	}
	if got, err := b.GetRange(ctx, key, 0, 1); !errors.Is(err, io.ErrUnexpectedEOF) || len(got) != 0 {
		t.Fatalf("GetRange(empty, 0, 1) = %d bytes, %v; want 0 bytes, io.ErrUnexpectedEOF", len(got), err)
	}
	infos := listKeys(t, ctx, b, p)
	if len(infos) != 1 || infos[0].Key != key || infos[0].Size != 0 {
		t.Fatalf("List = %+v", infos)
	}
	if err := b.Put(ctx, key, []byte{}, true); !errors.Is(err, ErrExists) {
		t.Fatalf("Put(empty, ifNotExist) on existing = %v, want ErrExists", err)
	}
}

func testGetRange(t *testing.T, ctx context.Context, b Backend, p string) {
	key := p + "range"
	data := randBytes(2, 1000)
	mustPut(t, ctx, b, key, data)
	n := int64(len(data))
	for _, c := range []struct {
		off, length int64
		want        []byte
		short       bool // io.ErrUnexpectedEOF expected
	}{
		{0, 10, data[:10], false},
		{0, n, data, false},
		{0, -1, data, false},
		{1, 1, data[1:2], false},
		{500, 250, data[500:750], false},
		{990, -1, data[990:], false},
		{999, 1, data[999:], false},
		{3, 0, []byte{}, false},
		{n, -1, []byte{}, false},
		{n, 0, []byte{}, false},
		{990, 20, data[990:], true},
		{0, n + 1, data, true},
		{n, 1, []byte{}, true},
		{n + 10, 5, []byte{}, true},
		{n + 10, -1, []byte{}, true},
	} {
		got, err := b.GetRange(ctx, key, c.off, c.length)
		if c.short {
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("GetRange(%d, %d): err = %v, want io.ErrUnexpectedEOF", c.off, c.length, err)
			}
		} else if err != nil {
			t.Errorf("GetRange(%d, %d): %v", c.off, c.length, err)
			continue
		}
		if !bytes.Equal(got, c.want) {
			t.Errorf("GetRange(%d, %d) = %d bytes, want %d", c.off, c.length, len(got), len(c.want))
		}
	}
	for _, bad := range [][2]int64{{-1, 5}, {0, -2}} {
		if _, err := b.GetRange(ctx, key, bad[0], bad[1]); err == nil || IsTransient(err) {
			t.Errorf("GetRange(%d, %d) = %v, want a permanent error", bad[0], bad[1], err)
		}
	}
}

func testSize(t *testing.T, ctx context.Context, b Backend, p string) {
	for i, n := range []int{1, 17, 4096, 100_000} {
		key := fmt.Sprintf("%ssize%d", p, i)
		mustPut(t, ctx, b, key, randBytes(int64(n), n))
		if got, err := b.Size(ctx, key); err != nil || got != int64(n) {
			t.Fatalf("Size(%q) = %d, %v; want %d", key, got, err, n)
		}
	}
}

func testListOrder(t *testing.T, ctx context.Context, b Backend, p string) {
	// Chosen so that file-system walk order differs from key order:
	// '-' (0x2d) < '/' (0x2f) < '0' (0x30).
	keys := []string{"b", "a/c/d", "a0", "a-b", "ab/x", "a/b", "a.z", "B", "a/c-e", "a/c/e/f"}
	sizes := map[string]int64{}
	start := time.Now()
	for i, k := range keys {
		data := randBytes(int64(i), 10+i)
		sizes[p+k] = int64(len(data))
		mustPut(t, ctx, b, p+k, data)
	}
	// Something outside the prefix that shares its first bytes.
	other := p[:len(p)-1] + "x/zzz"
	mustPut(t, ctx, b, other, []byte("x"))
	defer b.Delete(ctx, other)

	all := listKeys(t, ctx, b, p)
	var want []string
	for _, k := range keys {
		want = append(want, p+k)
	}
	slices.Sort(want)
	if got := keysOf(all); !slices.Equal(got, want) {
		t.Fatalf("List(%q) =\n%q\nwant\n%q", p, got, want)
	}
	for _, oi := range all {
		if oi.Size != sizes[oi.Key] {
			t.Errorf("List: %s has size %d, want %d", oi.Key, oi.Size, sizes[oi.Key])
		}
		if oi.ModTime.IsZero() || oi.ModTime.Before(start.Add(-time.Hour)) || oi.ModTime.After(time.Now().Add(time.Hour)) {
			t.Errorf("List: %s has modification time %v (test started %v)", oi.Key, oi.ModTime, start)
		}
	}
	for _, c := range []struct {
		prefix string
		want   []string
	}{
		{"a/", []string{"a/b", "a/c-e", "a/c/d", "a/c/e/f"}},
		{"a/c", []string{"a/c-e", "a/c/d", "a/c/e/f"}},
		{"a/c/", []string{"a/c/d", "a/c/e/f"}},
		{"a", []string{"a-b", "a.z", "a/b", "a/c-e", "a/c/d", "a/c/e/f", "a0", "ab/x"}},
		{"ab", []string{"ab/x"}},
		{"ab/", []string{"ab/x"}},
		{"b", []string{"b"}},
		{"B", []string{"B"}},
		{"a/b", []string{"a/b"}},
		{"a/b/", nil},
		{"zz", nil},
		{"nodir/", nil},
	} {
		var want []string
		for _, k := range c.want {
			want = append(want, p+k)
		}
		if got := keysOf(listKeys(t, ctx, b, p+c.prefix)); !slices.Equal(got, want) {
			t.Errorf("List(%q) = %q, want %q", p+c.prefix, got, want)
		}
	}
	// An empty prefix lists everything, in order too.
	everything := keysOf(listKeys(t, ctx, b, ""))
	if !slices.IsSorted(everything) {
		t.Errorf("List(\"\") is not sorted: %q", everything)
	}
	for _, k := range append(want, other) {
		if _, ok := slices.BinarySearch(everything, k); !ok {
			t.Errorf("List(\"\") misses %q", k)
		}
	}
}

func testListStop(t *testing.T, ctx context.Context, b Backend, p string) {
	for i := range 5 {
		mustPut(t, ctx, b, fmt.Sprintf("%sk%d", p, i), []byte{byte(i)})
	}
	stop := errors.New("stop here")
	var seen []string
	err := b.List(ctx, p, func(oi ObjectInfo) error {
		seen = append(seen, oi.Key)
		if len(seen) == 2 {
			return stop
		}
		return nil
	})
	if err != stop {
		t.Fatalf("List returned %v, want the callback's error unchanged", err)
	}
	if !slices.Equal(seen, []string{p + "k0", p + "k1"}) {
		t.Fatalf("callback saw %q", seen)
	}
}

func testDelete(t *testing.T, ctx context.Context, b Backend, p string) {
	key := p + "d/x"
	mustPut(t, ctx, b, key, []byte("x"))
	mustPut(t, ctx, b, p+"d/y", []byte("y"))
	if err := b.Delete(ctx, key); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := b.Get(ctx, key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete = %v, want ErrNotFound", err)
	}
	if err := b.Delete(ctx, key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Delete = %v, want ErrNotFound", err)
	}
	if got := keysOf(listKeys(t, ctx, b, p)); !slices.Equal(got, []string{p + "d/y"}) {
		t.Fatalf("List after Delete = %q", got)
	}
	// The key can be written again.
	mustPut(t, ctx, b, key, []byte("again"))
	mustGet(t, ctx, b, key, []byte("again"))
}

func testIfNotExist(t *testing.T, ctx context.Context, b Backend, p string) {
	key := p + "lease"
	if err := b.Put(ctx, key, []byte("first"), true); err != nil {
		t.Fatalf("Put(ifNotExist) on a new key: %v", err)
	}
	err := b.Put(ctx, key, []byte("second"), true)
	if !errors.Is(err, ErrExists) {
		t.Fatalf("Put(ifNotExist) on an existing key = %v, want ErrExists", err)
	}
	if IsTransient(err) {
		t.Fatalf("ErrExists classified as transient: %v", err)
	}
	mustGet(t, ctx, b, key, []byte("first"))
	// Without ifNotExist the same key is replaced.
	mustPut(t, ctx, b, key, []byte("third"))
	mustGet(t, ctx, b, key, []byte("third"))
	// After a delete, ifNotExist succeeds again.
	if err := b.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, key, []byte("fourth"), true); err != nil {
		t.Fatalf("Put(ifNotExist) after Delete: %v", err)
	}
	mustGet(t, ctx, b, key, []byte("fourth"))
}

func testNotFound(t *testing.T, ctx context.Context, b Backend, p string) {
	key := p + "missing/obj"
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s on a missing key = %v, want ErrNotFound", what, err)
		} else if IsTransient(err) {
			t.Errorf("%s: ErrNotFound classified as transient", what)
		}
	}
	_, err := b.Get(ctx, key)
	check("Get", err)
	_, err = b.GetRange(ctx, key, 0, 10)
	check("GetRange(0, 10)", err)
	_, err = b.GetRange(ctx, key, 5, -1)
	check("GetRange(5, -1)", err)
	_, err = b.GetRange(ctx, key, 0, 0)
	check("GetRange(0, 0)", err)
	_, err = b.Size(ctx, key)
	check("Size", err)
	check("Delete", b.Delete(ctx, key))
	if infos := listKeys(t, ctx, b, p+"missing/"); len(infos) != 0 {
		t.Errorf("List of an empty prefix = %+v", infos)
	}
}

func testInvalidKeys(t *testing.T, ctx context.Context, b Backend, p string) {
	for _, key := range []string{"", "/abs", p + "a//b", p + "trailing/", p + "../up", p + "./x",
		p + "a b", p + "x.tmp", p + "x.1234abcd.tmp", p + "x.attrs", p + "caf\u00e9", p + "a__0x2f__b",
		p + string(bytes.Repeat([]byte("k"), 1100))} {
		err := b.Put(ctx, key, []byte("x"), false)
		if !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Put(%.40q) = %v, want ErrInvalidKey", key, err)
		}
		if IsTransient(err) {
			t.Errorf("Put(%.40q): invalid key classified as transient", key)
		}
		if _, err := b.Get(ctx, key); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Get(%.40q) = %v, want ErrInvalidKey", key, err)
		}
	}
	for _, prefix := range []string{"../", p + "a//", "x y", p + "./"} {
		if err := b.List(ctx, prefix, func(ObjectInfo) error { return nil }); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("List(%q) = %v, want ErrInvalidKey", prefix, err)
		}
	}
	if infos := listKeys(t, ctx, b, p); len(infos) != 0 {
		t.Errorf("invalid keys left objects: %+v", infos)
	}
}

func testLarge(t *testing.T, ctx context.Context, b Backend, p string) {
	key := p + "big"
	data := randBytes(20, 20<<20)
	start := time.Now()
	if err := b.Put(ctx, key, data, true); err != nil {
		t.Fatalf("Put(20 MiB): %v", err)
	}
	t.Logf("20 MiB put in %v", time.Since(start))
	mustGet(t, ctx, b, key, data)
	if size, err := b.Size(ctx, key); err != nil || size != int64(len(data)) {
		t.Fatalf("Size = %d, %v", size, err)
	}
	// Ranges across the 8 MiB and 16 MiB boundaries drivers split at.
	for _, r := range [][2]int64{{8<<20 - 100, 200}, {16<<20 - 7, 1 << 20}, {20<<20 - 64<<10, -1}} {
		got, err := b.GetRange(ctx, key, r[0], r[1])
		if err != nil {
			t.Fatalf("GetRange(%d, %d): %v", r[0], r[1], err)
		}
		end := int64(len(data))
		if r[1] >= 0 {
			end = r[0] + r[1]
		}
		if !bytes.Equal(got, data[r[0]:end]) {
			t.Fatalf("GetRange(%d, %d): wrong bytes", r[0], r[1])
		}
	}
	if err := b.Put(ctx, key, data[:1000], true); !errors.Is(err, ErrExists) {
		t.Fatalf("Put(ifNotExist) over the big object = %v, want ErrExists", err)
	}
	if err := b.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
}

func testConcurrentPuts(t *testing.T, ctx context.Context, b Backend, p string) {
	const workers, perWorker = 8, 6
	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				key := fmt.Sprintf("%sw%d/%02x/obj%d", p, w, i, i)
				if err := b.Put(ctx, key, randBytes(int64(w*100+i), 1000+w*perWorker+i), i%2 == 0); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	infos := listKeys(t, ctx, b, p)
	if len(infos) != workers*perWorker {
		t.Fatalf("List found %d objects, want %d", len(infos), workers*perWorker)
	}
	for w := range workers {
		for i := range perWorker {
			key := fmt.Sprintf("%sw%d/%02x/obj%d", p, w, i, i)
			mustGet(t, ctx, b, key, randBytes(int64(w*100+i), 1000+w*perWorker+i))
		}
	}
}

func testIfNotExistRace(t *testing.T, ctx context.Context, b Backend, p string) {
	key := p + "gc/lease"
	const n = 6
	var wins atomic.Int32
	winner := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := b.Put(ctx, key, []byte(fmt.Sprintf("owner-%d", i)), true)
			switch {
			case err == nil:
				wins.Add(1)
				winner <- i
			case !errors.Is(err, ErrExists):
				t.Errorf("racing Put(ifNotExist) #%d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if got := wins.Load(); got != 1 {
		t.Fatalf("%d racing Put(ifNotExist) succeeded, want exactly 1", got)
	}
	mustGet(t, ctx, b, key, []byte(fmt.Sprintf("owner-%d", <-winner)))
}

func testAtomicOverwrite(t *testing.T, ctx context.Context, b Backend, p string) {
	key := p + "flip"
	a, c := bytes.Repeat([]byte{'a'}, 1<<20), bytes.Repeat([]byte{'c'}, 1<<20+512<<10)
	mustPut(t, ctx, b, key, a)
	done := make(chan struct{})
	var wg sync.WaitGroup
	var reads atomic.Int32
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				got, err := b.Get(ctx, key)
				if err != nil {
					t.Errorf("Get during overwrites: %v", err)
					return
				}
				if !bytes.Equal(got, a) && !bytes.Equal(got, c) {
					t.Errorf("Get during overwrites returned %d bytes that are neither version", len(got))
					return
				}
				reads.Add(1)
			}
		}()
	}
	for i := range 8 {
		data := a
		if i%2 == 0 {
			data = c
		}
		if err := b.Put(ctx, key, data, false); err != nil {
			t.Error(err)
			break
		}
	}
	close(done)
	wg.Wait()
	t.Logf("%d concurrent reads, all complete", reads.Load())
}

func testCancelledPut(t *testing.T, ctx context.Context, b Backend, p string) {
	key := p + "cancelled"
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.Put(cctx, key, randBytes(3, 100_000), false); err == nil {
		t.Fatal("Put with a cancelled context succeeded")
	} else if IsTransient(err) {
		t.Errorf("cancelled Put classified as transient: %v", err)
	}
	if _, err := b.Get(ctx, key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after a cancelled Put = %v, want ErrNotFound", err)
	}
}
