//go:build linux

package hashcache

import (
	"io/fs"
	"syscall"
)

func statID(fi fs.FileInfo, id FileID) (FileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return id, false
	}
	id.Dev = uint64(st.Dev)
	id.Ino = uint64(st.Ino)
	id.MTime = int64(st.Mtim.Sec)*1e9 + int64(st.Mtim.Nsec)
	id.CTime = int64(st.Ctim.Sec)*1e9 + int64(st.Ctim.Nsec)
	return id, true
}
