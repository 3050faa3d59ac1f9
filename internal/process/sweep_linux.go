package process

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// procAttr puts the command in its own process group and has the kernel
// kill it when the thread that started it ends.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// run runs cmd from a goroutine locked to its OS thread until cmd ends.
// Linux sends the parent-death signal when the thread that forked the
// child ends, not the process, and Go ends a thread when a goroutine that
// locked it returns without unlocking (golang/go#27505). Unlocked, the
// forking thread could go on to serve such a goroutine and take the
// command down with it.
func run(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		errc <- cmd.Run()
	}()
	return <-errc
}

// selfOwner returns this process as an owner.
var selfOwner = sync.OnceValues(func() (owner, error) {
	pid := os.Getpid()
	st, err := readStat(pid)
	if err != nil {
		return owner{}, fmt.Errorf("identify this process: %w", err)
	}
	return owner{pid: pid, start: st.start, ns: pidNamespace()}, nil
})

// pidNamespace returns the inode of this process's pid namespace, or 0
// when the kernel does not say.
func pidNamespace() uint64 {
	link, err := os.Readlink("/proc/self/ns/pid") // "pid:[4026531836]"
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(link, "pid:["), "]"), 10, 64)
	return n
}

func parseOwner(s string) (owner, bool) {
	f := strings.Split(s, "-")
	if len(f) != 3 {
		return owner{}, false
	}
	pid, err1 := strconv.Atoi(f[0])
	start, err2 := strconv.ParseUint(f[1], 10, 64)
	ns, err3 := strconv.ParseUint(f[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || pid <= 0 {
		return owner{}, false
	}
	return owner{pid: pid, start: start, ns: ns}, true
}

// ownedFolder matches the names folderPattern makes.
var ownedFolder = regexp.MustCompile(`^must-gather-[0-9]+-owner-([0-9]+-[0-9]+-[0-9]+)-[^-]*$`)

// procStat holds the fields of /proc/<pid>/stat that sweeping needs.
type procStat struct {
	state byte
	pgrp  int
	start uint64
}

// gone reports whether the process has ended: a zombie runs nothing.
func (s procStat) gone() bool { return s.state == 'Z' || s.state == 'X' }

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	// The command name, field 2, is in parentheses and may hold anything.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("read /proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("read /proc/%d/stat: %d fields", pid, len(f)+2)
	}
	pgrp, err1 := strconv.Atoi(f[2])                // field 5
	start, err2 := strconv.ParseUint(f[19], 10, 64) // field 22
	if err1 != nil || err2 != nil {
		return procStat{}, fmt.Errorf("read /proc/%d/stat: %w", pid, errors.Join(err1, err2))
	}
	return procStat{state: f[0][0], pgrp: pgrp, start: start}, nil
}

// marker returns the owner a process's environment names, if any. A
// process of another user, or one that ended, has no readable environment.
func marker(pid int) (owner, bool) {
	env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return owner{}, false
	}
	prefix := []byte(ownerEnv + "=")
	for len(env) > 0 {
		var kv []byte
		kv, env, _ = bytes.Cut(env, []byte{0})
		if v, ok := bytes.CutPrefix(kv, prefix); ok {
			return parseOwner(string(v))
		}
	}
	return owner{}, false
}

type sweeper struct {
	self  owner
	log   *slog.Logger
	alive map[owner]bool
}

func sweep(ctx context.Context, dir string, log *slog.Logger) error {
	self, err := selfOwner()
	if err != nil {
		return fmt.Errorf("sweep leftovers: %w", err)
	}
	s := &sweeper{self: self, log: log, alive: map[owner]bool{}}
	// Processes first: they may still be writing into their folders.
	perr := s.killProcesses(ctx)
	ferr := s.removeFolders(ctx, dir)
	return errors.Join(perr, ferr)
}

