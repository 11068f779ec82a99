package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// backends runs f against a fresh file:// and a fresh mem:// repository.
func backends(t *testing.T, f func(t *testing.T, r *Repository)) {
	t.Run("file", func(t *testing.T) { f(t, newFileRepo(t)) })
	t.Run("mem", func(t *testing.T) { f(t, newRepo(t, "mem://")) })
}

func newRepo(t testing.TB, url string) *Repository {
	t.Helper()
	r, err := Open(context.Background(), url, OpenOptions{Create: true})
	if err != nil {
		t.Fatalf("Open(%s): %v", url, err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// newFileRepo creates a repository in a directory that does not exist yet
// (Open must create it).
func newFileRepo(t testing.TB) *Repository {
	return newRepo(t, "file://"+filepath.Join(t.TempDir(), "repo"))
}

// repoDir is the local directory of a file:// repository.
func repoDir(r *Repository) string { return strings.TrimPrefix(r.URL(), "file://") }

// compressible returns n bytes of log-like text.
func compressible(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	var b bytes.Buffer
	for b.Len() < n {
		fmt.Fprintf(&b, "2026-01-02T03:04:%02d.%06dZ INFO compaction of table ks.t%d finished, %d bytes\n",
			rng.IntN(60), rng.IntN(1e6), rng.IntN(20), rng.IntN(1<<30))
	}
	return b.Bytes()[:n]
}

func random(n int, seed uint64) []byte {
	b := make([]byte, n)
	rng := rand.NewChaCha8([32]byte{byte(seed)})
	rng.Read(b)
	return b
}

func put(t *testing.T, r *Repository, data []byte) (ObjectID, int64) {
	t.Helper()
	id := HashBytes(data)
	stored, err := r.Put(context.Background(), id, int64(len(data)), bytes.NewReader(data))
	if err != nil {
		t.Fatalf("Put(%d bytes): %v", len(data), err)
	}
	return id, stored
}

func get(t *testing.T, r *Repository, id ObjectID) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := r.Get(context.Background(), id, &buf)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("Get returned n=%d, wrote %d", n, buf.Len())
	}
	return buf.Bytes()
}

// storedFiles lists every regular file under dir, relative to it.
func storedFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestObjectRoundTrip(t *testing.T) {
	const mib = 1 << 20
	cases := []struct {
		name string
		data []byte
		raw  bool // expect codec raw
	}{
		{"empty", nil, true},
		{"small", []byte("hello, crayfish\n"), true}, // too small to shrink
		{"small-compressible", compressible(64<<10, 1), false},
		{"compressible-5MiB", compressible(5*mib, 2), false},      // streamed (> probeSize)
		{"incompressible-5MiB", random(5*mib, 3), true},           // streamed raw
		{"incompressible-1MiB", random(mib, 4), true},             // buffered raw
		{"probe-size-exactly", compressible(probeSize, 5), false}, // EOF right at the probe boundary
		{"compressible-then-random", append(compressible(probeSize, 6), random(mib, 7)...), false},
	}
	backends(t, func(t *testing.T, r *Repository) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				id, stored := put(t, r, c.data)
				size := int64(len(c.data))
				if c.raw && stored != size+1 {
					t.Errorf("stored %d bytes for %d raw bytes, want %d", stored, size, size+1)
				}
				if !c.raw && stored >= size/2 {
					t.Errorf("stored %d bytes for %d compressible bytes", stored, size)
				}
				if stored > size+size/1000+64 {
					t.Errorf("stored %d bytes for %d: too much overhead", stored, size)
				}
				if ok, err := r.Has(context.Background(), id); err != nil || !ok {
					t.Fatalf("Has = %v, %v", ok, err)
				}
				if got := get(t, r, id); !bytes.Equal(got, c.data) {
					t.Fatalf("Get returned %d bytes that differ from the %d put", len(got), len(c.data))
				}
				// Writing it again is harmless.
				if _, stored2 := put(t, r, c.data); stored2 != stored {
					t.Errorf("second Put stored %d, first %d", stored2, stored)
				}
				if got := get(t, r, id); !bytes.Equal(got, c.data) {
					t.Fatal("Get after second Put differs")
				}
			})
		}
	})
}

