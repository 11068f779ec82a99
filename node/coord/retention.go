package coord

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

// The cleanup's forget step: retention decided at the operation's
// leader-stamped start, the backups it drops deleted, then the log
// archives no kept backup needs.

// ForgetResult is the recorded result of the forget step: counts, and
// the deleted backups cut to the log's budget (the plan's input names
// every one).
type ForgetResult struct {
	Policy storage.RetentionPolicy `json:"policy"`
	// Decisions are those of a cleanup planned before plans named only
	// the dropped backups (cut to the budget); empty otherwise.
	Decisions []storage.Decision `json:"decisions,omitempty"`
	// Kept counts the backups the decision keeps.
	Kept int `json:"kept"`
	// Deleted are the first deleted backups; DeletedTotal counts all.
	Deleted      []string `json:"deleted"`
	DeletedTotal int      `json:"deleted_total"`
	// Remaining counts the backups the decision drops that this cleanup
	// left to the next one (one deletes at most maxForget).
	Remaining int `json:"remaining,omitempty"`
	// DeletedLogArchives are the log archives no kept backup needs.
	DeletedLogArchives []string `json:"deleted_log_archives,omitempty"`
}

// forget applies the operation's retention policy (or the configured
// one) at the operation's leader-stamped start time, so a repeat decides
// the same.
func (e *Engine) forget(ctx context.Context, op *fsm.Operation, step fsm.Step) (ForgetResult, error) {
	in, err := e.forgetInput(ctx, op, step)
	if err != nil {
		return ForgetResult{}, err
	}
	// Decided when the cleanup started: a repeat deletes and records the
	// same backups (deleting one already gone counts as deleted).
	del, err := e.deleteBackups(ctx, in.drops())
	res := ForgetResult{Policy: in.Policy, Kept: in.Kept, Deleted: del.Deleted, DeletedTotal: len(del.Deleted), Remaining: in.Remaining}
	if len(in.Decisions) > 0 {
		res.Decisions = in.Decisions[:fitList(len(in.Decisions), maxListBytes, func(i int) int { return jsonSize(in.Decisions[i]) })]
		for _, d := range in.Decisions {
			if d.Keep {
				res.Kept++
			}
		}
	}
	res.Deleted = res.Deleted[:fitList(len(res.Deleted), maxListBytes, func(i int) int { return len(res.Deleted[i]) + 3 })]
	if err == nil {
		res.DeletedLogArchives, err = e.pruneLogArchives(ctx)
	}
	return res, err
}

// forgetInput is the step's input, or, for a cleanup started before
// plans carried the decision, the decision made now at the operation's
// start time.
func (e *Engine) forgetInput(ctx context.Context, op *fsm.Operation, step fsm.Step) (*ForgetInput, error) {
	if len(step.Input) > 0 {
		var in ForgetInput
		if err := json.Unmarshal(step.Input, &in); err != nil {
			return nil, wire.Permanent(fmt.Errorf("forget step input: %w", err))
		}
		return &in, nil
	}
	var opts api.CleanupOptions
	if len(op.Params.Options) > 0 {
		if err := json.Unmarshal(op.Params.Options, &opts); err != nil {
			return nil, wire.Permanent(fmt.Errorf("cleanup options: %w", err))
		}
	}
	policy := e.cfg.Retention
	if opts.Policy != nil {
		policy = *opts.Policy
	}
	decisions, err := decideRetention(ctx, e.repo, policy, op.CreatedAt)
	if err != nil {
		return nil, err
	}
	return newForgetInput(policy, decisions), nil
}

// logArchiveMargin keeps log archives whose last file closed up to this
// long before the oldest kept backup began: a restore from it takes
// files closed a little before it began (clock skew between nodes).
const logArchiveMargin = time.Hour

// pruneLogArchives deletes the log archives no kept backup can use
// (storage.LogArchivesToDelete), judged from the backups left now, so a
// repeat deletes the same or nothing.
func (e *Engine) pruneLogArchives(ctx context.Context) ([]string, error) {
	ids, err := e.repo.ListLogArchiveIDs(ctx)
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	kept, err := backupSummaries(ctx, e.repo)
	if err != nil {
		return nil, err
	}
	archives, err := e.logArchivesBefore(ctx, ids, latestOldestStart(kept))
	if err != nil {
		return nil, err
	}
	drop := storage.LogArchivesToDelete(archives, kept, logArchiveMargin)
	for _, id := range drop {
		if err := e.repo.DeleteLogArchive(ctx, id); err != nil {
			return nil, err
		}
	}
	return drop, nil
}

// latestOldestStart is, over the plugins, the latest start of a
// plugin's oldest kept backup: only log archives shipped before it can
// be deleted (their files closed before they were shipped).
func latestOldestStart(kept []storage.Summary) time.Time {
	oldest := map[string]time.Time{}
	for _, b := range kept {
		if t, ok := oldest[b.Plugin]; !ok || b.StartedAt.Before(t) {
			oldest[b.Plugin] = b.StartedAt
		}
	}
	var latest time.Time
	for _, t := range oldest {
		if t.After(latest) {
			latest = t
		}
	}
	return latest
}

// logArchivesBefore reads the log archives of ids shipped before t; the
// others are not read at all.
func (e *Engine) logArchivesBefore(ctx context.Context, ids []string, t time.Time) ([]storage.LogArchive, error) {
	var out []storage.LogArchive
	for _, id := range ids {
		if shipped, ok := storage.LogArchiveTime(id); ok && !shipped.Before(t) {
			continue
		}
		a, err := e.repo.GetLogArchive(ctx, id)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("log archive %s: %w", id, err) // never decide on incomplete information
		}
		out = append(out, *a)
	}
	return out, nil
}

// decideRetention reads every snapshot summary and applies policy at now.
func decideRetention(ctx context.Context, repo summaryReader, policy storage.RetentionPolicy, now time.Time) ([]storage.Decision, error) {
	if err := policy.Validate(); err != nil {
		return nil, wire.Permanent(err)
	}
	sums, err := backupSummaries(ctx, repo)
	if err != nil {
		return nil, err
	}
	return storage.ApplyRetention(sums, policy, now)
}

type summaryReader interface {
	ListBackupIDs(ctx context.Context) ([]string, error)
	GetManifest(ctx context.Context, backupID string) (*storage.Manifest, error)
}

// backupSummaries summarizes every backup; one that cannot be read is an
// error (never decide on incomplete information), one deleted meanwhile
// is left out.
func backupSummaries(ctx context.Context, repo summaryReader) ([]storage.Summary, error) {
	ids, err := repo.ListBackupIDs(ctx)
	if err != nil {
		return nil, err
	}
	var sums []storage.Summary
	for _, id := range ids {
		m, err := repo.GetManifest(ctx, id)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("backup %s: %w", id, err)
		}
		sums = append(sums, m.Summarize())
	}
	return sums, nil
}