// ownerAlive reports whether o still runs. Whatever cannot be judged (an
// owner in another pid namespace, a /proc that does not answer) counts as
// alive: a leftover kept is better than a live gathering killed.
func (s *sweeper) ownerAlive(o owner) bool {
	if o == s.self || o.ns != s.self.ns {
		return true
	}
	if v, ok := s.alive[o]; ok {
		return v
	}
	st, err := readStat(o.pid)
	v := true
	switch {
	case errors.Is(err, fs.ErrNotExist):
		v = false
	case err != nil:
	case st.gone() || st.start != o.start:
		v = false
	}
	s.alive[o] = v
	return v
}

type leftover struct {
	pid   int
	stat  procStat
	owner owner
}

// scan lists the processes whose owner is gone, and the process groups
// whose every running member is such a process.
func (s *sweeper) scan() ([]leftover, map[int]bool, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, nil, fmt.Errorf("list processes: %w", err)
	}
	var found []leftover
	groups := map[int]bool{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == s.self.pid {
			continue
		}
		st, err := readStat(pid)
		if err != nil || st.gone() {
			continue
		}
		o, marked := marker(pid)
		left := marked && !s.ownerAlive(o)
		if all, seen := groups[st.pgrp]; !seen || all {
			groups[st.pgrp] = left
		}
		if left {
			found = append(found, leftover{pid: pid, stat: st, owner: o})
		}
	}
	return found, groups, nil
}

// killProcesses kills the leftovers with SIGKILL, their whole process
// group when the group holds nothing else, and looks again until a look
// finds nothing new, as a leftover may fork while it is being killed. It
// returns once they are gone.
func (s *sweeper) killProcesses(ctx context.Context) error {
	killed := map[int]uint64{} // pid -> start time
	ownGroup := syscall.Getpgrp()
	for range 10 {
		if err := ctx.Err(); err != nil {
			return err
		}
		found, groups, err := s.scan()
		if err != nil {
			return fmt.Errorf("sweep leftovers: %w", err)
		}
		news := 0
		for _, l := range found {
			if start, ok := killed[l.pid]; ok && start == l.stat.start {
				continue
			}
			news++
			if g := l.stat.pgrp; groups[g] && g > 1 && g != ownGroup {
				_ = syscall.Kill(-g, syscall.SIGKILL)
				delete(groups, g)
			}
			kill(l.pid, l.stat.start)
			killed[l.pid] = l.stat.start
			s.log.Info("killed a process left by a runner that is gone", "pid", l.pid, "owner", l.owner.String())
		}
		if news == 0 {
			break
		}
	}
	return s.waitGone(ctx, killed)
}

// kill sends SIGKILL to pid if it is still the process that started at
// start. os.FindProcess holds a pidfd where the kernel has them, so the
// signal cannot reach a process that reused the pid after the check.
func kill(pid int, start uint64) {
	p, err := os.FindProcess(pid)
	if err != nil {
		return
	}
	defer p.Release()
	if st, err := readStat(pid); err != nil || st.start != start || st.gone() {
		return
	}
	_ = p.Signal(syscall.SIGKILL)
}

// waitGone waits, a few seconds at most, for the killed processes to end.
func (s *sweeper) waitGone(ctx context.Context, killed map[int]uint64) error {
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		var left []int
		for pid, start := range killed {
			if st, err := readStat(pid); err == nil && st.start == start && !st.gone() {
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sweep leftovers: processes %v still run after SIGKILL", left)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// removeFolders removes this user's output folders in dir whose owner is
// gone.
func (s *sweeper) removeFolders(ctx context.Context, dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("sweep leftovers: %w", err)
	}
	var errs []error
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		m := ownedFolder.FindStringSubmatch(e.Name())
		if m == nil || !e.IsDir() {
			continue
		}
		o, ok := parseOwner(m[1])
		if !ok || s.ownerAlive(o) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		// Another user's folder in a shared temp dir is theirs to clean.
		if fi, err := os.Lstat(path); err != nil || fi.Sys().(*syscall.Stat_t).Uid != uint32(os.Getuid()) {
			continue
		}
		if err := removeAll(path); err != nil {
			errs = append(errs, fmt.Errorf("sweep leftovers: %w", err))
			continue
		}
		s.log.Info("removed a folder left by a runner that is gone", "folder", path, "owner", o.String())
	}
	return errors.Join(errs...)
}