func TestObjectFileLayout(t *testing.T) {
	r := newFileRepo(t)
	small := []byte("some bytes")
	id, _ := put(t, r, small)
	big, _ := put(t, r, compressible(5<<20, 9))

	want := []string{
		"config",
		"objects/" + id.String()[:2] + "/" + id.String(),
		"objects/" + big.String()[:2] + "/" + big.String(),
	}
	got := storedFiles(t, repoDir(r))
	if strings.Join(sorted(got), "\n") != strings.Join(sorted(want), "\n") {
		t.Fatalf("files in repository:\n%s\nwant (no .attrs sidecars, no temporary files):\n%s",
			strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	raw, err := os.ReadFile(filepath.Join(repoDir(r), want[1]))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw, append([]byte{codecRaw}, small...)) {
		t.Fatalf("raw object bytes = %q", raw)
	}
	zs, err := os.ReadFile(filepath.Join(repoDir(r), want[2]))
	if err != nil {
		t.Fatal(err)
	}
	if zs[0] != codecZstd || !bytes.Equal(zs[1:5], []byte{0x28, 0xb5, 0x2f, 0xfd}) {
		t.Fatalf("zstd object starts with % x, want 01 28 b5 2f fd", zs[:5])
	}
}

func sorted(s []string) []string {
	s = append([]string(nil), s...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s
}

func TestPutWrongIDStoresNothing(t *testing.T) {
	backends(t, func(t *testing.T, r *Repository) {
		for _, data := range [][]byte{[]byte("small"), compressible(5<<20, 1), random(5<<20, 2)} {
			wrong := HashBytes(append([]byte("x"), data...))
			_, err := r.Put(context.Background(), wrong, int64(len(data)), bytes.NewReader(data))
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Put with wrong id: err = %v, want ErrCorrupt", err)
			}
			if ok, err := r.Has(context.Background(), wrong); err != nil || ok {
				t.Fatalf("Has(wrong id) = %v, %v after failed Put", ok, err)
			}
		}
		if strings.HasPrefix(r.URL(), "file://") {
			if got := storedFiles(t, repoDir(r)); len(got) != 1 || got[0] != "config" {
				t.Fatalf("failed Puts left files behind: %v", got)
			}
		}
	})
}

func TestPutSizeMismatch(t *testing.T) {
	r := newFileRepo(t)
	for _, data := range [][]byte{[]byte("abc"), compressible(5<<20, 1)} {
		id := HashBytes(data)
		for _, size := range []int64{int64(len(data)) - 1, int64(len(data)) + 1} {
			_, err := r.Put(context.Background(), id, size, bytes.NewReader(data))
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Put(size %d of %d): err = %v, want ErrCorrupt", size, len(data), err)
			}
			if ok, _ := r.Has(context.Background(), id); ok {
				t.Fatal("object stored despite size mismatch")
			}
		}
		// Unknown size is fine.
		if _, err := r.Put(context.Background(), id, -1, bytes.NewReader(data)); err != nil {
			t.Fatalf("Put(size -1): %v", err)
		}
	}
}

type failingReader struct {
	r     io.Reader
	after int
	n     int
}

var errSource = errors.New("source broke")

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n >= f.after {
		return 0, errSource
	}
	if len(p) > f.after-f.n {
		p = p[:f.after-f.n]
	}
	n, err := f.r.Read(p)
	f.n += n
	return n, err
}

func TestPutSourceError(t *testing.T) {
	backends(t, func(t *testing.T, r *Repository) {
		data := compressible(6<<20, 1)
		id := HashBytes(data)
		for _, after := range []int{10, 5 << 20} { // inside the probe, and while streaming
			_, err := r.Put(context.Background(), id, int64(len(data)), &failingReader{r: bytes.NewReader(data), after: after})
			if !errors.Is(err, errSource) || errors.Is(err, ErrCorrupt) {
				t.Fatalf("Put from a failing source: err = %v, want the source's error", err)
			}
			if ok, _ := r.Has(context.Background(), id); ok {
				t.Fatal("object stored despite source error")
			}
		}
	})
}

