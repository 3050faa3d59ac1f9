package archivetest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
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
}

type rssProc struct {
	name string
	pid  int
}

// RecordRSS starts sampling the memory of this process ("self") and of
// others, by name and process id. Stop reports each one's peak as the
// metric <name>-peak-RSS-MiB ("self" as peak-RSS-MiB, with getrusage's
// figure when higher, since it sees peaks between samples) and, when
// MGF_BENCH_OUT names a folder, writes the samples to
// MGF_BENCH_OUT/rss/<benchmark>.tsv for the report.
func RecordRSS(b *testing.B, others map[string]int) *RSSRecorder {
	r := &RSSRecorder{b: b, procs: []rssProc{{"self", os.Getpid()}}, start: time.Now(), stop: make(chan struct{}), peak: map[string]int64{}}
	for name, pid := range others {
		r.procs = append(r.procs, rssProc{name, pid})
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
		if p.name == "self" {
			continue
		}
		r.b.ReportMetric(float64(r.peak[p.name])/1024, p.name+"-peak-RSS-MiB")
	}
	ReportPeakRSS(r.b)
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
