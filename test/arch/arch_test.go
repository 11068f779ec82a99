package arch

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// TestImportRules checks the whole module's imports against the rules.
func TestImportRules(t *testing.T) {
	pkgs := load(t)
	if len(pkgs) < 20 {
		t.Fatalf("go list found %d packages: the module did not load", len(pkgs))
	}
	for _, must := range []string{"node", "fsm", "cassandra", "node/plugin", "node/plugin/files", "node/coord", "node/worker", "node/wire"} {
		if !hasPackage(pkgs, must) {
			t.Fatalf("package %s not found: the rules would check nothing", must)
		}
	}
	for _, v := range Check(pkgs) {
		t.Error(v)
	}
}

// TestCheckCatchesViolations: each rule, broken on purpose, is reported
// with the offending import named (a checker that cannot fail proves
// nothing).
func TestCheckCatchesViolations(t *testing.T) {
	cases := []struct {
		pkg  Package
		want string
	}{
		{Package{Path: "node", Imports: []string{"cassandra"}, Deps: []string{"cassandra"}}, "node imports cassandra"},
		{Package{Path: "node/coord", Imports: []string{"node/plugin/files"}, Deps: []string{"node/plugin/files"}}, "node/coord imports node/plugin/files"},
		{Package{Path: "storage", Imports: []string{"node"}, Deps: []string{"node", "m3db"}}, "storage imports m3db (via node)"},
		{Package{Path: "fsm", Imports: []string{"node/api"}, Deps: []string{"node/api"}}, "fsm imports node/api"},
		{Package{Path: "cassandra", Imports: []string{"node"}, Deps: []string{"node"}}, "cassandra imports node"},
		{Package{Path: "node/plugin/files", Imports: []string{"node/tree"}, Deps: []string{"node/tree", "storage"}}, "node/plugin/files imports node/tree"},
		{Package{Path: "node/plugin", Imports: []string{"storage"}, Deps: []string{"storage"}}, "node/plugin imports storage"},
		{Package{Path: "node/coord", Imports: []string{"node/worker"}, Deps: []string{"node/worker"}}, "node/coord imports node/worker"},
		{Package{Path: "node/coord", Imports: []string{"node/tree"}, Deps: []string{"node/tree"}}, "node/coord imports node/tree"},
		{Package{Path: "node/worker", Imports: []string{"node/coord"}, Deps: []string{"node/coord"}}, "node/worker imports node/coord"},
		{Package{Path: "node/wire", Imports: []string{"node/worker"}, Deps: []string{"node/worker"}}, "node/wire imports node/worker"},
		{Package{Path: "internal/wait", Imports: []string{"fsm"}, Deps: []string{"fsm"}}, "internal/wait imports fsm"},
	}
	// node, itself reaching m3db, is what storage imports m3db through.
	nodeReachingM3 := Package{Path: "node", Imports: []string{"m3db"}, Deps: []string{"m3db"}}
	for _, c := range cases {
		got := strings.Join(Check([]Package{c.pkg, nodeReachingM3}), "\n")
		if !strings.Contains(got, c.want) {
			t.Errorf("violation %q not reported; got:\n%s", c.want, got)
		}
	}
	fine := []Package{
		{Path: "cmd/crayfish", Imports: []string{"cassandra", "node"}, Deps: []string{"cassandra", "node", "node/plugin"}},
		{Path: "cassandra", Imports: []string{"node/plugin"}, Deps: []string{"node/plugin", "/github.com/gocql/gocql"}},
		{Path: "node/plugin/files", Imports: []string{"node/plugin", "node/tree/pattern"}, Deps: []string{"node/plugin", "node/tree/pattern"}},
		{Path: "node/plugin/plugintest", Imports: []string{"node/plugin"}, Deps: []string{"node/plugin"}},
		{Path: "node", Imports: []string{"node/plugin", "fsm"}, Deps: []string{"node/plugin", "fsm", "storage"}},
		{Path: "node/coord", Imports: []string{"node/wire", "internal/wait"}, Deps: []string{"node/wire", "internal/wait", "node/plugin"}},
		{Path: "node/worker", Imports: []string{"node/wire", "node/tree"}, Deps: []string{"node/wire", "node/tree", "storage"}},
	}
	if got := Check(fine); len(got) > 0 {
		t.Errorf("allowed imports reported: %v", got)
	}
}

func hasPackage(pkgs []Package, path string) bool {
	for _, p := range pkgs {
		if p.Path == path {
			return true
		}
	}
	return false
}

// load lists the module's packages (not their tests: test-only imports
// such as plugintest are free) with module-relative paths.
func load(t *testing.T) []Package {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}}|{{join .Imports \",\"}}|{{join .Deps \",\"}}", Module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	rel := func(list string) []string {
		var res []string
		for _, p := range strings.Split(list, ",") {
			switch {
			case p == "":
			case p == Module:
				res = append(res, ".")
			case strings.HasPrefix(p, Module+"/"):
				res = append(res, strings.TrimPrefix(p, Module+"/"))
			default:
				res = append(res, "/"+p) // not the module's: marked so rules skip it
			}
		}
		return res
	}
	var pkgs []Package
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), "|", 3)
		if len(parts) != 3 {
			continue
		}
		pkgs = append(pkgs, Package{Path: strings.TrimPrefix(parts[0], Module+"/"), Imports: rel(parts[1]), Deps: rel(parts[2])})
	}
	return pkgs
}
