package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Process is a program that a test started, with its output in a file.
type Process struct {
	Name string // what the test calls it
	Log  string // path of the file with its stdout and stderr

	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// StartProcess starts args[0] with the arguments args[1:] and the
// environment env (nil: the test binary's own), with its stdout and stderr
// appended to dir/name.log. The process dies with the test binary on Linux,
// even when the test binary exits without running its cleanups.
func StartProcess(dir, name string, env, args []string) (*Process, error) {
	logPath := filepath.Join(dir, name+".log")
	out, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = env
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start %s: %w", args[0], err)
	}
	p := &Process{Name: name, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		out.Close()
		close(p.done)
	}()
	return p, nil
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is how the process exited (see exec.Cmd.Wait), once Done is closed.
func (p *Process) Err() error {
	<-p.done
	return p.err
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Stop kills the process and waits for it to exit.
func (p *Process) Stop() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

var errExited = errors.New("the process exited")

// WaitReady polls ready every 50ms until it succeeds, the process exits or
// ctx ends.
func (p *Process) WaitReady(ctx context.Context, ready func() error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-p.done:
			cancel(errExited)
		case <-ctx.Done():
		}
	}()
	err := Poll(ctx, readyInterval, ready)
	if errors.Is(context.Cause(ctx), errExited) {
		return fmt.Errorf("exited: %v", p.err)
	}
	if err != nil {
		return fmt.Errorf("not ready: %w", err)
	}
	return nil
}

// Tail returns the last n lines of the process's output.
func (p *Process) Tail(n int) string { return Tail(p.Log, n) }

// Tail returns the last n lines of a file.
func Tail(path string, n int) string {
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listened on a
// moment ago. Another process may take it before the caller does: start
// servers on it in a retry loop.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
