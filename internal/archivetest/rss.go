package archivetest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// RSSInterval is how often an RSSRecorder samples.
const RSSInterval = 20 * time.Millisecond

// RSSRecorder samples the resident set (VmRSS) of the benchmark's own
// process and of the others it was given, from the time it starts to Stop.
type RSSRecorder struct {
	b     *testing.B
	procs []rssProc
	start time.Time
	stop  chan struct{}
	done  sync.WaitGroup
	mu    sync.Mutex
	lines bytes.Buffer
	peak  map[string]int64 // KiB
	cpu0  map[string]float64
	// sampledOnly: the self peak is that of the samples, without
	// getrusage's, which is the process's lifetime peak.
	sampledOnly bool
}

type rssProc struct {
	name string
	pid  int
}

// RecordRSS starts sampling the memory of this process ("self") and of
// others, by name and process id. Stop reports each one's peak as the
// metric <name>-peak-RSS-MiB ("self" as peak-RSS-MiB, with getrusage's
// figure when higher, since it sees peaks between samples), the CPU time
// each used meanwhile as <name>-cpu-s ("self" as cpu-s) and, when
// MGF_BENCH_OUT names a folder, writes the samples to
// MGF_BENCH_OUT/rss/<benchmark>.tsv for the report.
func RecordRSS(b *testing.B, others map[string]int) *RSSRecorder {
	r := &RSSRecorder{b: b, procs: []rssProc{{"self", os.Getpid()}}, start: time.Now(), stop: make(chan struct{}), peak: map[string]int64{}, cpu0: map[string]float64{}}
	for name, pid := range others {
		r.procs = append(r.procs, rssProc{name, pid})
	}
	for _, p := range r.procs {
		r.cpu0[p.name], _ = CPUSeconds(p.pid)
	}
	fmt.Fprintf(&r.lines, "# %s\nms\tprocess\tRSS-KiB\n", b.Name())
	r.sample()
	r.done.Add(1)
	go func() {
		defer r.done.Done()
		t := time.NewTicker(RSSInterval)
		defer t.Stop()
		for {
			select {
			case <-r.stop:
				return
			case <-t.C:
				r.sample()
			}
		}
	}()
	return r
}

// RecordRSSAfterSetup is RecordRSS for a benchmark whose setup, in the
// same process, needs more memory than what it measures (a download whose
// setup generated and uploaded the archive): it first returns the memory
// the setup freed to the operating system (debug.FreeOSMemory), and its
// self peak is that of the samples, taken every RSSInterval from here on,
// without getrusage's, which would be the setup's.
func RecordRSSAfterSetup(b *testing.B, others map[string]int) *RSSRecorder {
	debug.FreeOSMemory()
	r := RecordRSS(b, others)
	r.sampledOnly = true
	return r
}

func (r *RSSRecorder) sample() {
	ms := time.Since(r.start).Milliseconds()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.procs {
		kib, err := VmRSS(p.pid)
		if err != nil {
			continue // the process has ended
		}
		r.peak[p.name] = max(r.peak[p.name], kib)
		fmt.Fprintf(&r.lines, "%d\t%s\t%d\n", ms, p.name, kib)
	}
}

// Stop ends the sampling, reports the peaks and writes the samples.
func (r *RSSRecorder) Stop() {
	close(r.stop)
	r.done.Wait()
	r.sample()
	for _, p := range r.procs {
		prefix := p.name + "-"
		if p.name == "self" {
			prefix = ""
		} else {
			r.b.ReportMetric(float64(r.peak[p.name])/1024, prefix+"peak-RSS-MiB")
		}
		if cpu, err := CPUSeconds(p.pid); err == nil {
			r.b.ReportMetric(cpu-r.cpu0[p.name], prefix+"cpu-s")
		}
	}
	if r.sampledOnly {
		r.b.ReportMetric(float64(r.peak["self"])/1024, "peak-RSS-MiB")
	} else {
		ReportPeakRSS(r.b)
	}
	dir := os.Getenv("MGF_BENCH_OUT")
	if dir == "" {
		return
	}
	name := strings.NewReplacer("/", "_", "=", "-", " ", "_").Replace(r.b.Name())
	p := filepath.Join(dir, "rss", name+".tsv")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.b.Fatal(err)
	}
	if err := os.WriteFile(p, r.lines.Bytes(), 0o644); err != nil {
		r.b.Fatal(err)
	}
}

// VmRSS returns the resident set of process pid in KiB, read from
// /proc/<pid>/status.
func VmRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	if err := s.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// CPUSeconds returns the user and system CPU time process pid has used, in
// seconds, from /proc/<pid>/stat (in clock ticks of 1/100 s, USER_HZ).
func CPUSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command name, which is in parentheses, start
	// with the state (field 3); utime and stime are fields 14 and 15.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	return (utime + stime) / 100, nil
}
