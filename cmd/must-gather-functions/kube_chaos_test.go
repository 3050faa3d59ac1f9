package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/nats-io/nats.go/jetstream"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubev2v/must-gather-functions/internal/jsstore"
	"github.com/kubev2v/must-gather-functions/internal/kubegather"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
	"github.com/kubev2v/must-gather-functions/internal/testenv/kube"
)

// killPoint is where in a gathering a runner is killed.
type killPoint int

const (
	beforeClaim  killPoint = iota // just after the POST: the runner may not have claimed it yet
	duringGather                  // its pod runs and the runner follows its log
	duringUpload                  // its gather ended; the archive's bytes are on their way to S3
	afterUpload                   // S3 stored the archive; the runner has not heard so, nor recorded a final status
)

var killPoints = []killPoint{beforeClaim, duringGather, duringUpload, afterUpload}

func (p killPoint) String() string {
	return [...]string{"before the claim", "during the gather", "during the upload", "after the upload, before the final status"}[p]
}

// s3Tap stands between the runners and S3: it counts, per gathering, the
// uploads S3 completed, and holds one gathering's upload at a kill point
// until the runner that sent it is gone.
type s3Tap struct {
	endpoint string // host:port of the tap
	// done ends the holds: a held request whose body the server has not
	// read does not learn that its client died.
	done chan struct{}

	mu      sync.Mutex
	uploads map[uint64]int
	holds   map[uint64]*s3Hold
}

type s3Hold struct {
	at      killPoint // duringUpload or afterUpload
	reached chan struct{}
}

func startS3Tap(t *testing.T, s3Endpoint string) *s3Tap {
	t.Helper()
	tap := &s3Tap{uploads: map[uint64]int{}, holds: map[uint64]*s3Hold{}, done: make(chan struct{})}
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: s3Endpoint})
	// The request keeps the Host it was signed for.
	proxy.ModifyResponse = func(resp *http.Response) error {
		r := resp.Request
		id, ok := uploadOf(r)
		if !ok || resp.StatusCode/100 != 2 || !completesUpload(r) {
			return nil
		}
		tap.mu.Lock()
		tap.uploads[id]++
		h := tap.take(id, afterUpload)
		tap.mu.Unlock()
		if h != nil {
			close(h.reached)
			select { // until the runner is killed
			case <-r.Context().Done():
			case <-tap.done:
			}
			return errors.New("held until its runner was killed")
		}
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The archive's bytes: a part, or the whole object. (minio-go
		// begins the multipart upload as the gathering starts, and sends
		// the only part of a small archive once it has all of it.)
		if id, ok := uploadOf(r); ok && r.Method == http.MethodPut {
			tap.mu.Lock()
			h := tap.take(id, duringUpload)
			tap.mu.Unlock()
			if h != nil {
				close(h.reached)
				select {
				case <-r.Context().Done():
				case <-tap.done:
				}
				return
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		close(tap.done)
		srv.Close()
	})
	tap.endpoint = strings.TrimPrefix(srv.URL, "http://")
	return tap
}

