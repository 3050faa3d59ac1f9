// Package process runs a gathering's command as a local process. It serves
// the embedded mode, when no cluster is configured, and is meant for
// development: it runs the command a caller sent on this machine.
//
// The command runs with /bin/sh -c in a fresh temporary directory, exported
// as MUST_GATHER_DIR, which becomes the archive's root. It runs in its own
// process group, and the whole group is killed on timeout and shutdown.
//
// A runner that is killed outright (kill -9, out of memory) cannot do that.
// On Linux the command's shell then gets SIGKILL from the kernel (a
// parent-death signal), and every process a gathering starts carries an
// environment variable naming the runner process that owns it; Sweep kills
// the processes and removes the output folders whose owner is gone.
package process

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
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
	// Logger receives what Sweep cleans up; default slog.Default().
	Logger *slog.Logger
}

// ownerEnv names the environment variable that marks every process a
// gathering starts with the runner process that owns it. Children inherit
// it, so Sweep finds the whole tree even after its shell is gone.
const ownerEnv = "MUST_GATHER_OWNER"

var _ mustgather.Gatherer = (*Gatherer)(nil)

// Gather implements mustgather.Gatherer.
func (p *Gatherer) Gather(ctx context.Context, job mustgather.Job) error {
	shell := p.Shell
	if shell == "" {
		shell = "/bin/sh"
	}
	grace := p.KillGrace
	if grace == 0 {
		grace = 5 * time.Second
	}
	command := strings.TrimSpace(job.Gathering.Command)
	if image := imageOf(job.Gathering.Image, job.Gathering.ImageStream); image != "" {
		if command == "" {
			return fmt.Errorf("the process gatherer runs `command` on this machine and ignores %s; send a command, or configure a Kubernetes cluster (KUBECONFIG) to run images", image)
		}
		fmt.Fprintf(job.Log, "[must-gather-functions] the process gatherer ignores %s and runs the command on this machine\n", image)
	}
	if command == "" {
		command = DefaultCommand
		if _, err := os.Stat(DefaultCommand); err != nil {
			return fmt.Errorf("no command given and the default %s is not on this machine; send a command", DefaultCommand)
		}
	}
	// The folder's name and the marker say which process owns them, so
	// that a later Sweep can tell a crashed runner's leftovers from the
	// work of a live one sharing this machine and TempDir.
	pattern := fmt.Sprintf("must-gather-%d-", job.Gathering.ID)
	self, ownerErr := selfOwner()
	if ownerErr == nil {
		pattern = folderPattern(job.Gathering.ID.String(), self)
	}
	dir, err := os.MkdirTemp(p.TempDir, pattern)
	if err != nil {
		return fmt.Errorf("make output directory: %w", err)
	}
	defer removeAll(dir)

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
	if ownerErr == nil {
		cmd.Env = append(cmd.Env, ownerEnv+"="+self.String())
	}
	cmd.Stdout = job.Log
	cmd.Stderr = job.Log
	cmd.SysProcAttr = procAttr()
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
	runErr := run(cmd)
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

// Sweep kills the processes that gatherings of runner processes no longer
// alive left running, and removes their output folders from TempDir. It
// never touches the gatherings of a live process, this one or another
// sharing the machine and TempDir. The runner calls it at start and then
// periodically. On systems other than Linux it does nothing.
func (p *Gatherer) Sweep(ctx context.Context) error {
	log := p.Logger
	if log == nil {
		log = slog.Default()
	}
	dir := p.TempDir
	if dir == "" {
		dir = os.TempDir()
	}
	return sweep(ctx, dir, log)
}

// imageOf names the image a gathering asks for, or returns "".
func imageOf(image, imageStream string) string {
	switch {
	case image != "":
		return fmt.Sprintf("image %q", image)
	case imageStream != "":
		return fmt.Sprintf("image-stream %q", imageStream)
	}
	return ""
}

// owner names a runner process: its pid, its start time in clock ticks
// after boot (so that a recycled pid is not taken for it) and the inode of
// its pid namespace (so that a process seen through another container's
// /proc is never judged by ours).
type owner struct {
	pid   int
	start uint64
	ns    uint64
}

// String returns the form used in the marker and folder names.
func (o owner) String() string { return fmt.Sprintf("%d-%d-%d", o.pid, o.start, o.ns) }

// folderPattern is the os.MkdirTemp pattern of a gathering's output folder;
// ownedFolder reads the owner back.
func folderPattern(id string, o owner) string {
	return "must-gather-" + id + "-owner-" + o.String() + "-"
}

// removeAll removes dir even when the command left folders in it without
// write permission.
func removeAll(dir string) error {
	if err := os.RemoveAll(dir); err == nil {
		return nil
	}
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(path, 0o700)
		}
		return nil
	})
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
