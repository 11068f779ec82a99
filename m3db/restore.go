package m3db

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/crayfish-backup/crayfish/internal/wait"
	"github.com/crayfish-backup/crayfish/m3db/fileset"
	"github.com/crayfish-backup/crayfish/m3db/placement"
	"github.com/crayfish-backup/crayfish/node/plugin"
)

// Stage says what a restore step downloads: the node's files straight
// into the data dir (the selected namespaces' part of it, or all of it,
// which then mirrors the backup), or for the etcd step the backed-up etcd
// keys into the staging dir.
func (p *nodePlugin) Stage(step plugin.RestoreStep) (plugin.Stage, error) {
	a, err := parseAction(step.Input)
	if err != nil {
		return plugin.Stage{}, err
	}
	switch a.Do {
	case actFiles:
		st := plugin.Stage{Needed: true, From: filesDir, Into: p.s.DataDir}
		if a.Namespaces == nil {
			// Only M3's own directories are made equal to the backup:
			// anything else an operator keeps in the data dir stays.
			st.Include = []string{"data", "index", "snapshots", "commitlogs"}
		}
		for _, ns := range a.Namespaces {
			if strings.ContainsAny(ns, `*?[]\/`) || ns == "" || ns == "." || ns == ".." {
				return plugin.Stage{}, plugin.Permanent(fmt.Errorf("%w: namespace name %q", plugin.ErrInvalidMeta, ns))
			}
			st.Include = append(st.Include, "data/"+ns, "index/data/"+ns, "snapshots/"+ns, "index/snapshots/"+ns)
		}
		return st, nil
	case actEtcd:
		return plugin.Stage{Needed: true, Include: []string{etcdFile}}, nil
	}
	return plugin.Stage{}, nil
}

// Restore runs one action of an M3DB restore (see PlanRestore). Each is
// safe to repeat.
func (p *nodePlugin) Restore(ctx context.Context, step plugin.RestoreStep, dir string) (json.RawMessage, error) {
	a, err := parseAction(step.Input)
	if err != nil {
		return nil, err
	}
	switch a.Do {
	case actStop:
		if err := p.stop(ctx); err != nil {
			return nil, err
		}
		id := p.identity(ctx)
		return json.Marshal(stopResult{Identity: &id})
	case actFiles:
		return nil, nil // the node made the data dir equal to the backup
	case actEtcd:
		return nil, p.restoreEtcd(ctx, a, step, dir)
	case actStart:
		return nil, p.start(ctx)
	case actCheck:
		res, err := p.check(ctx, a, step)
		if err != nil {
			return nil, err
		}
		return json.Marshal(res)
	}
	return nil, plugin.Permanent(fmt.Errorf("%w: action %q", plugin.ErrBadRequest, a.Do))
}

// stopResult is what the stop step reports: the identity this node's
// instance takes in the restored placement.
type stopResult struct {
	Identity *identity `json:"identity,omitempty"`
}

// identity is a node's placement identity as configured (or read from
// the current placement); the etcd step completes it.
type identity struct {
	ID             string `json:"id"`
	Endpoint       string `json:"endpoint,omitempty"`
	Hostname       string `json:"hostname,omitempty"`
	Port           uint32 `json:"port,omitempty"`
	DebugPort      uint32 `json:"debug_port,omitempty"`
	IsolationGroup string `json:"isolation_group,omitempty"`
	Zone           string `json:"zone,omitempty"`
}

// stop runs the stop command and waits until the node's API no longer
// answers: files are never replaced under a running m3dbnode.
func (p *nodePlugin) stop(ctx context.Context) error {
	if out, err := p.shell(ctx, p.s.StopCommand); err != nil {
		return fmt.Errorf("m3db_stop_command: %w: %s", err, out)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if !p.answers(ctx) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("m3dbnode still answers at %s a minute after m3db_stop_command succeeded", p.s.HealthURL)
		}
		if err := wait.Sleep(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
}

// answers reports whether anything answers at the health URL.
func (p *nodePlugin) answers(ctx context.Context) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.s.HealthURL, nil)
	if err != nil {
		return false
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

// start runs the start command and waits until the node reports
// bootstrapped, for at most m3db_start_timeout.
func (p *nodePlugin) start(ctx context.Context) error {
	if out, err := p.shell(ctx, p.s.StartCommand); err != nil {
		return fmt.Errorf("m3db_start_command: %w: %s", err, out)
	}
	deadline := time.Now().Add(p.s.StartTimeout)
	for {
		err := p.checkHealth(ctx)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("m3dbnode not bootstrapped %s after starting it: %w", p.s.StartTimeout, err)
		}
		if err := wait.Sleep(ctx, time.Second); err != nil {
			return err
		}
	}
}

