//go:build tools

// Package wrapper only pins SeaweedFS's weed command for
// scripts/seaweedfs.sh; it holds no code.
package wrapper

import _ "github.com/seaweedfs/seaweedfs/weed"
