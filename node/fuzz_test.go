package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/crayfish-backup/crayfish/cassandra"
	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/m3db"
	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/node/coord"
	"github.com/crayfish-backup/crayfish/node/plugin/files"
	"github.com/crayfish-backup/crayfish/node/schedule"
	"github.com/crayfish-backup/crayfish/node/tree"
	"github.com/crayfish-backup/crayfish/node/wire"
)

// fuzzBodies are the request types decodeBody reads, public and internal,
// in the order FuzzRequestBody's kind picks them.
func fuzzBodies() []any {
	return []any{
		&api.StartBackupRequest{}, &api.StartRestoreRequest{}, &api.StartDeleteRequest{},
		&api.StartGCRequest{}, &api.StartCleanupRequest{}, &api.StartVerifyRequest{},
		&api.StartRepairRequest{}, &api.StartDrillRequest{}, &api.ScheduleRequest{},
		&api.RemoveNodeRequest{}, &FenceRequest{}, &wire.StepRequest{}, &wire.PreviewRequest{},
	}
}

func fuzzDecode(v any, body []byte) error {
	r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	r.Body = http.MaxBytesReader(nil, r.Body, maxBodyBytes)
	return decodeBody(r, v)
}

// FuzzRequestBody feeds arbitrary bodies to decodeBody, as every API
// handler calls it, for each request type (kind picks it), then to the
// checks the handlers' operations run before anything is proposed: the
// callback URL, a schedule definition, a retention policy, a restore's
// selection patterns. Nothing may panic. A body is refused with an error
// marked wire.ErrBadRequest (or ErrBodyTooLarge); one accepted encodes
// and decodes again to the same value. A schedule CheckSchedule accepts is
// in canonical form (checking it again changes nothing), the FSM accepts
// it, and its next slot is after now; a callback URL CheckNotifyURL
// accepts is an absolute http(s) URL.
func FuzzRequestBody(f *testing.F) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	seeds := []any{
		api.StartBackupRequest{ID: "b1", CallbackURL: "https://hooks.example/x"},
		api.StartRestoreRequest{ID: "r1", BackupID: "20261205T120000.000000Z-abcdef", Target: "/tmp/t",
			RestoreOptions: api.RestoreOptions{Node: "n1", Mapping: map[string]string{"n1": "n2"}, Select: []string{"etc/**", "ks.t"}, Delete: true, ToTime: &now}},
		api.StartDeleteRequest{ID: "d1", BackupIDs: []string{"a", "b"}},
		api.StartGCRequest{},
		api.StartCleanupRequest{CleanupOptions: api.CleanupOptions{Policy: nil}},
		api.StartVerifyRequest{VerifyOptions: api.VerifyOptions{ReadData: true, ReadDataSubset: 0.25}},
		api.StartRepairRequest{RepairOptions: api.RepairOptions{Kind: "packs", DryRun: true}},
		api.StartDrillRequest{DrillOptions: api.DrillOptions{Nodes: []string{"n1"}}},
		api.ScheduleRequest{ScheduleSpec: fsm.ScheduleSpec{Name: "nightly", Cron: "30 2 * * *", TimeZone: "Europe/Berlin",
			Kind: fsm.KindCleanup, Options: json.RawMessage(`{"policy":{"keep_last":7}}`), Missed: fsm.MissedRunOnce,
			Jitter: fsm.Duration(time.Minute), MaxWait: fsm.Duration(time.Hour)}},
		api.RemoveNodeRequest{Node: "n3"},
		FenceRequest{Epoch: 42},
		wire.StepRequest{Ref: wire.StepRef{OpID: "op", Epoch: 3, Step: 1}, Name: "upload"},
		wire.PreviewRequest{},
	}
	for i, s := range seeds {
		b, err := json.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(byte(i), b)
	}
	f.Add(byte(8), []byte(`{"name":"e","cron":"@every 1s","kind":"verify","options":{"read_data_subset":2}}`))
	f.Add(byte(8), []byte(`{"name":"e","cron":"0 0 30 2 *","time_zone":"../../etc/passwd"}`))
	f.Add(byte(1), []byte(`{"select":[],"tables":[""]}`))
	f.Add(byte(0), []byte(`{} {}`))
	f.Add(byte(0), []byte(`{"unknown":1}`))
	f.Fuzz(func(t *testing.T, kind byte, body []byte) {
		bodies := fuzzBodies()
		v := bodies[int(kind)%len(bodies)]
		if err := fuzzDecode(v, body); err != nil {
			if !errors.Is(err, wire.ErrBadRequest) && !errors.Is(err, wire.ErrBodyTooLarge) {
				t.Fatalf("decodeBody error is not a bad request: %v", err)
			}
			return
		}
		again, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("an accepted body does not encode: %v", err)
		}
		v2 := reflect.New(reflect.TypeOf(v).Elem()).Interface()
		if err := fuzzDecode(v2, again); err != nil {
			t.Fatalf("an accepted body re-encoded is refused: %v\n%s", err, again)
		}
		if again2, _ := json.Marshal(v2); !bytes.Equal(again, again2) {
			t.Fatalf("body does not round-trip:\n%s\n%s", again, again2)
		}

		var callback string
		switch req := v.(type) {
		case *api.StartBackupRequest:
			callback = req.CallbackURL
		case *api.StartRestoreRequest:
			callback = req.CallbackURL
			if sel := req.Selection(); len(sel) > 0 {
				_ = tree.ValidatePatterns(sel)
			}
		case *api.StartCleanupRequest:
			callback = req.CallbackURL
			if req.Policy != nil {
				_ = req.Policy.Validate()
			}
		case *api.StartVerifyRequest:
			callback = req.CallbackURL
		case *api.StartDrillRequest:
			callback = req.CallbackURL
		case *api.ScheduleRequest:
			checkFuzzSchedule(t, req.ScheduleSpec, now)
		}
		if callback != "" {
			if err := coord.CheckNotifyURL(callback); err == nil {
				u, err := url.Parse(callback)
				if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
					t.Fatalf("CheckNotifyURL accepted %q", callback)
				}
			}
		}
	})
}

