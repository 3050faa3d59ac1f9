// Package process runs a gathering's command as a local process. It serves
// the embedded mode, when no cluster is configured, and is meant for
// development: it runs the command a caller sent on this machine.
//
// The command runs with /bin/sh -c in a fresh temporary directory, exported
// as MUST_GATHER_DIR, which becomes the archive's root. It runs in its own
// process group, and the whole group is killed on timeout and shutdown.
package process

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/kubev2v/must-gather-functions/functions/runner"
)

// DefaultCommand is run when a gathering gives no command, as in
// `oc adm must-gather`.
const DefaultCommand = "/usr/bin/gather"

// Gatherer runs gatherings as local processes.
type Gatherer struct {
	// Shell runs the command; default /bin/sh.
	Shell string
	// TempDir is where output directories are made; default os.TempDir().
	TempDir string
	// KillGrace is how long a stopped command's process group has between
	// SIGTERM and SIGKILL; default 5s.
	KillGrace time.Duration
}

var _ runner.Gatherer = (*Gatherer)(nil)

// Gather implements runner.Gatherer.
func (p *Gatherer) Gather(ctx context.Context, job runner.Job) error {
	shell := p.Shell
	if shell == "" {
		shell = "/bin/sh"
	}
	grace := p.KillGrace
	if grace == 0 {
		grace = 5 * time.Second
	}
	command := strings.TrimSpace(job.Gathering.Command)
	if command == "" {
		command = DefaultCommand
		if _, err := os.Stat(DefaultCommand); err != nil {
			return fmt.Errorf("no command given and the default %s is not on this machine; send a command", DefaultCommand)
		}
	}
	dir, err := os.MkdirTemp(p.TempDir, fmt.Sprintf("must-gather-%d-", job.Gathering.ID))
	if err != nil {
		return fmt.Errorf("make output directory: %w", err)
	}
	defer os.RemoveAll(dir)

	cmd := exec.CommandContext(job.Stop, shell, "-c", command)
	cmd.Dir = dir
	// A minimal environment: the server's own (credentials included) is
	// not the command's business.
	cmd.Env = []string{
		"PATH=" + envOr("PATH", "/usr/local/bin:/usr/bin:/bin"),
		"HOME=" + dir,
		"LANG=C.UTF-8",
		"MUST_GATHER_DIR=" + dir,
		"MUST_GATHER_ID=" + job.Gathering.ID.String(),
	}
	cmd.Stdout = job.Log
	cmd.Stderr = job.Log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// Ask the whole group to stop, then make sure it does.
		pgid := cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		time.AfterFunc(grace, func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
		return nil
	}
	// Children that keep the output pipe open must not hold Wait forever.
	cmd.WaitDelay = grace + time.Second

	fmt.Fprintf(job.Log, "[must-gather-functions] running %q in %s\n", command, dir)
	runErr := cmd.Run()
	if cmd.Process != nil {
		// Leave no stray member of the group behind, whatever happened.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if cause := context.Cause(job.Stop); cause != nil {
		runErr = cause
	} else if runErr != nil {
		var exit *exec.ExitError
		if errors.As(runErr, &exit) {
			runErr = fmt.Errorf("command exited with status %d", exit.ExitCode())
		} else {
			runErr = fmt.Errorf("run command: %w", runErr)
		}
	}
	// Archive what was gathered, also after a failure or a stop.
	if err := job.Archive.AddTree(ctx, dir, ""); err != nil {
		return errors.Join(runErr, fmt.Errorf("archive output: %w", err))
	}
	return runErr
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