func TestPutCancelled(t *testing.T) {
	r := newFileRepo(t)
	data := compressible(6<<20, 1)
	id := HashBytes(data)
	ctx, cancel := context.WithCancel(context.Background())
	src := &cancellingReader{r: bytes.NewReader(data), after: 5 << 20, cancel: cancel}
	if _, err := r.Put(ctx, id, int64(len(data)), src); err == nil {
		t.Fatal("Put with a context cancelled mid-stream succeeded")
	}
	if got := storedFiles(t, repoDir(r)); len(got) != 1 {
		t.Fatalf("cancelled Put left files behind: %v", got)
	}
}

type cancellingReader struct {
	r      io.Reader
	after  int
	n      int
	cancel func()
}

func (c *cancellingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	if c.n >= c.after {
		c.cancel()
	}
	return n, err
}

func TestConcurrentPutsOfOneObject(t *testing.T) {
	backends(t, func(t *testing.T, r *Repository) {
		data := compressible(256<<10, 1)
		id := HashBytes(data)
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Go(func() {
				_, err := r.Put(context.Background(), id, int64(len(data)), bytes.NewReader(data))
				errs <- err
				var buf bytes.Buffer
				if _, err := r.Get(context.Background(), id, &buf); err != nil && !errors.Is(err, ErrNotFound) {
					errs <- fmt.Errorf("concurrent Get: %w", err)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(get(t, r, id), data) {
			t.Fatal("content differs after concurrent Puts")
		}
	})
}

func TestGetMissing(t *testing.T) {
	backends(t, func(t *testing.T, r *Repository) {
		id := HashBytes([]byte("never stored"))
		var buf bytes.Buffer
		if _, err := r.Get(context.Background(), id, &buf); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get of a missing object: err = %v, want ErrNotFound", err)
		}
		if ok, err := r.Has(context.Background(), id); ok || err != nil {
			t.Fatalf("Has of a missing object = %v, %v", ok, err)
		}
	})
}

func TestGetCorrupt(t *testing.T) {
	cases := []struct {
		name   string
		data   []byte
		damage func(b []byte) []byte
	}{
		{"raw-flipped-byte", random(100<<10, 1), func(b []byte) []byte { b[len(b)/2] ^= 0x40; return b }},
		{"zstd-flipped-byte", compressible(5<<20, 2), func(b []byte) []byte { b[len(b)/2] ^= 0x40; return b }},
		{"zstd-flipped-last-byte", compressible(64<<10, 3), func(b []byte) []byte { b[len(b)-1] ^= 0x01; return b }},
		{"zstd-truncated", compressible(5<<20, 4), func(b []byte) []byte { return b[:len(b)-100] }},
		{"raw-truncated", random(1000, 5), func(b []byte) []byte { return b[:500] }},
		{"trailing-garbage", compressible(64<<10, 6), func(b []byte) []byte { return append(b, "junk"...) }},
		{"unknown-codec", []byte("abc"), func(b []byte) []byte { b[0] = 7; return b }},
		{"empty-file", []byte("abc"), func(b []byte) []byte { return nil }},
		{"raw-marked-zstd", random(1000, 7), func(b []byte) []byte { b[0] = codecZstd; return b }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newFileRepo(t)
			id, _ := put(t, r, c.data)
			p := filepath.Join(repoDir(r), filepath.FromSlash(objectKey(id)))
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, c.damage(b), 0o666); err != nil {
				t.Fatal(err)
			}
			_, err = r.Get(context.Background(), id, io.Discard)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Get of a damaged object: err = %v, want ErrCorrupt", err)
			}
			// A new Put repairs it.
			put(t, r, c.data)
			if !bytes.Equal(get(t, r, id), c.data) {
				t.Fatal("Put did not repair the damaged object")
			}
		})
	}
}

