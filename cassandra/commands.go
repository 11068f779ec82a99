package cassandra

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/crayfish-backup/crayfish/internal/wait"
)

// ErrCommand marks a nodetool, start or stop command that failed.
var ErrCommand = errors.New("cassandra command failed")

// nodetool runs nodetool with args and returns its output.
func (p *Plugin) nodetool(ctx context.Context, args ...string) (string, error) {
	argv := append(append([]string{}, p.cfg.Nodetool[1:]...), args...)
	return p.run(ctx, exec.CommandContext(ctx, p.cfg.Nodetool[0], argv...))
}

// shell runs a configured shell command (start, stop) with extra
// environment.
func (p *Plugin) shell(ctx context.Context, command string, env ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Env = append(os.Environ(), env...)
	return p.run(ctx, cmd)
}

func (p *Plugin) run(ctx context.Context, cmd *exec.Cmd) (string, error) {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second // a child holding the pipes open cannot hang us
	started := time.Now()
	err := cmd.Run()
	text := strings.TrimSpace(out.String())
	p.log.Debug("cassandra command", "cmd", cmd.Args, "took", time.Since(started).Round(time.Millisecond), "err", err)
	if err != nil {
		if ctx.Err() != nil {
			return text, ctx.Err()
		}
		return text, fmt.Errorf("%w: %s: %v: %s", ErrCommand, strings.Join(cmd.Args, " "), err, lastLines(text, 5))
	}
	return text, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// javaReason is what a Java tool's output says went wrong: its lines
// without the stack frames (an exception's frames hide its message and
// its causes), the last n of them.
func javaReason(s string, n int) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "at ") || (strings.HasPrefix(t, "... ") && strings.HasSuffix(t, " more")) {
			continue
		}
		keep = append(keep, t)
	}
	if len(keep) > n {
		keep = keep[len(keep)-n:]
	}
	return strings.Join(keep, " | ")
}

// stop stops this node's Cassandra (a no-op when it is already down, as
// the configured command must be).
func (p *Plugin) stop(ctx context.Context) error {
	if p.cfg.StopCommand == "" {
		return fmt.Errorf("%w: no cassandra_stop_command configured", ErrCommand)
	}
	p.log.Info("stopping cassandra")
	_, err := p.shell(ctx, p.cfg.StopCommand)
	return err
}

// startAttempts bounds how often start runs the start command: a node
// that starts while its seeds restart too (a full restore's load
// restarts every node at once) finds no peer to gossip with and exits
// ("Unable to gossip with any peers"); started again once they are back,
// it joins. startRetryDelay is the wait in between.
const (
	startAttempts   = 3
	startRetryDelay = 10 * time.Second
)

// startCommand runs the start command, again after a failure, up to
// startAttempts times. Starting again is safe: a start that replays a
// commit log to a time replays the same segments again.
func (p *Plugin) startCommand(ctx context.Context, env []string) error {
	for attempt := 1; ; attempt++ {
		_, err := p.shell(ctx, p.cfg.StartCommand, env...)
		if err == nil || attempt >= startAttempts {
			return err
		}
		p.log.Warn("cassandra did not start; starting it again", "attempt", attempt, "of", startAttempts, "err", err)
		if err := wait.Sleep(ctx, startRetryDelay); err != nil {
			return err
		}
	}
}

// start starts this node's Cassandra, with the override file when a
// restore wrote one, and waits until it answers CQL.
func (p *Plugin) start(ctx context.Context, extraEnv ...string) error {
	var override string
	if p.cfg.OverrideFile != "" {
		if _, err := os.Stat(p.cfg.OverrideFile); err == nil {
			override = p.cfg.OverrideFile
		}
	}
	if p.cfg.StartCommand == "" {
		return fmt.Errorf("%w: no cassandra_start_command configured", ErrCommand)
	}
	p.log.Info("starting cassandra", "override", override)
	env := extraEnv
	if override != "" {
		env = append(env, "CRAYFISH_CASSANDRA_OVERRIDE="+override)
	}
	if err := p.startCommand(ctx, env); err != nil {
		return err
	}
	deadline := time.Now().Add(p.cfg.StartTimeout)
	for {
		s, err := p.session(ctx)
		if err == nil {
			s.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cassandra did not answer CQL within %s after start: %w", p.cfg.StartTimeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
