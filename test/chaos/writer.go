package chaos

import (
	"bytes"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Writer keeps changing one node's tree between and during backups, in
// whole generations: a generation is a directory of files whose content
// follows from (node, generation), made aside and renamed into the root,
// and removed by renaming it out. The tree is therefore always exactly a
// set of complete generations, and every set it held is recorded with the
// time it began, so a checker knows what a backup taken in an interval
// may contain.
type Writer struct {
	node, root, staging string
	rng                 *rand.Rand
	clock               func() int64

	mu     sync.Mutex
	gens   []int
	next   int
	states []TreeState
}

// TreeState is the set of generations a tree held from At on.
type TreeState struct {
	At   int64 `json:"at"` // harness clock, ns
	Gens []int `json:"gens"`
}

// NewWriter prepares a writer of root; staging must be on the same
// filesystem and outside root.
func NewWriter(node, root, staging string, seed uint64, clock func() int64) *Writer {
	os.MkdirAll(staging, 0o755)
	return &Writer{node: node, root: root, staging: staging, rng: rand.New(rand.NewPCG(seed, 11)), clock: clock,
		states: []TreeState{{At: 0, Gens: []int{}}}}
}

// GenFiles is generation g of node's files: 1–3 files of 1–48 KiB.
func GenFiles(node string, g int) map[string][]byte {
	r := rand.New(rand.NewPCG(uint64(g)*7919+uint64(len(node)), uint64(node[len(node)-1])))
	out := map[string][]byte{}
	for i := range 1 + r.IntN(3) {
		b := make([]byte, 1024+r.IntN(47*1024))
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		out[fmt.Sprintf("gen-%05d/f%d.bin", g, i)] = b
	}
	return out
}

// Step adds a generation or (sometimes, when there are several) removes
// the oldest.
func (w *Writer) Step() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.gens) >= 3 && w.rng.IntN(3) == 0 {
		g := w.gens[0]
		dir := fmt.Sprintf("gen-%05d", g)
		trash := filepath.Join(w.staging, "trash-"+dir)
		if err := os.Rename(filepath.Join(w.root, dir), trash); err != nil {
			return err
		}
		w.gens = w.gens[1:]
		w.record()
		return os.RemoveAll(trash)
	}
	g := w.next
	w.next++
	dir := fmt.Sprintf("gen-%05d", g)
	tmp := filepath.Join(w.staging, dir)
	for name, data := range GenFiles(w.node, g) {
		p := filepath.Join(w.staging, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, filepath.Join(w.root, dir)); err != nil {
		return err
	}
	w.gens = append(w.gens, g)
	w.record()
	return nil
}

func (w *Writer) record() {
	w.states = append(w.states, TreeState{At: w.clock(), Gens: slices.Clone(w.gens)})
}

// States returns every recorded state.
func (w *Writer) States() []TreeState {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.states)
}

// Run steps every 100–600 ms until stop closes.
func (w *Writer) Run(stop <-chan struct{}) {
	for {
		w.mu.Lock()
		d := time.Duration(100+w.rng.IntN(500)) * time.Millisecond
		w.mu.Unlock()
		select {
		case <-stop:
			return
		case <-time.After(d):
		}
		_ = w.Step()
	}
}

// StatesIn returns the states the tree may have held at some moment of
// [from, to]: the one current at from and every one begun up to to.
func StatesIn(states []TreeState, from, to int64) []TreeState {
	var out []TreeState
	for i, s := range states {
		next := int64(1<<63 - 1)
		if i+1 < len(states) {
			next = states[i+1].At
		}
		if s.At <= to && next >= from {
			out = append(out, s)
		}
	}
	return out
}

// MatchLiveTree checks dir against what a backup of a live tree may
// hold. crayfish snapshots a plain directory tree file by file while it
// changes (tree-wide atomicity needs a filesystem or database snapshot,
// such as Cassandra's), so the promise is: every restored file is whole
// and byte-exact, every restored generation existed at some moment of
// the backup's interval, and every generation that existed during the
// whole interval is restored complete.
//
// With a single candidate state it checks that dir holds exactly that
// state's generations.
func MatchLiveTree(dir, node string, candidates []TreeState) (bool, string) {
	if len(candidates) == 0 {
		return false, "no recorded state in the backup's interval"
	}
	ever, always := map[int]bool{}, map[int]int{}
	for _, s := range candidates {
		for _, g := range s.Gens {
			ever[g] = true
			always[g]++
		}
	}
	restored := map[int]int{} // generation → files found
	var problem string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		var g int
		if _, err := fmt.Sscanf(rel, "gen-%05d/", &g); err != nil || !ever[g] {
			problem = "a file of no generation that existed during the backup: " + rel
			return fs.SkipAll
		}
		want, ok := GenFiles(node, g)[rel]
		got, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !ok || !bytes.Equal(got, want) {
			problem = "not whole or not byte-exact: " + rel
			return fs.SkipAll
		}
		restored[g]++
		return nil
	})
	if err != nil {
		return false, err.Error()
	}
	if problem != "" {
		return false, problem
	}
	for g, n := range always {
		if n == len(candidates) && restored[g] != len(GenFiles(node, g)) {
			return false, fmt.Sprintf("generation %d existed during the whole backup but %d of its %d files were restored", g, restored[g], len(GenFiles(node, g)))
		}
	}
	return true, ""
}