// uploadOf tells the gathering whose archive a request uploads, if it does:
// a PUT of the object or of a part, or a POST that begins or completes a
// multipart upload, under gatherings/<id>/ of the bucket (path style).
func uploadOf(r *http.Request) (uint64, bool) {
	if r.Method != http.MethodPut && r.Method != http.MethodPost {
		return 0, false
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if len(parts) < 4 || parts[1] != "gatherings" {
		return 0, false
	}
	id, err := strconv.ParseUint(parts[2], 10, 64)
	return id, err == nil
}

// completesUpload reports whether a request that S3 answered with success
// made an object: a PUT of a whole object, or the completion of a multipart
// upload.
func completesUpload(r *http.Request) bool {
	q := r.URL.Query()
	return (r.Method == http.MethodPut && !q.Has("uploadId")) || (r.Method == http.MethodPost && q.Has("uploadId"))
}

// take returns the hold of gathering id at point, once.
func (tap *s3Tap) take(id uint64, at killPoint) *s3Hold {
	h := tap.holds[id]
	if h == nil || h.at != at {
		return nil
	}
	delete(tap.holds, id)
	return h
}

// hold arms a hold of gathering id's upload at point; the channel is
// closed when the upload reaches it.
func (tap *s3Tap) hold(id uint64, at killPoint) <-chan struct{} {
	tap.mu.Lock()
	defer tap.mu.Unlock()
	h := &s3Hold{at: at, reached: make(chan struct{})}
	tap.holds[id] = h
	return h.reached
}

func (tap *s3Tap) completed(id uint64) int {
	tap.mu.Lock()
	defer tap.mu.Unlock()
	return tap.uploads[id]
}

// kubeChaosFigures is what a run of kills with the Kubernetes gatherer
// measured.
type kubeChaosFigures struct {
	kills                         map[killPoint]int
	gatherings, completed, failed int
	lost, stuck, podsTwice        int
	reuploads, orphans            int // uploads made again after a kill; archives left with no record pointing at them
	slowestTakeover               time.Duration
	failedAt                      map[killPoint]int // gatherings that ended in error, by the point of the kill aimed at them
}

func (f kubeChaosFigures) String() string {
	var kills []string
	for _, p := range killPoints {
		kills = append(kills, fmt.Sprintf("%d %s", f.kills[p], p))
	}
	var failed []string
	for _, p := range killPoints {
		if f.failedAt[p] > 0 {
			failed = append(failed, fmt.Sprintf("%d killed %s", f.failedAt[p], p))
		}
	}
	return fmt.Sprintf("kills: %s; %d gatherings: %d completed, %d error (%s); lost %d, stuck %d, pods created twice %d; "+
		"uploads made again %d, archives without a record %d; slowest take-over %s after a kill",
		strings.Join(kills, ", "), f.gatherings, f.completed, f.failed, strings.Join(failed, ", "),
		f.lost, f.stuck, f.podsTwice, f.reuploads, f.orphans, f.slowestTakeover.Round(time.Millisecond))
}

// kubeCrashRun kills the runner process with SIGKILL kills times, in turn
// before the claim, during the gather, during the upload and after the
// upload before the final status, with the Kubernetes gatherer on a real
// API server, and checks that every gathering ends completed or error, that
// none stays inprogress beyond its lease, and that none runs twice: a pod
// created once (counted with a watch), an upload made again only after a
// kill.
func kubeCrashRun(t *testing.T, kills int) kubeChaosFigures {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	k := kube.Start(t)
	client, err := kubernetes.NewForConfig(k.Admin)
	if err != nil {
		t.Fatal(err)
	}
	pods := countPods(t, client)
	m := testenv.MinIO(t)
	tap := startS3Tap(t, m.Endpoint)
	nats := testenv.NATS(t)
	bucket := testenv.Name("kubekill")
	const leaseTTL = 3 * time.Second
	shared := map[string]string{
		"NATS_URL": nats.ClientURL(), "AUTH": "off", "HTTP_ADDRESS": "127.0.0.1:0", "API_POST_RATE": "0",
		"GATHERER": "kube", "KUBECONFIG": k.Kubeconfig, "MUST_GATHER_IMAGE_PULL_GRACE": "1s",
		"ARCHIVE_STORE": "s3", "S3_ENDPOINT": tap.endpoint, "S3_ACCESS_KEY": m.AccessKey,
		"S3_SECRET_KEY": m.SecretKey, "S3_BUCKET": bucket, "S3_USE_TLS": "false",
		"LEASE_TTL": leaseTTL.String(), "RUNNER_REAP_INTERVAL": minReapInterval.String(),
		// The test ends the gathers of earlier kills late.
		"RUNNER_CONCURRENCY": "64",
	}
	with := func(fns string) map[string]string { return functionsEnv(shared, fns) }
	api := start(t, t.TempDir(), with("api,recorder"))
	// Two runners, as Knative may run: one is killed while the other
	// takes over what the dead one held once its lease lapses.
	runners := []*child{launchChild(t, with("runner")), launchChild(t, with("runner"))}
	ctx := context.Background()
	js, err := jetstream.New(testenv.Conn(t, nats))
	if err != nil {
		t.Fatal(err)
	}
	var leases jetstream.KeyValue
	testenv.Eventually(t, time.Minute, "the leases bucket", func() bool {
		leases, err = js.KeyValue(ctx, jsstore.DefaultConfig().LeaseBucket)
		return err == nil
	})
	// holder returns the pid of the runner that holds gathering id's lease
	// (a holder is host/pid/random), or 0.
	holder := func(id uint64) int {
		e, err := leases.Get(ctx, fmt.Sprint(id))
		if err != nil {
			return 0
		}
		parts := strings.Split(string(e.Value()), "/")
		if len(parts) < 3 {
			return 0
		}
		pid, _ := strconv.Atoi(parts[len(parts)-2])
		return pid
	}

	f := kubeChaosFigures{kills: map[killPoint]int{}, failedAt: map[killPoint]int{}}
	var (
		ids    []uint64
		open   []uint64                 // gatherings whose gather the test has not ended yet
		target = map[uint64]killPoint{} // the point each gathering that a kill aimed at was at
		lived  = map[uint64]int{}       // the kills of the runner that held it each gathering lived through
		checks sync.WaitGroup
		mu     sync.Mutex // f.stuck, f.slowestTakeover
	)
	post := func() uint64 {
		g := api.post(t, "application/json", strings.NewReader(`{"command": "gather", "timeout": "5m"}`))
		ids = append(ids, g.ID)
		return g.ID
	}
	// finish ends the gather of each of ids whose pod runs, with a file
	// the archive must hold, and returns the others that have not ended.
	finish := func(ids []uint64) []uint64 {
		var left []uint64
		gs := byID(t, api.base)
		for _, id := range ids {
			if g := gs[id]; g.Status == "completed" || g.Status == "error" {
				continue
			}
			p := gatherPod(t, client, id)
			if p == nil {
				left = append(left, id)
				continue
			}
			fill(t, k.PodDir(p.Namespace, p.Name), map[string]string{"result.txt": fmt.Sprintf("gathered %d\n", id)})
			k.FinishGather(t, p.Namespace, p.Name, 0)
		}
		return left
	}

	for i := range kills {
		point := killPoints[(i+rng.IntN(len(killPoints)))%len(killPoints)]
		if i < len(killPoints) {
			point = killPoints[i] // every point at least once
		}
		open = finish(open)
		id := post()
		switch point {
		case beforeClaim:
			time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond) // a random point before or around the claim
			open = append(open, id)
		case duringGather:
			line := fmt.Sprintf("gathering %d is under way", id)
			testenv.Eventually(t, time.Minute, fmt.Sprintf("gathering %d's pod to run", id), func() bool {
				return gatherPod(t, client, id) != nil
			})
			p := gatherPod(t, client, id)
			k.AppendLogs(t, p.Namespace, p.Name, "gather", line+"\n")
			testenv.Eventually(t, time.Minute, "exec-output to follow the gather's log", func() bool {
				g, _ := api.get(t, fmt.Sprint(id))
				return strings.Contains(g.ExecOutput, line)
			})
			open = append(open, id)
		case duringUpload, afterUpload:
			reached := tap.hold(id, point)
			testenv.Eventually(t, time.Minute, fmt.Sprintf("gathering %d's pod to run", id), func() bool {
				return gatherPod(t, client, id) != nil
			})
			if left := finish([]uint64{id}); len(left) > 0 {
				t.Fatalf("gathering %d: its gather could not be ended", id)
			}
			select {
			case <-reached:
			case <-time.After(time.Minute):
				t.Fatalf("gathering %d: the upload did not reach %s", id, point)
			}
		}
		target[id] = point
		// The runner to kill: the one that holds the gathering, past the
		// claim.
		victim := rng.IntN(len(runners))
		if point != beforeClaim {
			pid := holder(id)
			victim = slices.IndexFunc(runners, func(c *child) bool { return c.Pid() == pid })
			if victim < 0 {
				t.Fatalf("gathering %d: its lease is held by pid %d, no runner of the test", id, pid)
			}
		}
		pid := runners[victim].Pid()
		var held []uint64
		reattached := map[uint64]int{}
		for _, g := range byID(t, api.base) {
			if g.Status == "inprogress" && holder(g.ID) == pid {
				held = append(held, g.ID)
				full, _ := api.get(t, fmt.Sprint(g.ID)) // a list leaves a long exec-output out
				reattached[g.ID] = strings.Count(full.ExecOutput, "re-attached to")
				lived[g.ID]++
			}
		}
		runners[victim].kill()
		killed := time.Now()
		t.Logf("kill %d %s: gathering %d; the runner held %v", i+1, point, id, held)
		f.kills[point]++
		runners[victim] = launchChild(t, with("runner"))

		// What the runner held is taken over (or ends) within the lease
		// and a reap interval, and the time the other runner's take-over
		// calls take on a loaded machine.
		checks.Go(func() {
			within := leaseTTL + minReapInterval + 15*time.Second
			cctx, cancel := context.WithTimeout(ctx, within)
			defer cancel()
			left := slices.Clone(held)
			for len(left) > 0 {
				if cctx.Err() != nil {
					mu.Lock()
					f.stuck += len(left)
					mu.Unlock()
					t.Errorf("kill %d (%s): gatherings %v neither taken over nor ended within %s", i+1, point, left, within)
					return
				}
				left = slices.DeleteFunc(left, func(id uint64) bool {
					g, err := getGathering(api.base, id)
					return err == nil && (g.Status == "completed" || g.Status == "error" || strings.Count(g.ExecOutput, "re-attached to") > reattached[id])
				})
				if len(left) == 0 {
					break
				}
				select {
				case <-cctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
			}
			mu.Lock()
			f.slowestTakeover = max(f.slowestTakeover, time.Since(killed))
			mu.Unlock()
		})
	}
	// The gathers still under way end; every gathering ends.
	testenv.Eventually(t, 3*time.Minute, "every gathering to end", func() bool {
		open = finish(open)
		gs := byID(t, api.base)
		for _, id := range ids {
			if g := gs[id]; g.Status != "completed" && g.Status != "error" {
				return false
			}
		}
		return true
	})
	checks.Wait()
	for _, r := range runners {
		r.stop(t)
	}

	s3, err := minio.New(m.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(m.AccessKey, m.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	f.gatherings = len(ids)
	for _, id := range ids {
		g, code := api.get(t, fmt.Sprint(id))
		if code != http.StatusOK {
			f.lost++
			t.Errorf("gathering %d was created and is not listed", id)
			continue
		}
		uploads := tap.completed(id)
		f.reuploads += max(uploads-1, 0)
		if uploads > 1+lived[id] {
			t.Errorf("gathering %d uploaded %d times, having lived through %d kills", id, uploads, lived[id])
		}
		switch n := pods.created(id); {
		case n > 1:
			f.podsTwice++
			t.Errorf("gathering %d (%s): %d pods created", id, g.Status, n)
		case n == 0 && g.Status == "completed":
			t.Errorf("gathering %d completed with no pod created", id)
		}
		var objects []string
		for o := range s3.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: fmt.Sprintf("gatherings/%d/", id), Recursive: true}) {
			if o.Err != nil {
				t.Fatal(o.Err)
			}
			objects = append(objects, o.Key)
		}
		switch g.Status {
		case "completed":
			f.completed++
			if result := resultOf(t, api, g); result != fmt.Sprintf("gathered %d\n", id) {
				t.Errorf("gathering %d: result.txt %q in its archive", id, result)
			}
		case "error":
			f.failed++
			p, aimed := target[id]
			if aimed {
				f.failedAt[p]++
			}
			// A runner killed from the gather to the final status leaves
			// the pod to re-attach to (its namespace goes once the archive
			// is stored); before the claim there may be nothing yet. A
			// gathering whose runner was killed again later, at a point
			// of another gathering, may have been past its upload then.
			if (aimed && p != beforeClaim && lived[id] == 1) || !strings.Contains(g.ExecOutput, "the runner stopped before the gathering finished") {
				t.Errorf("gathering %d (killed %s: %v; %d kills of its runner) ended in error:\n%s", id, p, aimed, lived[id], lastLines(g.ExecOutput, 4))
			} else {
				t.Logf("gathering %d (killed %s: %v; %d kills of its runner) ended in error, archive %q:\n%s", id, p, aimed, lived[id], g.ArchiveName, lastLines(g.ExecOutput, 2))
			}
			if g.ArchiveName == "" && len(objects) > 0 {
				f.orphans++
				t.Errorf("gathering %d (error, no archive) left objects %v", id, objects)
			}
		}
	}
	t.Logf("%d kills of the runner with the Kubernetes gatherer: %s", kills, f)
	if f.lost+f.stuck+f.podsTwice+f.orphans > 0 {
		t.Errorf("figures: %s", f)
	}
	return f
}

// getGathering is GET /must-gather/{id}, for a goroutine of a test.
func getGathering(base string, id uint64) (gathering, error) {
	var g gathering
	resp, err := http.Get(fmt.Sprintf("%s/must-gather/%d", base, id))
	if err != nil {
		return g, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return g, fmt.Errorf("GET gathering %d: %s", id, resp.Status)
	}
	return g, json.NewDecoder(resp.Body).Decode(&g)
}

// byID lists the gatherings by id.
func byID(t *testing.T, base string) map[uint64]gathering {
	t.Helper()
	gs, err := list(base)
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[uint64]gathering, len(gs))
	for _, g := range gs {
		m[g.ID] = g
	}
	return m
}

// gatherPod returns gathering id's pod whose gather container runs, or nil.
func gatherPod(t *testing.T, client kubernetes.Interface, id uint64) *corev1.Pod {
	t.Helper()
	list, err := client.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{LabelSelector: kubegather.LabelGathering + "=" + fmt.Sprint(id)})
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range list.Items {
		if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
			continue
		}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.Name == "gather" && cs.State.Running != nil {
				return &list.Items[i]
			}
		}
	}
	return nil
}

// resultOf returns result.txt of a completed gathering's archive.
func resultOf(t *testing.T, s *system, g gathering) string {
	t.Helper()
	for name, content := range s.download(t, g) {
		if strings.HasSuffix(name, "/result.txt") {
			return content
		}
	}
	return ""
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func TestARunnerKilledAtRandomPointsOfKubernetesGatheringsLosesNoneLeavesNoneStuckAndCreatesNoPodTwice(t *testing.T) {
	kubeCrashRun(t, 20)
}

// TestSoakKubeKills is the long run of kills with the Kubernetes gatherer
// of `make soak`; MGF_SOAK_KILLS sets how many kills.
func TestSoakKubeKills(t *testing.T) {
	kubeCrashRun(t, soakKills(t))
}
