//go:build !linux

package tree

import (
	"io/fs"
	"os"
	"path/filepath"
)

// openReadAt opens base in the open directory d for reading.
func openReadAt(d *os.File, base, name string) (readHandle, fs.FileInfo, error) {
	return openRegularAt(d, base, name)
}

// lstatAt is lstat(2) of base in the open directory d.
func lstatAt(d *os.File, base, name string) (fs.FileInfo, error) {
	return os.Lstat(filepath.Join(d.Name(), base))
}
