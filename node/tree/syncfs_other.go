//go:build !linux

package tree

import "errors"

// batchedSync is false where there is no syncfs(2): Restore fsyncs every
// file before renaming it into place, and then the directories.
const batchedSync = false

func syncFS(string) error { return errors.New("syncfs: not supported on this system") }
