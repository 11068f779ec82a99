package tree

import (
	"io/fs"
	"os"
	"syscall"

	"github.com/crayfish-backup/crayfish/storage"
)

// Owner is the numeric owner of an entry. The manifest (storage.FileEntry)
// does not carry owners yet: Snapshot reports them beside the entries
// (SnapshotResult.Owners) and Restore applies them through
// RestoreOptions.Owner, so the caller decides where they are kept.
type Owner struct {
	UID, GID uint32
}

// ownerOf returns the owner lstat reported in fi.
func ownerOf(fi fs.FileInfo) (Owner, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return Owner{}, false
	}
	return Owner{UID: st.Uid, GID: st.Gid}, true
}

// OwnerFunc tells Restore which owner to give an entry; ok false leaves the
// entry owned by whoever restores it.
type OwnerFunc func(e *storage.FileEntry) (o Owner, ok bool)

// ownedByUs reports whether fi belongs to the effective user running us.
func ownedByUs(fi fs.FileInfo) bool {
	o, ok := ownerOf(fi)
	return ok && int64(o.UID) == int64(os.Geteuid())
}