// shell runs a configured command line.
func (p *nodePlugin) shell(ctx context.Context, command string) (string, error) {
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second // a child holding the pipes open cannot hang us
	err := cmd.Run()
	text := strings.TrimSpace(out.String())
	if len(text) > 2000 {
		text = "…" + text[len(text)-2000:]
	}
	return text, err
}

// identity is this node's placement identity: what is configured, the
// rest from the current placement in etcd when it has this instance.
func (p *nodePlugin) identity(ctx context.Context) identity {
	s := p.s
	id := identity{ID: s.InstanceID, Endpoint: s.Endpoint, Hostname: s.Hostname, Port: uint32(s.Port),
		DebugPort: uint32(s.DebugPort), IsolationGroup: s.IsolationGroup, Zone: s.Zone}
	if id.complete() {
		return id
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if cli, err := s.etcdClient(); err == nil {
		defer cli.Close()
		if cur, _, err := s.currentPlacement(ctx, cli); err == nil && cur != nil {
			if in := cur.GetInstances()[s.InstanceID]; in != nil {
				id.fill(instanceIdentity(in))
			}
		}
	}
	return id
}

func (id identity) complete() bool {
	return id.Endpoint != "" && id.IsolationGroup != "" && id.Zone != ""
}

// fill sets id's empty fields from o.
func (id *identity) fill(o placement.Identity) {
	if id.Endpoint == "" {
		id.Endpoint = o.Endpoint
	}
	if id.Hostname == "" {
		id.Hostname = o.Hostname
	}
	if id.Port == 0 {
		id.Port = o.Port
	}
	if id.DebugPort == 0 {
		id.DebugPort = o.DebugPort
	}
	if id.IsolationGroup == "" {
		id.IsolationGroup = o.IsolationGroup
	}
	if id.Zone == "" {
		id.Zone = o.Zone
	}
}

// placementIdentity completes id: hostname and port from the endpoint
// when not given.
func (id identity) placementIdentity() placement.Identity {
	out := placement.Identity{ID: id.ID, Endpoint: id.Endpoint, Hostname: id.Hostname, Port: id.Port,
		DebugPort: id.DebugPort, IsolationGroup: id.IsolationGroup, Zone: id.Zone}
	if host, port, err := net.SplitHostPort(id.Endpoint); err == nil {
		if out.Hostname == "" {
			out.Hostname = host
		}
		if n, err := strconv.ParseUint(port, 10, 16); err == nil && out.Port == 0 {
			out.Port = uint32(n)
		}
	}
	return out
}

// checkResult is what the check step read back, by namespace.
type checkResult struct {
	Namespaces map[string]nsCheck `json:"namespaces"`
}

type nsCheck struct {
	Series     int `json:"series"`
	Datapoints int `json:"datapoints"`
}

// maxSample bounds the series a check reads back per namespace.
const maxSample = 10

// check reads back a sample of series of every restored namespace that
// had data on the backed-up node: up to maxSample series ids from the
// restored filesets' index files, fetched through the cluster API, must
// return datapoints. A node just bootstrapped may take a moment to serve,
// so a failed read is tried again for up to checkWait.
func (p *nodePlugin) check(ctx context.Context, a Action, step plugin.RestoreStep) (checkResult, error) {
	res := checkResult{Namespaces: map[string]nsCheck{}}
	var meta NodeMeta
	if err := json.Unmarshal(step.Source, &meta); err != nil {
		return res, plugin.Permanent(fmt.Errorf("%w: %v", plugin.ErrInvalidMeta, err))
	}
	for _, ns := range meta.Namespaces {
		if meta.DataBytes[ns.Name] == 0 || (a.Namespaces != nil && !slices.Contains(a.Namespaces, ns.Name)) {
			continue
		}
		ids, err := p.sampleSeries(ns.Name)
		if err != nil {
			return res, err
		}
		if len(ids) == 0 {
			return res, fmt.Errorf("read-back of namespace %s: its restored filesets list no series, though the backup holds %d bytes of its data", ns.Name, meta.DataBytes[ns.Name])
		}
		deadline := time.Now().Add(checkWait)
		for {
			c, err := p.readBack(ctx, ns, ids)
			if err == nil && c.Datapoints > 0 {
				res.Namespaces[ns.Name] = c
				break
			}
			if time.Now().After(deadline) {
				if err == nil {
					err = fmt.Errorf("read-back of namespace %s: no datapoint of %d restored series (%s, ...) %s after the restore",
						ns.Name, len(ids), ids[0], checkWait)
				}
				return res, err
			}
			if err := wait.Sleep(ctx, 2*time.Second); err != nil {
				return res, err
			}
		}
	}
	return res, nil
}

// checkWait bounds how long a check tries again.
const checkWait = 2 * time.Minute

// sampleSeries reads up to maxSample distinct series ids of ns from the
// index files of the data dir's data and snapshot filesets.
func (p *nodePlugin) sampleSeries(ns string) ([]string, error) {
	fsys := os.DirFS(p.s.DataDir)
	var files []string
	for _, top := range []string{"data", "snapshots"} {
		m, err := fs.Glob(fsys, top+"/"+ns+"/*/fileset-*-index.db")
		if err != nil {
			return nil, err
		}
		files = append(files, m...)
	}
	seen := map[string]bool{}
	var ids []string
	for _, f := range files {
		got, err := fileset.ReadSeriesIDs(fsys, f, maxSample)
		if err != nil {
			return nil, err
		}
		for _, id := range got {
			if !seen[id] && len(ids) < maxSample {
				seen[id] = true
				ids = append(ids, id)
			}
		}
		if len(ids) == maxSample {
			break
		}
	}
	return ids, nil
}

// readBack counts the datapoints of ids in ns's retention.
func (p *nodePlugin) readBack(ctx context.Context, ns Namespace, ids []string) (nsCheck, error) {
	now := time.Now()
	start, end := now.Add(-ns.Retention-2*ns.BlockSize).Unix(), now.Add(time.Hour).Unix()
	c := nsCheck{Series: len(ids)}
	for _, id := range ids {
		n, err := p.fetch(ctx, ns.Name, id, start, end)
		if err != nil {
			return c, err
		}
		c.Datapoints += n
	}
	return c, nil
}

// fetch counts id's datapoints through the cluster API (every replica).
func (p *nodePlugin) fetch(ctx context.Context, ns, id string, start, end int64) (int, error) {
	body := map[string]any{"nameSpace": ns, "id": id, "rangeStart": start, "rangeEnd": end,
		"rangeType": "UNIX_SECONDS", "resultTimeType": "UNIX_SECONDS"}
	var out struct {
		Datapoints []json.RawMessage `json:"datapoints"`
	}
	if err := p.post(ctx, strings.TrimRight(p.s.ClusterURL, "/")+"/fetch", body, &out); err != nil {
		return 0, err
	}
	return len(out.Datapoints), nil
}

func (p *nodePlugin) post(ctx context.Context, u string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d: %s", u, resp.StatusCode, bytes.TrimSpace(data[:min(len(data), 500)]))
	}
	return json.Unmarshal(data, out)
}

// readCapture reads the backed-up etcd keys a step staged.
func readCapture(dir string) (EtcdCapture, error) {
	var c EtcdCapture
	b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(etcdFile)))
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, plugin.Permanent(fmt.Errorf("%w: %s: %v", plugin.ErrInvalidMeta, etcdFile, err))
	}
	return c, nil
}
