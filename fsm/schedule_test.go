package fsm

import (
	"encoding/json"
	"testing"
	"time"
)

func scheduleCmd(create bool, cron string) Command {
	return Command{Type: CmdScheduleSet, Time: t0, Create: create, Schedule: &Schedule{ScheduleSpec: ScheduleSpec{
		Name: "nightly", Cron: cron, Kind: KindBackup, Missed: MissedSkip}}}
}

func slotCmd(epoch uint64, slot time.Time, opID string) Command {
	return Command{Type: CmdScheduleSlot, Time: slot.Add(time.Second), Name: "nightly", Epoch: epoch, Slot: slot, OpID: opID}
}

// TestScheduleSlotsMoveForwardOnce: a slot is recorded once; a replayed
// or older slot and a deposed coordinator's record change nothing.
func TestScheduleSlotsMoveForwardOnce(t *testing.T) {
	s := NewState()
	s1, s2 := t0.Add(time.Hour), t0.Add(2*time.Hour)
	resp := run(t, s, []scriptStep{
		{cmd: Command{Type: CmdClaim, Node: "n1"}},                    // epoch 1
		{cmd: scheduleCmd(true, "@every 1h")},                         // 2
		{cmd: scheduleCmd(true, "@every 1h")},                         // 3: same definition: no change
		{cmd: scheduleCmd(true, "@every 2h"), wantErr: ErrIDConflict}, // 4
		{cmd: slotCmd(1, s1, "sched-nightly-1")},                      // 5
		{cmd: slotCmd(1, s1, "sched-nightly-1")},                      // 6: again
		{cmd: Command{Type: CmdClaim, Node: "n2"}},                    // epoch 7
		{cmd: slotCmd(1, s2, "sched-nightly-2"), wantErr: ErrStaleEpoch},
		{cmd: slotCmd(7, s2, "")},                // given up
		{cmd: slotCmd(7, s1, "sched-nightly-1")}, // older: ignored
		{cmd: Command{Type: CmdSchedulePause, Name: "nightly", Paused: true}},
		{cmd: Command{Type: CmdSchedulePause, Name: "weekly", Paused: true}, wantErr: ErrUnknownSchedule},
	})
	if !resp[2].Existing || !resp[5].Existing || !resp[9].Existing {
		t.Fatalf("repeats not reported as no-ops: %v %v %v", resp[2].Existing, resp[5].Existing, resp[9].Existing)
	}
	sc := s.Schedules["nightly"]
	if !sc.LastSlot.Equal(s2) || sc.LastOpID != "" || sc.FiredSlots != 1 || sc.GivenUpSlots != 1 || !sc.Paused || sc.Cron != "@every 1h" {
		t.Fatalf("schedule after the script: %+v", sc)
	}
	// A redefinition keeps the run state.
	redefine := scheduleCmd(false, "@every 30m")
	if r := s.Apply(20, redefine); r.Err != nil || !r.Schedule.LastSlot.Equal(s2) || r.Schedule.FiredSlots != 1 || r.Schedule.Cron != "@every 30m" {
		t.Fatalf("redefinition: %+v %v", r.Schedule, r.Err)
	}
	if r := s.Apply(21, Command{Type: CmdScheduleRemove, Name: "nightly"}); r.Err != nil || len(s.Schedules) != 0 {
		t.Fatalf("remove: %v, %d left", r.Err, len(s.Schedules))
	}
}

func TestScheduleDefinitionChecked(t *testing.T) {
	for name, sp := range map[string]ScheduleSpec{
		"bad name":    {Name: "Nightly!", Cron: "@daily", Kind: KindBackup, Missed: MissedSkip},
		"no cron":     {Name: "a", Kind: KindBackup, Missed: MissedSkip},
		"restore":     {Name: "a", Cron: "@daily", Kind: KindRestore, Missed: MissedSkip},
		"no policy":   {Name: "a", Cron: "@daily", Kind: KindBackup},
		"neg. jitter": {Name: "a", Cron: "@daily", Kind: KindBackup, Missed: MissedSkip, Jitter: -1},
	} {
		r := NewState().Apply(1, Command{Type: CmdScheduleSet, Schedule: &Schedule{ScheduleSpec: sp}})
		if r.Err == nil {
			t.Errorf("%s: accepted %+v", name, sp)
		}
	}
}

// TestNotifiedOnlyWhenFinished: a running operation cannot be marked
// delivered; a finished one can, once per coordinator epoch's say.
func TestNotifiedOnlyWhenFinished(t *testing.T) {
	s := NewState()
	script := []scriptStep{{cmd: Command{Type: CmdClaim, Node: "n1"}}, {cmd: startCmd("op1")},
		{cmd: Command{Type: CmdNotified, OpID: "op1", Epoch: 1}, wantErr: ErrInvalidTransition}}
	script = append(script, fullRun(1)...)
	script = append(script,
		scriptStep{cmd: Command{Type: CmdNotified, OpID: "op1", Epoch: 0}, wantErr: ErrStaleEpoch},
		scriptStep{cmd: Command{Type: CmdNotified, OpID: "op1", Epoch: 1, Error: "gave up"}},
		scriptStep{cmd: Command{Type: CmdNotified, OpID: "nope", Epoch: 1}, wantErr: ErrUnknownOperation})
	run(t, s, script)
	if op := s.Ops["op1"]; !op.Notified || op.NotifyError != "gave up" {
		t.Fatalf("op after notified: %+v", op)
	}
}

func TestScheduleSurvivesSnapshot(t *testing.T) {
	s := NewState()
	run(t, s, []scriptStep{{cmd: Command{Type: CmdClaim, Node: "n1"}}, {cmd: scheduleCmd(true, "@every 1h")},
		{cmd: slotCmd(1, t0.Add(time.Hour), "x")}})
	b, _ := json.Marshal(s)
	var back State
	if err := json.Unmarshal(b, &back); err != nil || !back.Schedules["nightly"].LastSlot.Equal(t0.Add(time.Hour)) {
		t.Fatalf("schedule does not survive a snapshot: %v %+v", err, back.Schedules)
	}
}
