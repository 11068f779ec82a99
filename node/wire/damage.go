package wire

import (
	"errors"

	"github.com/crayfish-backup/crayfish/storage"
)

// Damage kinds of a chunk.
const (
	DamageMissing = "missing" // the repository has no readable copy (storage.ErrNotFound)
	DamageCorrupt = "corrupt" // its bytes fail authentication (storage.ErrCorrupt)
)

// DamagedFile is a file a restore left out because chunks of it are
// damaged: it is not under its real name in the target, and whatever was
// at its path before is as it was.
type DamagedFile struct {
	Path string `json:"path"`
	// Chunks are the file's damaged chunks, the first maxDamagedFileChunks
	// of ChunksTotal.
	Chunks      []DamagedChunk `json:"chunks"`
	ChunksTotal int            `json:"chunks_total"`
}

// DamagedChunk is one damaged chunk of a file and the pack the index
// places it in ("" when the index has no entry for it).
type DamagedChunk struct {
	Index   int              `json:"index"`
	ID      storage.ObjectID `json:"id"`
	Pack    string           `json:"pack,omitempty"`
	Problem string           `json:"problem"` // DamageMissing or DamageCorrupt
}

// damagedStep wraps a step error whose result reports damage; errors.Is
// matches it with ErrDamaged without changing its message.
type damagedStep struct{ err error }

func (e damagedStep) Error() string { return e.err.Error() }

func (e damagedStep) Unwrap() []error {
	return []error{e.err, ErrDamaged}
}

func MarkDamaged(err error) error {
	if errors.Is(err, ErrDamaged) {
		return err
	}
	return damagedStep{err}
}
