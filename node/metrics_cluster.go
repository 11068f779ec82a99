package node

import (
	"encoding/json"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crayfish-backup/crayfish/fsm"
	"github.com/crayfish-backup/crayfish/node/wire"
	"github.com/crayfish-backup/crayfish/storage"
	"github.com/crayfish-backup/crayfish/transport/gossip"
)

// clusterCollector reports, at each scrape, what the replicated state
// says (the same on every node: operations, the last backup, the
// running operation's progress) and this node's view of the cluster
// (Raft, gossip, its fencing epoch). Nothing is counted locally, so a
// leader change makes no counter jump.
type clusterCollector struct {
	plugin  string
	fsm     *fsm.Machine
	raft    func() Status
	members func() []gossip.Member
	epoch   func() uint64
}

// metricDesc builds a description under the crayfish_ namespace.
func metricDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("crayfish_"+name, help, labels, nil)
}

var (
	descOpsStarted  = metricDesc("operations_started_total", "Operations started in the cluster, by kind (from the replicated state: every node reports the same).", "kind")
	descOpsFinished = metricDesc("operations_finished_total", "Operations finished in the cluster, by kind and outcome (succeeded, failed).", "kind", "state")
	descOpsRunning  = metricDesc("operations_running", "1 while an operation holds the cluster lock, by kind.", "kind")
	descStepFailed  = metricDesc("step_attempt_failures_total", "Step attempts that ended without success, by step and reason (retried: started again after an error or a leader change; failed: for good).", "step", "reason")

	descLastSuccess = metricDesc("backup_last_success_timestamp_seconds", "When the last successful backup finished.", "plugin")
	descDrillTime   = metricDesc("drill_last_success_timestamp_seconds", "When the last successful restore drill (a verified restore) finished.", "plugin")
	descDrillBytes  = metricDesc("drill_last_verified_bytes", "Bytes the last successful restore drill restored and read back equal to the backup.", "plugin")
	descLastDur     = metricDesc("backup_last_duration_seconds", "How long the last successful backup took.", "plugin")
	descLastBytes   = metricDesc("backup_last_logical_bytes", "Bytes of the files the last successful backup holds.", "plugin")
	descLastFiles   = metricDesc("backup_last_files", "Files the last successful backup holds.", "plugin")
	descLastNew     = metricDesc("backup_last_stored_new_bytes", "Bytes the last successful backup stored anew (compressed, encrypted).", "plugin")
	descLastDedup   = metricDesc("backup_last_dedup_ratio", "Logical bytes of the last successful backup over the plaintext bytes it uploaded anew.", "plugin")
	descLastComp    = metricDesc("backup_last_compression_ratio", "Plaintext bytes the last successful backup uploaded over the bytes they took stored.", "plugin")

	descVerifyTime     = metricDesc("verify_last_timestamp_seconds", "When the last repository verify finished.")
	descVerifyOK       = metricDesc("verify_last_success", "1 if the last repository verify found no problem.")
	descVerifyProblems = metricDesc("verify_last_problems", "Problems (damaged, missing or unreferenced objects) the last verify found.")
	descRepoPacks      = metricDesc("repository_packs", "Packs the repository's index lists, as of the last verify.")
	descRepoBlobs      = metricDesc("repository_blobs", "Blobs the repository's index lists, as of the last verify.")
	descGCTime         = metricDesc("gc_last_timestamp_seconds", "When the last garbage collection (gc or cleanup) finished.")
	descRepoStored     = metricDesc("repository_stored_bytes", "Bytes of packs and index segments in the repository, as of the last garbage collection.")
	descReclaimable    = metricDesc("repository_reclaimable_bytes", "About how many stored bytes no backup references that the last garbage collection left (in packs below the repack threshold).")

	descProgBytes = metricDesc("operation_progress_bytes", "The running operation's bytes per node and step, done and total.", "node", "step", "of")
	descProgFiles = metricDesc("operation_progress_files", "The running operation's files per node and step, done and total.", "node", "step", "of")

	descRaftState   = metricDesc("raft_state", "1 for this node's Raft state (leader, follower, candidate, shutdown).", "state")
	descRaftTerm    = metricDesc("raft_term", "This node's Raft term.")
	descRaftCommit  = metricDesc("raft_commit_index", "This node's Raft commit index.")
	descRaftApplied = metricDesc("raft_applied_index", "The last Raft log index this node's state machine applied.")
	descRaftLeader  = metricDesc("raft_leader_present", "1 if this node knows a leader.")
	descRaftContact = metricDesc("raft_last_contact_seconds", "Since this node last heard from the leader (0 on the leader).")
	descMembers     = metricDesc("gossip_members", "Gossip members this node sees, by status.", "status")
	descEpoch       = metricDesc("node_fencing_epoch", "The highest coordinator epoch this node has admitted.")
)

