package archivetest

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Content is what the files of a generated tree hold.
type Content string

const (
	// Text is output that compresses as a real must-gather does: pod logs,
	// YAML manifests and JSON, with the ids, addresses, times and figures
	// that make real output vary.
	Text Content = "text"
	// Random is pseudo-random bytes, which do not compress at all.
	Random Content = "random"
)

// WriteTree writes about size bytes of generated must-gather output under
// dir and returns the paths of its files in the order written. The tree is
// the same for the same content and size. Files are streamed to disk, so
// nothing of the tree is held in memory.
func WriteTree(tb testing.TB, dir string, content Content, size int64) []string {
	tb.Helper()
	g := newTextGen(1)
	var paths []string
	for i := 0; size > 0; i++ {
		var name string
		var n int64
		var fill func(w io.Writer, n int64) error
		switch {
		case content == Random:
			name, n = fmt.Sprintf("namespaces/ns-%d/logs/file-%04d.bin", i%8, i), 4<<20
			seed := [32]byte{byte(i), byte(i >> 8)}
			fill = func(w io.Writer, n int64) error { _, err := io.CopyN(w, rand.NewChaCha8(seed), n); return err }
		case i%8 < 5:
			ns := namespaces[i%len(namespaces)]
			name, n = fmt.Sprintf("namespaces/%s/pods/%s-%d/%s/%s/logs/current.log", ns, podNames[i%len(podNames)], i, containers[i%len(containers)], containers[i%len(containers)]), 1<<20
			fill = g.fill(g.logLine)
		case i%8 < 7:
			ns := namespaces[i%len(namespaces)]
			kind := kinds[i%len(kinds)]
			name, n = fmt.Sprintf("namespaces/%s/%s/%s-%d.yaml", ns, kind.group, kind.plural, i), 192<<10
			fill = g.fill(func(b []byte) []byte { return g.objectYAML(b, kind.kind, ns) })
		default:
			ns := namespaces[i%len(namespaces)]
			name, n = fmt.Sprintf("namespaces/%s/core/events-%d.json", ns, i), 256<<10
			fill = g.fill(func(b []byte) []byte { return g.eventJSON(b, ns) })
		}
		n = min(n, size)
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := writeFile(p, n, fill); err != nil {
			tb.Fatal(err)
		}
		paths = append(paths, p)
		size -= n
	}
	return paths
}

func writeFile(path string, n int64, fill func(io.Writer, int64) error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 256<<10)
	err = fill(w, n)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

var (
	namespaces = []string{"openshift-mtv", "openshift-cnv", "konveyor-forklift", "vm-migration-1", "vm-migration-2", "openshift-storage"}
	podNames   = []string{"forklift-controller", "forklift-api", "virt-launcher-vm", "importer-prime", "cdi-upload", "virt-handler", "forklift-validation"}
	containers = []string{"main", "inventory", "compute", "importer", "virt-handler"}
	kinds      = []struct{ kind, group, plural string }{
		{"Pod", "core", "pods"}, {"Plan", "forklift.konveyor.io", "plans"}, {"Migration", "forklift.konveyor.io", "migrations"},
		{"VirtualMachine", "kubevirt.io", "virtualmachines"}, {"DataVolume", "cdi.kubevirt.io", "datavolumes"},
		{"PersistentVolumeClaim", "core", "persistentvolumeclaims"},
	}
	levels   = []string{"info", "info", "info", "info", "debug", "debug", "error", "warn"}
	loggers  = []string{"plan|", "migration|", "provider|", "vm|", "inventory|", "controller-runtime.webhook", "networkmap|", "storagemap|"}
	messages = []string{
		"Reconcile started.", "Reconcile ended.", "Step started.", "Step completed.", "Migration [RUN]",
		"Copying disk.", "Disk transfer progress.", "Updating plan status.", "Watch event received.",
		"Snapshot created.", "Waiting for the importer pod.", "Conversion pod created.", "VM powered off.",
		"Failed to get the VM: the server could not find the requested resource.", "Requeue after 3s.",
	}
	phases     = []string{"Started", "PreHook", "StorePowerState", "PowerOffSource", "CreateDataVolumes", "CopyDisks", "ConvertGuest", "CreateVM", "PostHook", "Completed"}
	reasons    = []string{"Scheduled", "Pulled", "Created", "Started", "Killing", "BackOff", "FailedMount", "SuccessfulCreate", "ImportSucceeded"}
	nodes      = []string{"master-0", "master-1", "master-2", "worker-0", "worker-1", "worker-2", "worker-3"}
	conditions = []string{"Ready", "Succeeded", "Executing", "Validated", "Initialized", "ContainersReady"}
)

