package redact_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/kubev2v/must-gather-functions/internal/archive"
	"github.com/kubev2v/must-gather-functions/internal/archivetest"
	"github.com/kubev2v/must-gather-functions/internal/redact"
)

// The benchmark tree: 256 MiB of text as a gathering holds it, 240 files
// of 1 MiB (redacted as documents) and one of 16 MiB (masked in place).
const (
	benchSmallFiles = 240
	benchSmallSize  = 1 << 20
	benchLargeSize  = 16 << 20
)

// BenchmarkRedactStream streams the same 256 MiB text-like tree (logs and
// YAML manifests with a Secret, a token or a password now and then) into a
// tar.gz with redaction off and on. The archive goes to io.Discard, so the
// figures are the writer's own (tar, gzip and redaction), not storage's.
// Run each side in its own process for its peak RSS:
//
//	go test -run '^$' -bench 'RedactStream/content=text/size=256MiB/off' -benchtime 2x ./internal/redact
//	go test -run '^$' -bench 'RedactStream/content=text/size=256MiB/on' -benchtime 2x ./internal/redact
//
// make bench runs them so (tools/benchreport).
func BenchmarkRedactStream(b *testing.B) {
	if testing.Short() {
		b.Skip("writes and streams 256 MiB")
	}
	dir := textTree(b)
	total := int64(benchSmallFiles*benchSmallSize + benchLargeSize)
	for _, on := range []bool{false, true} {
		b.Run("content=text/size=256MiB/"+map[bool]string{false: "off", true: "on"}[on], func(b *testing.B) {
			r, err := redact.New(redact.DefaultConfig())
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(total)
			var rep *redact.Report
			cpu := cpuTime(b)
			for b.Loop() {
				rep = redact.NewReport()
				w := archive.NewWriter(io.Discard)
				if on {
					w.SetFilter(r.Filter(rep))
				}
				if err := w.AddTree(context.Background(), dir, "must-gather"); err != nil {
					b.Fatal(err)
				}
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
			}
			// CPU seconds per GiB: on a shared machine a steadier figure
			// than the wall clock's MB/s.
			b.ReportMetric((cpuTime(b)-cpu)/float64(b.N)/(float64(total)/(1<<30)), "cpu-s/GiB")
			if on {
				s := rep.Summary()
				b.ReportMetric(float64(s.Matches), "matches")
				if s.Matches == 0 {
					b.Fatal("nothing redacted")
				}
			}
			archivetest.ReportPeakRSS(b)
		})
	}
}

// cpuTime returns the user and system CPU seconds of the process so far.
func cpuTime(b *testing.B) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// textTree writes the benchmark tree into a temporary directory.
func textTree(b *testing.B) string {
	dir := b.TempDir()
	write := func(name string, size int, seed uint64) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		f, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		w := bufio.NewWriter(f)
		writeText(w, size, seed)
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}
	for i := range benchSmallFiles {
		ext := map[bool]string{true: "yaml", false: "log"}[i%3 == 0]
		write(fmt.Sprintf("namespaces/ns-%d/file-%03d.%s", i%8, i, ext), benchSmallSize, uint64(i))
	}
	write("namespaces/openshift-mtv/logs/forklift-controller/current.log", benchLargeSize, 999)
	return dir
}

// writeText writes exactly size bytes of log lines and manifests.
func writeText(w *bufio.Writer, size int, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 42))
	n := 0
	for n < size {
		var line string
		switch k := rng.IntN(200); {
		case k == 0:
			line = fmt.Sprintf("apiVersion: v1\ndata:\n  password: %x\n  user: YWRtaW4=\nkind: Secret\nmetadata:\n  name: creds-%d\n---\n", rng.Uint64(), rng.IntN(1000))
		case k == 1:
			line = fmt.Sprintf("%s DEBUG GET /api headers=\"Authorization: Bearer sha256~%x%x\"\n", stamp(rng), rng.Uint64(), rng.Uint64())
		case k == 2:
			line = fmt.Sprintf("%s INFO connecting to postgres://forklift:%x@db:5432/inventory\n", stamp(rng), rng.Uint32())
		case k < 60:
			line = fmt.Sprintf("apiVersion: forklift.konveyor.io/v1beta1\nkind: Migration\nmetadata:\n  name: mig-%x\n  namespace: openshift-mtv\nspec:\n  plan:\n    name: plan-%d\nstatus:\n  vms:\n  - id: vm-%d\n    phase: CopyDisks\n    progress: {completed: %d, total: 100}\n",
				rng.Uint32(), rng.IntN(100), rng.IntN(10000), rng.IntN(100))
		default:
			line = fmt.Sprintf("%s INFO controller reconciled plan=openshift-mtv/plan-%d vm=vm-%d disk=%x duration=%dms key=%s\n",
				stamp(rng), rng.IntN(100), rng.IntN(10000), rng.Uint64(), rng.IntN(5000), []string{"ready", "copy", "convert"}[rng.IntN(3)])
		}
		if n+len(line) > size {
			line = line[:size-n]
		}
		w.WriteString(line)
		n += len(line)
	}
}

func stamp(rng *rand.Rand) string {
	return fmt.Sprintf("2026-11-30T%02d:%02d:%02d.%06dZ", rng.IntN(24), rng.IntN(60), rng.IntN(60), rng.IntN(1000000))
}

// BenchmarkRedactBytes redacts one 1 MiB file of the benchmark tree as a
// document, without tar or gzip.
func BenchmarkRedactBytes(b *testing.B) {
	var buf bytesBuffer
	w := bufio.NewWriter(&buf)
	writeText(w, benchSmallSize, 7)
	w.Flush()
	r, err := redact.New(redact.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		r.Bytes("f.log", buf)
	}
}

type bytesBuffer []byte

func (p *bytesBuffer) Write(b []byte) (int, error) { *p = append(*p, b...); return len(b), nil }
