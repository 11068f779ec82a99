package tree

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/crayfish-backup/crayfish/storage"
)

// download fetches the entry's chunks into f, checking the length of each
// and the size and SHA-256 of the whole.
func (r *restorer) download(ctx context.Context, f *os.File, e storage.FileEntry) error {
	h := sha256.New()
	var n int64
	err := r.loadChunks(ctx, e, func(i int, data []byte) error {
		if want := chunkLen(e.Size, i); int64(len(data)) != want {
			return fmt.Errorf("%w: chunk %d (%s): got %d bytes, want %d", ErrVerify, i, e.Chunks[i], len(data), want)
		}
		if _, err := f.Write(data); err != nil {
			return err
		}
		h.Write(data)
		n += int64(len(data))
		r.progress.addBytes(int64(len(data)))
		return nil
	})
	if err != nil {
		return err
	}
	var got storage.ObjectID
	h.Sum(got[:0])
	if n != e.Size || got != e.Content {
		return fmt.Errorf("%w: got %d bytes with sha256 %s, want %d bytes with %s",
			ErrVerify, n, got, e.Size, e.Content)
	}
	return nil
}

// loadResult is the outcome of one LoadBlob.
type loadResult struct {
	data []byte
	err  error
}

// loadChunks loads the entry's chunks and hands them to consume in order.
// A single chunk is loaded directly. For more, chunk i+chunkLookahead is
// requested once chunk i has been consumed, so at most chunkLookahead
// chunks are in flight. All loads have ended when loadChunks returns.
// After a damaged chunk the rest are still loaded, to name every damaged
// one, but no longer consumed; the error is then a *damageError.
func (r *restorer) loadChunks(ctx context.Context, e storage.FileEntry, consume func(i int, data []byte) error) error {
	var damaged []DamagedChunk
	// loadErr returns the error that ends the file, nil for damage that
	// lets the other chunks be looked at.
	loadErr := func(i int, err error) error {
		if isDamage(err) && ctx.Err() == nil {
			damaged = append(damaged, DamagedChunk{Index: i, ID: e.Chunks[i],
				Missing: !errors.Is(err, storage.ErrCorrupt), Detail: err.Error()})
			return nil
		}
		return fmt.Errorf("fetch chunk %d (%s): %w", i, e.Chunks[i], err)
	}
	damageErr := func() error {
		if damaged == nil {
			return nil
		}
		return &damageError{DamagedFile{Path: e.Path, Chunks: damaged}}
	}
	n := len(e.Chunks)
	if n == 1 {
		data, err := r.src.LoadBlob(ctx, e.Chunks[0])
		if err != nil {
			if err := loadErr(0, err); err != nil {
				return err
			}
			return damageErr()
		}
		return consume(0, data)
	}

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	window := min(n, chunkLookahead)
	// Slot i%window carries chunk i. A slot is reused only after its
	// result was received, so its one-element buffer never blocks a sender.
	slots := make([]chan loadResult, window)
	for i := range slots {
		slots[i] = make(chan loadResult, 1)
	}
	start := func(i int) {
		wg.Go(func() {
			data, err := r.src.LoadBlob(ctx, e.Chunks[i])
			slots[i%window] <- loadResult{data, err}
		})
	}
	for i := range window {
		start(i)
	}
	for i := range n {
		var res loadResult
		select {
		case res = <-slots[i%window]:
		case <-ctx.Done():
			return ctx.Err()
		}
		if res.err != nil {
			if err := loadErr(i, res.err); err != nil {
				return err
			}
		} else if damaged == nil {
			if err := consume(i, res.data); err != nil {
				return err
			}
		}
		if next := i + window; next < n {
			start(next)
		}
	}
	return damageErr()
}
