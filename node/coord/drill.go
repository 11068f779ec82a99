package coord

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

// phaseDrill groups a drill's node steps: they run side by side.
const phaseDrill = 5

// DrillInput is a drill step's input: the backed-up node whose files the
// step's node restores into its scratch space.
type DrillInput struct {
	SourceNode string `json:"source_node"`
}

// StartDrill starts a restore drill: each node of the backup (the latest
// by default) is restored on a member into scratch space under that
// member's data dir, every byte checked against the manifest, the
// plugin's own check run, and the scratch space removed. Nothing the
// database uses is touched.
func (o *Operations) StartDrill(ctx context.Context, id string, opts api.DrillOptions) (*fsm.Operation, bool, error) {
	if op, err := o.existing(id, fsm.KindDrill, func(p fsm.Params) bool {
		// A retry may leave backup_id empty: the original resolved it.
		var was api.DrillOptions
		_ = json.Unmarshal(p.Options, &was)
		again := opts
		if again.BackupID == "" {
			again.BackupID = was.BackupID
		}
		b, _ := json.Marshal(again)
		return bytes.Equal(b, p.Options)
	}); op != nil || err != nil {
		return op, true, err
	}
	m, err := o.latestOr(ctx, opts.BackupID)
	if err != nil {
		return nil, false, err
	}
	members, err := o.memberList()
	if err != nil {
		return nil, false, err
	}
	steps, err := drillPlan(m, members, opts.Nodes)
	if err != nil {
		return nil, false, err
	}
	opts.BackupID = m.BackupID // fixed now: "latest" must not move under a retry
	raw, err := json.Marshal(opts)
	if err != nil {
		return nil, false, err
	}
	return o.startPlanned(ctx, id, fsm.KindDrill, fsm.Params{BackupID: m.BackupID, Options: raw}, m.BackupID, locked(steps...))
}

// latestOr returns the manifest of backupID, or of the latest backup.
func (o *Operations) latestOr(ctx context.Context, backupID string) (*storage.Manifest, error) {
	if backupID == "" {
		ids, err := o.catalog.ListBackupIDs(ctx)
		if err != nil {
			return nil, err
		}
		if len(ids) == 0 {
			return nil, fmt.Errorf("%w: the repository holds no backup to drill", storage.ErrNotFound)
		}
		backupID = ids[len(ids)-1]
	} else if !storage.ValidBackupID(backupID) {
		return nil, fmt.Errorf("%w: invalid backup id %q", wire.ErrBadRequest, backupID)
	}
	return o.catalog.GetManifest(ctx, backupID)
}

// drillPlan assigns each backed-up node to a member: the member of the
// same id when it may drill, else the next of those that may, in turn.
func drillPlan(m *storage.Manifest, members, chosen []string) ([]fsm.Step, error) {
	for _, n := range chosen {
		if !slices.Contains(members, n) {
			return nil, fmt.Errorf("%w: drill node %q is not a member (members: %v)", wire.ErrBadRequest, n, members)
		}
	}
	may := members
	if len(chosen) > 0 {
		may = slices.Sorted(slices.Values(chosen))
		may = slices.Compact(may)
	}
	if len(may) == 0 {
		return nil, fmt.Errorf("%w: no member to drill on", wire.ErrBadRequest)
	}
	if len(m.Nodes) == 0 {
		return nil, fmt.Errorf("%w: backup %s has no node to drill", wire.ErrBadRequest, m.BackupID)
	}
	var steps []fsm.Step
	turn := 0
	for _, n := range m.Nodes {
		on := n.NodeID
		if !slices.Contains(may, on) {
			on = may[turn%len(may)]
			turn++
		}
		in, _ := json.Marshal(DrillInput{SourceNode: n.NodeID})
		steps = append(steps, fsm.Step{Name: wire.StepDrill, Node: on, Phase: phaseDrill, Input: in})
	}
	return steps, nil
}
