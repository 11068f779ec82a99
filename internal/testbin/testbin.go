package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

const (
	// Main is the package of the crayfish binary.
	Main = "github.com/crayfish-backup/crayfish/cmd/crayfish"
	// CoverPkg selects what a coverage build counts: every package of the
	// module that the binary links.
	CoverPkg = "github.com/crayfish-backup/crayfish/..."
	// EnvCoverDir names the directory that coverage builds' processes
	// write their counters to; unset, builds are plain.
	EnvCoverDir = "CRAYFISH_COVERDIR"
)

// Build builds crayfish, with the build tags (comma-separated, may be
// empty), into dir and returns the binary's path. With CRAYFISH_COVERDIR
// set it builds with coverage and points GOCOVERDIR at that directory
// for the processes this one starts from now on.
func Build(dir, tags string) (string, error) {
	bin := filepath.Join(dir, "crayfish")
	coverDir := os.Getenv(EnvCoverDir)
	if coverDir != "" {
		abs, err := filepath.Abs(coverDir)
		if err != nil {
			return "", err
		}
		coverDir = abs
		if err := os.MkdirAll(coverDir, 0o755); err != nil {
			return "", err
		}
	}
	cmd := exec.Command("go", buildArgs(bin, tags, coverDir != "")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	if coverDir != "" {
		// A coverage build run without GOCOVERDIR warns on stderr (which
		// CLI tests read) and keeps nothing; children inherit this.
		if err := os.Setenv("GOCOVERDIR", coverDir); err != nil {
			return "", err
		}
	}
	return bin, nil
}

// buildArgs are the arguments of `go` that build Main into bin.
func buildArgs(bin, tags string, cover bool) []string {
	args := []string{"build", "-o", bin}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	if cover {
		// atomic, as `go test -race -cover` counts: covdata will not merge
		// counters of different modes.
		args = append(args, "-cover", "-covermode=atomic", "-coverpkg="+CoverPkg)
	}
	return append(args, Main)
}