// checkFuzzSchedule: what CheckSchedule accepts is canonical, the FSM
// takes it, and its slots move forward.
func checkFuzzSchedule(t *testing.T, sp fsm.ScheduleSpec, now time.Time) {
	t.Helper()
	if err := coord.CheckSchedule(&sp); err != nil {
		if !errors.Is(err, wire.ErrBadRequest) {
			t.Fatalf("CheckSchedule error is not a bad request: %v", err)
		}
		return
	}
	again := sp
	again.Options = append(json.RawMessage(nil), sp.Options...)
	if err := coord.CheckSchedule(&again); err != nil || !again.Equal(sp) {
		t.Fatalf("CheckSchedule is not idempotent: %v\n%+v\n%+v", err, sp, again)
	}
	st := fsm.NewState()
	if resp := st.Apply(1, fsm.Command{Type: fsm.CmdScheduleSet, Time: now, Create: true, Schedule: &fsm.Schedule{ScheduleSpec: sp}}); resp.Err != nil {
		t.Fatalf("the FSM refuses a schedule the API accepts: %v", resp.Err)
	}
	slots, err := schedule.Parse(sp.Cron, sp.TimeZone)
	if err != nil {
		t.Fatalf("CheckSchedule accepted a cron schedule.Parse refuses: %v", err)
	}
	if next := slots.Next(now); !next.IsZero() && !next.After(now) {
		t.Fatalf("next slot %v is not after %v", next, now)
	}
}

// FuzzConfigFile feeds arbitrary YAML to LoadConfigFile (the agent's
// configuration file, with every plugin's keys) and what loads to Finish.
// Nothing may panic; a file that loads and finishes gives a configuration
// Finish accepts again unchanged, whose schedules CheckSchedule accepts.
func FuzzConfigFile(f *testing.F) {
	f.Add([]byte("node_id: n7\ndata_dir: /var/lib/crayfish\nroot: /srv/data\nupload_concurrency: 3\nstep_retry_delay: 250ms\n"))
	f.Add([]byte("node_id: n1\nplugin: cassandra\ncassandra_data_dirs: [/var/lib/cassandra/data]\nhttp_addr: 0.0.0.0:7300\napi_token_file: /etc/t\n"))
	f.Add([]byte("node_id: n1\nplugin: m3db\nm3db_etcd_endpoints: [127.0.0.1:2379]\nroot: /x\n"))
	f.Add([]byte("node_id: n1\nroot: /srv\nschedules:\n  - name: nightly\n    cron: \"30 2 * * *\"\n    time_zone: UTC\n    kind: cleanup\n    options: {policy: {keep_last: 3}}\n    missed: run_once\n    jitter: 5m\n"))
	f.Add([]byte("node_id: n1\nroot: /srv\nnotify_urls: [\"https://h/x\"]\nretention_keep_last: 5\nlog_level: debug\nnice: 19\n"))
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Add([]byte("- 1\n- 2\n"))
	f.Add([]byte(""))
	fuzzConfigPath := filepath.Join(f.TempDir(), "crayfish.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<14 {
			return
		}
		if err := os.WriteFile(fuzzConfigPath, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c := DefaultConfig(files.Driver{}, cassandra.Driver{}, m3db.Driver{})
		if err := LoadConfigFile(fuzzConfigPath, &c); err != nil {
			return
		}
		if err := c.Finish(); err != nil {
			return
		}
		for _, sp := range c.scheduleSpecs() {
			again := sp
			if err := coord.CheckSchedule(&again); err != nil {
				t.Fatalf("a configured schedule is refused: %v", err)
			}
		}
		if len(c.scheduleSpecs()) != len(c.Schedules) {
			t.Fatalf("%d schedules configured, %d usable", len(c.Schedules), len(c.scheduleSpecs()))
		}
		before := c
		if err := c.Finish(); err != nil {
			t.Fatalf("a finished configuration does not finish again: %v", err)
		}
		if !reflect.DeepEqual(before, c) {
			t.Fatalf("Finish changed a finished configuration:\n%+v\n%+v", before, c)
		}
	})
}
