package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/api"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
)

// opSummary says in one line what a finished operation did, from its
// steps' recorded results: what a backup stored, what a gc freed, what a
// cleanup forgot, what a verify checked and found, what a drill read
// back. "" when its steps
// recorded nothing to tell.
func opSummary(op *api.Operation) string {
	var parts []string
	add := func(format string, args ...any) { parts = append(parts, fmt.Sprintf(format, args...)) }
	var uploaded, stored, verified, verifiedBytes int64
	uploads, drills := 0, 0
	for _, st := range op.Steps {
		if st.State != fsm.StepDone && st.State != fsm.StepFailed {
			continue
		}
		switch st.Name {
		case wire.StepManifest:
			var r struct{ Files, Bytes int64 }
			if json.Unmarshal(st.Result, &r) == nil {
				add("%d files, %s", r.Files, humanBytes(r.Bytes))
			}
		case wire.StepUpload:
			var r wire.UploadResult
			if json.Unmarshal(st.Result, &r) == nil {
				uploaded += r.UploadedBytes
				stored += r.StoredBytes
				uploads++
			}
		case wire.StepForget:
			var r struct {
				Deleted            []string `json:"deleted"`
				DeletedTotal       int      `json:"deleted_total"`
				Remaining          int      `json:"remaining"`
				DeletedLogArchives []string `json:"deleted_log_archives"`
			}
			if json.Unmarshal(st.Result, &r) == nil {
				add("forgot %d backups%s", max(r.DeletedTotal, len(r.Deleted)), listed(r.Deleted))
				if r.Remaining > 0 {
					add("%d more to forget: run cleanup again", r.Remaining)
				}
				if len(r.DeletedLogArchives) > 0 {
					add("deleted %d log archives", len(r.DeletedLogArchives))
				}
			}
		case wire.StepGC:
			var r storage.GCReport
			if json.Unmarshal(st.Result, &r) == nil {
				add("freed %s (%d packs deleted, %d repacked; %d live blobs, %d dead)",
					humanBytes(r.BytesFreed), r.PacksDeleted, r.PacksRepacked, r.LiveBlobs, r.DeadBlobs)
			}
		case wire.StepDrill:
			var r wire.RestoreResult
			if json.Unmarshal(st.Result, &r) == nil && st.State == fsm.StepDone {
				verified += r.Verified
				verifiedBytes += r.VerifiedBytes
				drills++
			}
		case wire.StepVerify:
			var r struct {
				storage.VerifyReport
				ProblemsTotal int `json:"problems_total"` // the report lists the first problems only
			}
			if json.Unmarshal(st.Result, &r) == nil {
				add("checked %d backups, %d log archives, %d packs, %d blobs; read %d packs (%s); found %d problems",
					r.Snapshots, r.LogArchives, r.Packs, r.Blobs, r.PacksRead, humanBytes(r.BytesRead), max(r.ProblemsTotal, len(r.Problems)))
			}
		}
	}
	if uploads > 0 {
		add("uploaded %s new from %d nodes (stored %s)", humanBytes(uploaded), uploads, humanBytes(stored))
	}
	if drills > 0 {
		add("restored and read back %d files, %s, of %d nodes of backup %s: equal to the backup", verified, humanBytes(verifiedBytes), drills, op.BackupID)
	}
	return strings.Join(parts, "; ")
}

// listed names up to three ids: " (a, b, c, ...)".
func listed(ids []string) string {
	if len(ids) == 0 {
		return ""
	}
	if len(ids) > 3 {
		return " (" + strings.Join(ids[:3], ", ") + ", ...)"
	}
	return " (" + strings.Join(ids, ", ") + ")"
}

// stepName is a step as people read it: a plugin restore's steps by
// their action ("restore:load", "restore:stage"), its last one as
// "restore:cleanup"; other steps by their name.
func stepName(s fsm.Step) string {
	if s.Name == wire.StepDrill {
		// Which backed-up node it restores: one member may drill several.
		var in struct {
			SourceNode string `json:"source_node"`
		}
		if json.Unmarshal(s.Input, &in) == nil && in.SourceNode != "" {
			return s.Name + ":" + in.SourceNode
		}
	}
	if s.Name != wire.StepRestore || len(s.Input) == 0 {
		return s.Name
	}
	var in struct {
		Cleanup bool `json:"cleanup"`
		Plugin  struct {
			Action string `json:"action"`
		} `json:"plugin"`
	}
	switch err := json.Unmarshal(s.Input, &in); {
	case err != nil:
		return s.Name
	case in.Cleanup:
		return s.Name + ":cleanup"
	case in.Plugin.Action != "":
		return s.Name + ":" + in.Plugin.Action
	}
	return s.Name
}