var raftStates = []string{"Leader", "Follower", "Candidate", "Shutdown"}

// Describe sends every series the collector may emit (also those it
// emits only after a backup, verify or gc): a checked collector.
func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descOpsStarted, descOpsFinished, descOpsRunning, descStepFailed,
		descLastSuccess, descDrillTime, descDrillBytes, descLastDur, descLastBytes, descLastFiles, descLastNew, descLastDedup, descLastComp,
		descVerifyTime, descVerifyOK, descVerifyProblems, descRepoPacks, descRepoBlobs, descGCTime, descRepoStored, descReclaimable,
		descProgBytes, descProgFiles, descRaftState, descRaftTerm, descRaftCommit, descRaftApplied, descRaftLeader,
		descRaftContact, descMembers, descEpoch} {
		ch <- d
	}
}

func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	c.collectOperations(ch)
	c.collectCluster(ch)
}

func (c *clusterCollector) collectOperations(ch chan<- prometheus.Metric) {
	tot := c.fsm.Totals()
	// Every kind and outcome from zero: a rule on increase() needs the
	// sample before the first failure.
	for _, kind := range fsm.Kinds() {
		ch <- prometheus.MustNewConstMetric(descOpsStarted, prometheus.CounterValue, float64(tot.Started[kind]), string(kind))
		for _, state := range []fsm.OpState{fsm.OpSucceeded, fsm.OpFailed} {
			n := tot.Finished[string(kind)+"/"+string(state)]
			ch <- prometheus.MustNewConstMetric(descOpsFinished, prometheus.CounterValue, float64(n), string(kind), string(state))
		}
	}
	for key, n := range tot.StepAttemptsFailed {
		step, reason := fsm.SplitStepFailureKey(key)
		ch <- prometheus.MustNewConstMetric(descStepFailed, prometheus.CounterValue, float64(n), step, reason)
	}
	active := c.fsm.Active()
	for _, k := range fsm.Kinds() {
		ch <- prometheus.MustNewConstMetric(descOpsRunning, prometheus.GaugeValue, boolFloat(active != nil && active.Kind == k), string(k))
	}
	if active != nil {
		for _, st := range active.Steps {
			if st.State != fsm.StepRunning || st.Progress == nil {
				continue
			}
			p := st.Progress
			for of, v := range map[string][2]int64{"done": {p.BytesDone, p.FilesDone}, "total": {p.BytesTotal, p.FilesTotal}} {
				ch <- prometheus.MustNewConstMetric(descProgBytes, prometheus.GaugeValue, float64(v[0]), st.Node, st.Name, of)
				ch <- prometheus.MustNewConstMetric(descProgFiles, prometheus.GaugeValue, float64(v[1]), st.Node, st.Name, of)
			}
		}
	}
	if last := tot.LastSucceeded[fsm.KindBackup]; last != nil {
		c.collectLastBackup(ch, last)
	}
	if d := tot.LastSucceeded[fsm.KindDrill]; d != nil && d.FinishedAt != nil {
		var verified int64
		for _, st := range d.Steps {
			var r wire.RestoreResult
			if st.Name == wire.StepDrill && json.Unmarshal(st.Result, &r) == nil {
				verified += r.VerifiedBytes
			}
		}
		ch <- prometheus.MustNewConstMetric(descDrillTime, prometheus.GaugeValue, unixOrZero(*d.FinishedAt), c.plugin)
		ch <- prometheus.MustNewConstMetric(descDrillBytes, prometheus.GaugeValue, float64(verified), c.plugin)
	}
	c.collectRepository(ch, tot)
}

