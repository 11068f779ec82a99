package tree

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"os"
	"syscall"

	"github.com/crayfish-backup/crayfish/internal/pool"
)

// Hashing the snapshot's files: content and chunk ids, read once.

// hashFiles obtains the content id and chunk ids of every regular file:
// from the cache, or by reading it once (copying it on the way when it
// could not be linked). The entries slice no longer grows, so workers can
// fill in distinct elements concurrently.
func (s *snapshotter) hashFiles(workers int, progressFn ProgressFunc) error {
	var total, files, known, knownBytes int64
	var todo []int // indices into s.files of the files to read
	for i := range s.files {
		j := &s.files[i]
		if s.dropped[j.entry] {
			continue
		}
		size := s.entries[j.entry].Size
		files++
		total += size
		if j.hit { // found in the cache by placeFile, not linked: done
			known++
			knownBytes += size
			continue
		}
		todo = append(todo, i)
	}
	progress := newProgressTracker(progressFn, files, total)
	defer progress.finish()
	progress.add(known, knownBytes)
	dirs := newDirHandles(s.live, nil)
	defer dirs.closeAll()
	return pool.Each(s.ctx, workers, s.readJobs(todo, dirs), func(ctx context.Context, rj readJob) error {
		defer rj.dir.release()
		return s.hashFile(ctx, &s.files[rj.file], rj.dir, progress)
	})
}

// readJob is a file to read (an index into s.files) with its directory in
// the live root, held for it.
type readJob struct {
	file int
	dir  *dirHandle
}

// readJobs yields the files of todo with their directories, opening each
// directory once per run of its files.
func (s *snapshotter) readJobs(todo []int, dirs *dirHandles) iter.Seq[readJob] {
	return func(yield func(readJob) bool) {
		cur := dirCursor{set: dirs}
		defer cur.close()
		for _, i := range todo {
			rj := readJob{file: i, dir: cur.handle(s.files[i].rel)}
			if !yield(rj) {
				rj.dir.release() // not taken
				return
			}
		}
	}
}

func (s *snapshotter) hashFile(ctx context.Context, j *fileJob, dir *dirHandle, progress *progressTracker) error {
	e := &s.entries[j.entry]
	if s.cache != nil && !j.copy && j.idOK && !j.looked {
		if content, chunks, ok := s.cache.Lookup(s.cacheKey(j.rel), cacheID(*j, j.id)); ok {
			// Size, mode and mtime come from the same lstat as the identity.
			e.Content, e.Chunks = content, chunks
			s.hits.Add(1)
			s.hitBytes.Add(e.Size)
			progress.add(1, e.Size)
			return nil
		}
	}
	r, err := s.readFile(ctx, *j, dir, progress)
	if err != nil {
		// Only a live file can go away (a link in dst stays), but a
		// link made without an lstat of it may be to something that
		// replaced the file after its lstat.
		if skip := skipReason(err); skip != "" && (!j.linked || skip == "changed type") {
			if j.linked {
				os.Remove(s.dstPath(j.rel))
			}
			s.drop(j, skip)
			progress.add(1, 0)
			return nil
		}
		return fmt.Errorf("hash %s: %w", j.rel, err)
	}
	if j.live {
		// Upload may read it again (a chunk gone missing) only while it
		// has the identity it had when read.
		j.id = r.id
	}
	e.Size, e.Content, e.Chunks = r.size, r.content, r.chunks
	e.Mode, e.MTime = unixMode(r.info.Mode()), r.info.ModTime()
	if s.opts.RecordOwners {
		s.owners[j.entry] = ownerOrZero(r.info)
	}
	if r.changed {
		s.warn("%s: changed while being read (%d attempts); the recorded content may mix versions of it: "+
			"quiesce writes to files modified in place", j.rel, maxReadAttempts)
	}
	if r.cacheable && s.cache != nil {
		s.cache.Store(s.cacheKey(j.rel), cacheID(*j, r.id), r.content, r.chunks)
	}
	return nil
}

// skipReason says why a file that cannot be opened is skipped rather than
// failing the snapshot: it vanished or changed type since it was listed.
func skipReason(err error) string {
	switch {
	case vanished(err):
		return "vanished"
	case errors.Is(err, errNotRegular), errors.Is(err, syscall.ELOOP):
		return "changed type"
	}
	return ""
}