// textGen makes must-gather-like text from a seeded generator.
type textGen struct {
	rng     *rand.Rand
	t       time.Time
	digests []string
	uids    []string // of the plans, migrations and VMs that recur
}

func newTextGen(seed uint64) *textGen {
	g := &textGen{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), t: time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)}
	for range 6 {
		g.digests = append(g.digests, string(g.hex(nil, 64)))
	}
	for range 64 {
		g.uids = append(g.uids, string(g.uid(nil)))
	}
	return g
}

// fill returns a writer of n bytes of the records appendRecord makes.
func (g *textGen) fill(appendRecord func([]byte) []byte) func(io.Writer, int64) error {
	return func(w io.Writer, n int64) error {
		buf := make([]byte, 0, 64<<10)
		for n > 0 {
			buf = buf[:0]
			for len(buf) < 32<<10 {
				buf = appendRecord(buf)
			}
			m := min(int64(len(buf)), n)
			if _, err := w.Write(buf[:m]); err != nil {
				return err
			}
			n -= m
		}
		return nil
	}
}

func pick[T any](g *textGen, s []T) T { return s[g.rng.IntN(len(s))] }

func (g *textGen) hex(b []byte, n int) []byte {
	const digits = "0123456789abcdef"
	for range n {
		b = append(b, digits[g.rng.IntN(16)])
	}
	return b
}

func (g *textGen) uid(b []byte) []byte {
	b = g.hex(b, 8)
	for _, n := range []int{4, 4, 4, 12} {
		b = g.hex(append(b, '-'), n)
	}
	return b
}

func (g *textGen) now() time.Time {
	g.t = g.t.Add(time.Duration(g.rng.IntN(50_000)) * time.Microsecond)
	return g.t
}

func (g *textGen) logLine(b []byte) []byte {
	b = g.now().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, '\t')
	b = append(b, pick(g, levels)...)
	b = append(b, '\t')
	b = append(b, pick(g, loggers)...)
	b = append(b, pick(g, g.uids)[:5]...)
	b = append(b, '\t')
	b = append(b, pick(g, messages)...)
	b = append(b, "\t{\"plan\": {\"name\":\"plan-"...)
	b = strconv.AppendInt(b, int64(g.rng.IntN(40)), 10)
	b = append(b, "\",\"namespace\":\""...)
	b = append(b, pick(g, namespaces)...)
	b = append(b, "\"}, \"vm\": \"vm-"...)
	b = strconv.AppendInt(b, int64(g.rng.IntN(3000)), 10)
	b = append(b, "\", \"phase\": \""...)
	b = append(b, pick(g, phases)...)
	b = append(b, "\", \"migration\": \""...)
	b = append(b, pick(g, g.uids)...)
	b = append(b, "\", \"progress\": "...)
	b = strconv.AppendInt(b, int64(g.rng.IntN(100_000)), 10)
	b = append(b, ", \"duration\": \""...)
	b = strconv.AppendFloat(b, g.rng.Float64()*500, 'f', 3, 64)
	return append(b, "ms\"}\n"...)
}

func (g *textGen) objectYAML(b []byte, kind, ns string) []byte {
	name := "vm-" + strconv.Itoa(g.rng.IntN(3000))
	ts := g.now().Format(time.RFC3339)
	b = append(b, "---\napiVersion: v1\nkind: "...)
	b = append(b, kind...)
	b = append(b, "\nmetadata:\n  name: "...)
	b = append(b, name...)
	b = append(b, "\n  namespace: "...)
	b = append(b, ns...)
	b = append(b, "\n  uid: "...)
	b = g.uid(b)
	b = append(b, "\n  resourceVersion: \""...)
	b = strconv.AppendInt(b, int64(g.rng.IntN(90_000_000)), 10)
	b = append(b, "\"\n  creationTimestamp: \""...)
	b = append(b, ts...)
	b = append(b, "\"\n  labels:\n    app.kubernetes.io/part-of: forklift\n    kubevirt.io/domain: "...)
	b = append(b, name...)
	b = append(b, "\n    plan: "...)
	b = append(b, pick(g, g.uids)...)
	b = append(b, "\n  annotations:\n    forklift.konveyor.io/disk-source: '[datastore1] "...)
	b = append(b, name...)
	b = append(b, '/')
	b = append(b, name...)
	b = append(b, ".vmdk'\n  ownerReferences:\n  - apiVersion: forklift.konveyor.io/v1beta1\n    kind: Plan\n    name: plan-"...)
	b = strconv.AppendInt(b, int64(g.rng.IntN(40)), 10)
	b = append(b, "\n    uid: "...)
	b = append(b, pick(g, g.uids)...)
	b = append(b, "\nspec:\n  nodeName: "...)
	b = append(b, pick(g, nodes)...)
	b = append(b, "\n  containers:\n  - name: "...)
	b = append(b, pick(g, containers)...)
	b = append(b, "\n    image: registry.redhat.io/migration-toolkit-virtualization/mtv-controller-rhel9@sha256:"...)
	b = append(b, pick(g, g.digests)...)
	b = append(b, "\n    resources:\n      requests:\n        cpu: "...)
	b = strconv.AppendInt(b, int64(100*(1+g.rng.IntN(8))), 10)
	b = append(b, "m\n        memory: "...)
	b = strconv.AppendInt(b, int64(1+g.rng.IntN(16)), 10)
	b = append(b, "Gi\nstatus:\n  phase: "...)
	b = append(b, pick(g, phases)...)
	b = append(b, "\n  podIP: 10.128."...)
	b = strconv.AppendInt(b, int64(g.rng.IntN(256)), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(g.rng.IntN(256)), 10)
	b = append(b, "\n  conditions:\n"...)
	for range 1 + g.rng.IntN(4) {
		b = append(b, "  - type: "...)
		b = append(b, pick(g, conditions)...)
		b = append(b, "\n    status: \"True\"\n    lastTransitionTime: \""...)
		b = append(b, g.now().Format(time.RFC3339)...)
		b = append(b, "\"\n"...)
	}
	return b
}

