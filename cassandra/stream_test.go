package cassandra

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/crayfish-backup/crayfish/node/plugin"
)

// TestReshapeStage: a reshaped restore's stage downloads the backed-up
// node's cassandra/ and user tables without views, into its own
// subdirectory; its later actions download nothing; a node id that
// cannot name a directory is refused.
func TestReshapeStage(t *testing.T) {
	n := nodePlugin{}
	st, err := n.Stage(plugin.RestoreStep{Input: []byte(`{"action":"stage","source":"agent2","tables":["ks1.users"],"skip":["ks1.users_by_name"]}`)})
	if err != nil || !st.Needed || st.Sub != "sources/agent2" {
		t.Fatalf("stage: %+v %v", st, err)
	}
	if !slices.Equal(st.Include, []string{"cassandra/**", "data/ks1/users-*"}) || !slices.Contains(st.Exclude, "data/ks1/users_by_name-*") || !slices.Contains(st.Exclude, "data/system") {
		t.Errorf("stage filter: include %v exclude %v", st.Include, st.Exclude)
	}
	for _, in := range []string{`{"action":"stream","sources":["agent2"]}`, `{"action":"check","sources":["a","b"]}`} {
		if st, err := n.Stage(plugin.RestoreStep{Input: []byte(in)}); err != nil || st.Needed || st.Sub != "" {
			t.Errorf("%s: %+v %v, want nothing downloaded", in, st, err)
		}
	}
	for _, bad := range []string{"..", "a/b", ".crayfish"} {
		if _, err := n.Stage(plugin.RestoreStep{Input: []byte(`{"action":"stage","source":"` + bad + `"}`)}); !plugin.IsPermanent(err) {
			t.Errorf("source %q: %v, want a permanent refusal", bad, err)
		}
	}
}

// TestReshapeNeedsStagedSources: an action on a backed-up node whose
// files are not staged here (the staging dir was lost) fails, naming it,
// before it touches Cassandra.
func TestReshapeNeedsStagedSources(t *testing.T) {
	p, err := New(Config{Hosts: []string{"127.0.0.1"}, DataDirs: []string{"/x"}, Nodetool: []string{"nodetool"}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	err = p.Restore(context.Background(), t.TempDir(), RestoreAction{Action: ActionStream, Sources: []string{"agent2"}}, NodeMeta{})
	if !errors.Is(err, ErrBadRestore) || !strings.Contains(err.Error(), "agent2") {
		t.Fatalf("stream without staged files: %v", err)
	}
}

// TestLoaderTLSAndPassword: with CQL over TLS the loader needs its own
// TLS options (refused at the stage step, before anything changes); the
// password given to the loader never shows in its error.
func TestLoaderTLSAndPassword(t *testing.T) {
	p, err := New(Config{Hosts: []string{"127.0.0.1", "127.0.0.2"}, Port: 9142, DataDirs: []string{"/x"}, Nodetool: []string{"nodetool"},
		TLSCAFile: "/ca.pem", Username: "u", Password: "s3cret"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.loaderReady(); !errors.Is(err, ErrBadRestore) || !strings.Contains(err.Error(), "cassandra_sstableloader") {
		t.Errorf("TLS without loader options: %v", err)
	}
	p.cfg.SSTableLoader = []string{"sstableloader", "-f", "/etc/cassandra/cassandra.yaml"}
	if err := p.loaderReady(); err != nil {
		t.Errorf("TLS with -f: %v", err)
	}
	// A loader that prints its arguments and fails.
	script := filepath.Join(t.TempDir(), "loader")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$@\"\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	p.cfg.SSTableLoader = []string{script, "-cph", "2"}
	out, err := p.sstableloader(context.Background(), "/staged/stream/b1/ks1/users")
	if !strings.Contains(out, "-cph 2 --no-progress -d 127.0.0.1,127.0.0.2 -p 9142 -u u -pw") || err == nil {
		t.Fatalf("loader arguments: %q %v", out, err)
	}
	if strings.Contains(err.Error(), "s3cret") || !errors.Is(err, ErrCommand) {
		t.Errorf("the loader's error shows the password or lacks its mark: %v", err)
	}
}

func TestJavaReason(t *testing.T) {
	out := `WARN  foo
Exception in thread "main" org.apache.cassandra.tools.BulkLoadException: java.lang.RuntimeException: Failed to list files
	at org.apache.cassandra.tools.BulkLoader.load(BulkLoader.java:99)
	at org.apache.cassandra.tools.BulkLoader.main(BulkLoader.java:51)
Caused by: java.io.IOException: no space left
	at x.y(Z.java:1)
	... 3 more
`
	want := `WARN  foo | Exception in thread "main" org.apache.cassandra.tools.BulkLoadException: java.lang.RuntimeException: Failed to list files | Caused by: java.io.IOException: no space left`
	if got := javaReason(out, 6); got != want {
		t.Fatalf("javaReason:\n%s\nwant\n%s", got, want)
	}
	if got := javaReason(out, 1); got != "Caused by: java.io.IOException: no space left" {
		t.Fatalf("javaReason, last line: %s", got)
	}
}

func TestSAIStatements(t *testing.T) {
	for in, want := range map[string]string{
		"CREATE CUSTOM INDEX profiles_note ON ks3.profiles (note) USING 'sai'":        "CREATE CUSTOM INDEX IF NOT EXISTS profiles_note ON ks3.profiles (note) USING 'sai'",
		"CREATE INDEX i ON k.t (v) USING 'sai'":                                       "CREATE INDEX IF NOT EXISTS i ON k.t (v) USING 'sai'",
		"CREATE CUSTOM INDEX IF NOT EXISTS i ON k.t (v) USING 'StorageAttachedIndex'": "CREATE CUSTOM INDEX IF NOT EXISTS i ON k.t (v) USING 'StorageAttachedIndex'",
	} {
		if got := ifNotExistsIndex(in); got != want {
			t.Errorf("ifNotExistsIndex(%q) = %q", in, got)
		}
	}
	if !isSAI("org.apache.cassandra.index.sai.StorageAttachedIndex") || !isSAI("sai") || isSAI("") || isSAI("org.apache.cassandra.index.sasi.SASIIndex") {
		t.Error("isSAI")
	}
}