type failingWriter struct{}

var errSink = errors.New("disk full")

func (failingWriter) Write(p []byte) (int, error) { return 0, errSink }

func TestGetWriteErrorIsNotCorruption(t *testing.T) {
	backends(t, func(t *testing.T, r *Repository) {
		for _, data := range [][]byte{random(1000, 1), compressible(1<<20, 2)} {
			id, _ := put(t, r, data)
			_, err := r.Get(context.Background(), id, failingWriter{})
			if !errors.Is(err, errSink) || errors.Is(err, ErrCorrupt) {
				t.Fatalf("Get into a failing writer: err = %v, want the writer's error", err)
			}
		}
	})
}

// TestLargeStream checks that a stream longer than the decoder's memory cap
// decodes (the cap bounds the window, not the length).
func TestLargeStream(t *testing.T) {
	if testing.Short() {
		t.Skip("large object")
	}
	r := newRepo(t, "mem://")
	const size = decoderMaxMemory + 16<<20
	chunk := compressible(1<<20, 1)
	h := sha256.New()
	for range size / len(chunk) {
		h.Write(chunk)
	}
	id := ObjectID(h.Sum(nil))
	src := &repeatReader{chunk: chunk, left: size}
	stored, err := r.Put(context.Background(), id, size, src)
	if err != nil {
		t.Fatal(err)
	}
	if stored > size/3 {
		t.Errorf("stored %d of %d", stored, size)
	}
	n, err := r.Get(context.Background(), id, io.Discard)
	if err != nil || n != size {
		t.Fatalf("Get = %d, %v; want %d bytes", n, err, size)
	}
}

type repeatReader struct {
	chunk []byte
	off   int
	left  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.left)], r.chunk[r.off:])
	r.off = (r.off + n) % len(r.chunk)
	r.left -= n
	return n, nil
}

func TestOpenNotInitialized(t *testing.T) {
	empty := t.TempDir()
	for _, url := range []string{"file://" + empty, "file://" + filepath.Join(empty, "missing"), "mem://"} {
		_, err := Open(context.Background(), url, OpenOptions{})
		if !errors.Is(err, ErrNotInitialized) {
			t.Errorf("Open(%s) without Create: err = %v, want ErrNotInitialized", url, err)
		}
	}
	if got := storedFiles(t, empty); len(got) != 0 {
		t.Errorf("Open without Create wrote %v", got)
	}
	if _, err := os.Stat(filepath.Join(empty, "missing")); err == nil {
		t.Error("Open without Create created the directory")
	}
}

func TestOpenUnsupported(t *testing.T) {
	cases := map[string]string{
		"version-99":   `{"format":"crayfish","version":99,"id":"abc","hash":"sha256"}`,
		"other-format": `{"format":"restic","version":0,"id":"abc","hash":"sha256"}`,
		"other-hash":   `{"format":"crayfish","version":0,"id":"abc","hash":"blake3"}`,
	}
	for name, config := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "config"), []byte(config), 0o666); err != nil {
				t.Fatal(err)
			}
			for _, create := range []bool{false, true} {
				_, err := Open(context.Background(), "file://"+dir, OpenOptions{Create: create})
				if !errors.Is(err, ErrUnsupportedVersion) {
					t.Fatalf("Open: err = %v, want ErrUnsupportedVersion", err)
				}
				if name == "version-99" && !strings.Contains(err.Error(), "version 99") {
					t.Errorf("error does not say which version was found: %v", err)
				}
			}
		})
	}
}

func TestOpenCorruptConfig(t *testing.T) {
	for _, config := range []string{`not json`, `{"format":"crayfish","version":0,"hash":"sha256"}`} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "config"), []byte(config), 0o666); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(context.Background(), "file://"+dir, OpenOptions{}); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Open with config %q: err = %v, want ErrCorrupt", config, err)
		}
	}
}