func (g *textGen) eventJSON(b []byte, ns string) []byte {
	b = append(b, "{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"Event\",\n  \"metadata\": {\n    \"name\": \"vm-"...)
	b = strconv.AppendInt(b, int64(g.rng.IntN(3000)), 10)
	b = append(b, '.')
	b = g.hex(b, 16)
	b = append(b, "\",\n    \"namespace\": \""...)
	b = append(b, ns...)
	b = append(b, "\",\n    \"uid\": \""...)
	b = g.uid(b)
	b = append(b, "\"\n  },\n  \"reason\": \""...)
	b = append(b, pick(g, reasons)...)
	b = append(b, "\",\n  \"message\": \""...)
	b = append(b, pick(g, messages)...)
	b = append(b, "\",\n  \"source\": {\"component\": \"kubelet\", \"host\": \""...)
	b = append(b, pick(g, nodes)...)
	b = append(b, "\"},\n  \"count\": "...)
	b = strconv.AppendInt(b, int64(1+g.rng.IntN(20)), 10)
	b = append(b, ",\n  \"lastTimestamp\": \""...)
	b = append(b, g.now().Format(time.RFC3339)...)
	return append(b, "\"\n}\n"...)
}

// Tree returns the files of a tree of content and about size bytes made by
// WriteTree. With MGF_BENCH_OUT set, trees are kept in
// MGF_BENCH_OUT/trees so that the benchmarks of one run, each in a process
// of its own, write each tree once; otherwise the tree is temporary.
func Tree(tb testing.TB, content Content, size int64) []string {
	tb.Helper()
	out := os.Getenv("MGF_BENCH_OUT")
	if out == "" {
		return WriteTree(tb, tb.TempDir(), content, size)
	}
	dir := filepath.Join(out, "trees", fmt.Sprintf("%s-%d", content, size))
	list := dir + ".files"
	if b, err := os.ReadFile(list); err == nil {
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	if err := os.RemoveAll(dir); err != nil {
		tb.Fatal(err)
	}
	paths := WriteTree(tb, dir, content, size)
	if err := os.WriteFile(list, []byte(strings.Join(paths, "\n")+"\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
	return paths
}

// Bytes is the total size of the files at paths.
func Bytes(tb testing.TB, paths []string) int64 {
	tb.Helper()
	var n int64
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			tb.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

// TreeRoot is the folder that holds the files Tree returned.
func TreeRoot(paths []string) string {
	// Every file is under <root>/namespaces/.
	p := paths[0]
	for filepath.Base(p) != "namespaces" {
		p = filepath.Dir(p)
	}
	return filepath.Dir(p)
}

// BenchSizes is the tree sizes in MiB the archive benchmarks run with:
// MGF_BENCH_ARCHIVE_MIB, a comma-separated list, or 256.
func BenchSizes(tb testing.TB) []int64 {
	v := os.Getenv("MGF_BENCH_ARCHIVE_MIB")
	if v == "" {
		return []int64{256}
	}
	var sizes []int64
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
		if err != nil || n <= 0 {
			tb.Fatalf("MGF_BENCH_ARCHIVE_MIB=%q: want sizes in MiB separated by commas", v)
		}
		sizes = append(sizes, n)
	}
	return sizes
}
