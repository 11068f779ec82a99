// Command scaletool reads a stopped agent's Raft log (data_dir/raft/raft.db)
// for bench/scale.sh: the bytes of the entries of each operation kind,
// the largest entry, and the size of the FSM snapshot the log replays to
// (the JSON fsm.Machine persists). It opens a copy: bbolt locks the file.
package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/crayfish-backup/crayfish/fsm"
)

type sink struct{ bytes.Buffer }

func (s *sink) ID() string    { return "scaletool" }
func (s *sink) Cancel() error { return nil }
func (s *sink) Close() error  { return nil }

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: scaletool DATA_DIR/raft/raft.db")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "scaletool:", err)
		os.Exit(1)
	}
}

func run(path string) error {
	tmp, err := os.MkdirTemp("", "scaletool")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	cp := filepath.Join(tmp, "raft.db")
	if err := copyFile(path, cp); err != nil {
		return err
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: cp})
	if err != nil {
		return err
	}
	defer store.Close()
	first, err := store.FirstIndex()
	if err != nil {
		return err
	}
	last, err := store.LastIndex()
	if err != nil {
		return err
	}
	m := fsm.NewMachine()
	kindOf := map[string]fsm.OpKind{}
	type tally struct {
		entries, bytes, largest int
		ops                     map[string]bool
	}
	byKind := map[string]*tally{}
	largest, total := 0, 0
	for i := first; i <= last && i > 0; i++ {
		var l raft.Log
		if err := store.GetLog(i, &l); err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
		total += len(l.Data)
		largest = max(largest, len(l.Data))
		if l.Type != raft.LogCommand {
			continue
		}
		m.Apply(&l)
		c, err := fsm.DecodeCommand(l.Data)
		if err != nil {
			return err
		}
		if c.Type == fsm.CmdStart && c.Op != nil {
			kindOf[c.Op.ID] = c.Op.Kind
		}
		id := c.OpID
		if id == "" && c.Op != nil {
			id = c.Op.ID
		}
		k := "other" // claims, schedules: no operation
		if id != "" {
			k = string(kindOf[id])
		}
		t := byKind[k]
		if t == nil {
			t = &tally{ops: map[string]bool{}}
			byKind[k] = t
		}
		if id != "" {
			t.ops[id] = true
		}
		t.entries++
		t.bytes += len(l.Data)
		t.largest = max(t.largest, len(l.Data))
	}
	snap, err := m.Snapshot()
	if err != nil {
		return err
	}
	var s sink
	if err := snap.Persist(&s); err != nil {
		return err
	}
	kinds := make([]string, 0, len(byKind))
	for k := range byKind {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	fmt.Printf("log entries %d..%d: %d bytes, largest entry %d bytes; fsm snapshot %d bytes\n", first, last, total, largest, s.Len())
	for _, k := range kinds {
		t := byKind[k]
		per := 0
		if len(t.ops) > 0 {
			per = t.bytes / len(t.ops)
		}
		fmt.Printf("kind=%s ops=%d entries=%d bytes=%d bytes_per_op=%d largest=%d\n", k, len(t.ops), t.entries, t.bytes, per, t.largest)
	}
	return nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