// collectRepository reports the repository as the last verify and the
// last garbage collection found it (recorded in their step results).
func (c *clusterCollector) collectRepository(ch chan<- prometheus.Metric, tot fsm.Totals) {
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	if v := tot.LastFinished[fsm.KindVerify]; v != nil && v.FinishedAt != nil {
		var rep struct {
			storage.VerifyReport
			ProblemsTotal int `json:"problems_total"` // the recorded report lists the first problems only
		}
		if stepResultOf(v, wire.StepVerify, &rep) {
			problems := max(rep.ProblemsTotal, len(rep.Problems))
			gauge(descVerifyTime, unixOrZero(*v.FinishedAt))
			gauge(descVerifyOK, boolFloat(v.State == fsm.OpSucceeded && problems == 0))
			gauge(descVerifyProblems, float64(problems))
			gauge(descRepoPacks, float64(rep.Packs))
			gauge(descRepoBlobs, float64(rep.Blobs))
		}
	}
	var last *fsm.Operation // gc or cleanup, whichever finished last
	for _, k := range []fsm.OpKind{fsm.KindGC, fsm.KindCleanup} {
		if op := tot.LastSucceeded[k]; op != nil && op.FinishedAt != nil && (last == nil || op.FinishedAt.After(*last.FinishedAt)) {
			last = op
		}
	}
	var rep storage.GCReport
	if last != nil && stepResultOf(last, wire.StepGC, &rep) {
		gauge(descGCTime, unixOrZero(*last.FinishedAt))
		gauge(descRepoStored, float64(max(0, rep.BytesBefore-rep.BytesFreed)))
		gauge(descReclaimable, float64(max(0, rep.Classification.Unreferenced.Bytes-rep.BytesFreed)))
	}
}

// stepResultOf decodes the result of op's step named name.
func stepResultOf(op *fsm.Operation, name string, v any) bool {
	for _, st := range op.Steps {
		if st.Name == name && len(st.Result) > 0 {
			return json.Unmarshal(st.Result, v) == nil
		}
	}
	return false
}

// backupFigures are what a succeeded backup's step results say.
type backupFigures struct {
	files, bytes     int64 // the manifest step's
	uploaded, stored int64 // summed over the upload steps
}

func figuresOf(op *fsm.Operation) backupFigures {
	var f backupFigures
	for _, st := range op.Steps {
		switch st.Name {
		case wire.StepManifest:
			var r struct{ Files, Bytes int64 }
			if json.Unmarshal(st.Result, &r) == nil {
				f.files, f.bytes = r.Files, r.Bytes
			}
		case wire.StepUpload:
			var r wire.UploadResult
			if json.Unmarshal(st.Result, &r) == nil {
				f.uploaded += r.UploadedBytes
				f.stored += r.StoredBytes
			}
		}
	}
	return f
}

func (c *clusterCollector) collectLastBackup(ch chan<- prometheus.Metric, op *fsm.Operation) {
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, c.plugin)
	}
	if op.FinishedAt != nil {
		gauge(descLastSuccess, unixOrZero(*op.FinishedAt))
		gauge(descLastDur, op.FinishedAt.Sub(op.CreatedAt).Seconds())
	}
	f := figuresOf(op)
	gauge(descLastBytes, float64(f.bytes))
	gauge(descLastFiles, float64(f.files))
	gauge(descLastNew, float64(f.stored))
	// Ratios only where defined: a backup that uploaded nothing new has
	// no dedup or compression ratio to speak of.
	if f.uploaded > 0 {
		gauge(descLastDedup, float64(f.bytes)/float64(f.uploaded))
	}
	if f.stored > 0 {
		gauge(descLastComp, float64(f.uploaded)/float64(f.stored))
	}
}

func (c *clusterCollector) collectCluster(ch chan<- prometheus.Metric) {
	st := c.raft()
	for _, s := range raftStates {
		ch <- prometheus.MustNewConstMetric(descRaftState, prometheus.GaugeValue, boolFloat(st.State == s), s)
	}
	ch <- prometheus.MustNewConstMetric(descRaftTerm, prometheus.GaugeValue, float64(st.Term))
	ch <- prometheus.MustNewConstMetric(descRaftCommit, prometheus.GaugeValue, float64(st.CommitIndex))
	ch <- prometheus.MustNewConstMetric(descRaftApplied, prometheus.GaugeValue, float64(c.fsm.AppliedIndex()))
	ch <- prometheus.MustNewConstMetric(descRaftLeader, prometheus.GaugeValue, boolFloat(st.LeaderID != ""))
	if st.State == "Leader" {
		ch <- prometheus.MustNewConstMetric(descRaftContact, prometheus.GaugeValue, 0)
	} else if d, err := time.ParseDuration(st.LastContact); err == nil {
		ch <- prometheus.MustNewConstMetric(descRaftContact, prometheus.GaugeValue, d.Seconds())
	}
	byStatus := map[string]int{}
	for _, m := range c.members() {
		byStatus[string(m.Status)]++
	}
	for _, s := range gossip.Statuses() {
		ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(byStatus[string(s)]), string(s))
	}
	ch <- prometheus.MustNewConstMetric(descEpoch, prometheus.GaugeValue, float64(c.epoch()))
}
