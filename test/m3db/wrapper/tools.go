//go:build tools

// Package wrapper only pins the programs that scripts/m3db.sh builds; it is
// never compiled (build tag "tools").
package wrapper

import (
	_ "github.com/m3db/m3/src/cmd/services/m3dbnode/main"
)