func TestReopen(t *testing.T) {
	url := "file://" + filepath.Join(t.TempDir(), "repo")
	r1 := newRepo(t, url)
	data := compressible(1<<20, 1)
	id, _ := put(t, r1, data)
	if err := r1.PutManifest(context.Background(), testManifest("20260101T000000Z-a")); err != nil {
		t.Fatal(err)
	}

	for _, create := range []bool{false, true} {
		r2, err := Open(context.Background(), url, OpenOptions{Create: create})
		if err != nil {
			t.Fatalf("reopen (Create=%v): %v", create, err)
		}
		c1, c2 := r1.Config(), r2.Config()
		if c2.ID != c1.ID || !c2.CreatedAt.Equal(c1.CreatedAt) {
			t.Fatalf("reopen sees config %+v, first open %+v", r2.Config(), r1.Config())
		}
		if !bytes.Equal(get(t, r2, id), data) {
			t.Fatal("reopened repository returns different content")
		}
		ids, err := r2.ListBackupIDs(context.Background())
		if err != nil || len(ids) != 1 {
			t.Fatalf("reopened ListBackupIDs = %v, %v", ids, err)
		}
		r2.Close()
	}
	cfg := r1.Config()
	if cfg.Format != "crayfish" || cfg.Version != 0 || cfg.Hash != "sha256" || len(cfg.ID) != 32 || cfg.CreatedAt.IsZero() {
		t.Fatalf("config = %+v", cfg)
	}
}

func TestConcurrentCreate(t *testing.T) {
	url := "file://" + filepath.Join(t.TempDir(), "repo")
	var wg sync.WaitGroup
	repos := make([]*Repository, 4)
	errs := make([]error, 4)
	for i := range repos {
		wg.Go(func() { repos[i], errs[i] = Open(context.Background(), url, OpenOptions{Create: true}) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
		defer repos[i].Close()
	}
	// fileblob's IfNotExist is not atomic, so concurrent creators in one
	// process may race; what matters is that a later Open agrees with the
	// config on disk.
	r := newRepo(t, url)
	if r.Config().ID == "" {
		t.Fatal("no repository id")
	}
}

func TestURLs(t *testing.T) {
	for _, url := range []string{"s3://bucket", "://bad"} {
		if _, err := Open(context.Background(), url, OpenOptions{Create: true}); err == nil {
			t.Errorf("Open(%q) succeeded", url)
		}
	}
	// Explicit driver options are kept, and ours added.
	got, err := driverURL("file:///x/y?dir_file_mode=0700", OpenOptions{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"dir_file_mode=0700", "metadata=skip", "no_tmp_dir=1", "create_dir=1"} {
		if !strings.Contains(got, want) {
			t.Errorf("driverURL = %s, missing %s", got, want)
		}
	}
}

func TestLimitReader(t *testing.T) {
	for _, c := range []struct {
		size, limit int
		tooLarge    bool
	}{{10, 10, false}, {11, 10, true}, {0, 0, false}, {1, 0, true}, {100000, 99999, true}} {
		data, err := io.ReadAll(&limitReader{r: bytes.NewReader(make([]byte, c.size)), n: int64(c.limit)})
		if errors.Is(err, errTooLarge) != c.tooLarge {
			t.Errorf("size %d limit %d: err = %v", c.size, c.limit, err)
		}
		if !c.tooLarge && len(data) != c.size {
			t.Errorf("size %d limit %d: read %d", c.size, c.limit, len(data))
		}
	}
}

// BenchmarkPut measures Put of a 16 MiB compressible object (zstd fastest,
// SHA-256, store) in MB/s of plaintext.
func BenchmarkPut(b *testing.B) {
	data := compressible(16<<20, 1)
	id := HashBytes(data)
	for _, backend := range []string{"mem", "file"} {
		b.Run(backend, func(b *testing.B) {
			var r *Repository
			if backend == "mem" {
				r = newRepo(b, "mem://")
			} else {
				r = newFileRepo(b)
			}
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			var stored int64
			for b.Loop() {
				var err error
				stored, err = r.Put(context.Background(), id, int64(len(data)), bytes.NewReader(data))
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(stored)/float64(len(data)), "ratio")
		})
	}
}
