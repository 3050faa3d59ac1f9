package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kubev2v/must-gather-functions/eventing"
	"github.com/kubev2v/must-gather-functions/internal/jsstore"
	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/natsbus"
	"github.com/kubev2v/must-gather-functions/internal/natsserver"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
)

// natsNode is a nats-server that a test stops and starts again on the same
// port and store, as a restarted pod with a persistent volume comes back.
type natsNode struct {
	t    *testing.T
	opts natsserver.Options
	srv  *natsserver.Server
}

// startNATSNode starts a nats-server with opts (a fixed port: one the
// clients find again after a restart) and stops it when the test ends.
func startNATSNode(t *testing.T, opts natsserver.Options) *natsNode {
	t.Helper()
	n := &natsNode{t: t, opts: opts}
	n.start()
	t.Cleanup(func() {
		if n.srv != nil {
			n.srv.Stop()
		}
	})
	return n
}

func (n *natsNode) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.opts.Port) }

// start starts the server again; the port a stopped server held may take a
// moment to be free.
func (n *natsNode) start() {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tries := 0
	err := testenv.Poll(ctx, 100*time.Millisecond, func() error {
		s, err := natsserver.Start(ctx, n.opts)
		n.srv = s
		if err != nil {
			if tries++; tries == 1 || tries%10 == 0 {
				n.t.Logf("start nats-server %s on port %d, try %d: %v", n.opts.Name, n.opts.Port, tries, err)
			}
		}
		return err
	})
	if err != nil {
		n.t.Fatalf("start nats-server %s: %v", n.opts.Name, err)
	}
}

func (n *natsNode) stop() {
	n.srv.Stop()
	n.srv = nil
}

// poster POSTs gatherings one after the other until stopped, retrying a
// POST that is not answered 201 (the API answers 503 while NATS is away),
// and keeps the ids it was given.
type poster struct {
	mu      sync.Mutex
	ids     []uint64
	refused int // POSTs answered with anything but 201, or not at all
	stop    chan struct{}
	done    chan struct{}
}

func startPoster(t *testing.T, base, command string) *poster {
	t.Helper()
	p := &poster{stop: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: 30 * time.Second}
	go func() {
		defer close(p.done)
		pace := time.NewTicker(100 * time.Millisecond)
		defer pace.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-pace.C:
			}
			id, err := postCommand(client, base, command)
			p.mu.Lock()
			if err != nil {
				p.refused++
			} else {
				p.ids = append(p.ids, id)
			}
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() { p.end() })
	return p
}

// count returns how many gatherings were created so far.
func (p *poster) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ids)
}

// end stops posting and returns the ids of the gatherings created.
func (p *poster) end() []uint64 {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.ids)
}

// waitPosted waits until n more gatherings than now were created.
func (p *poster) waitPosted(t *testing.T, n int, within time.Duration) {
	t.Helper()
	want := p.count() + n
	testenv.Eventually(t, within, fmt.Sprintf("%d gatherings to be created", want), func() bool { return p.count() >= want })
}

// canceler cancels every n-th gathering a poster created with DELETE,
// retrying a DELETE that is not answered 200, 202 or 409 (the API answers
// 503 while NATS is away), and keeps the answers.
type canceler struct {
	mu      sync.Mutex
	answers map[uint64]int // by gathering id: 200, 202, or 409 (it had ended)
	failed  []string       // DELETEs not answered so within a minute
	stop    chan struct{}
	done    chan struct{}
}

// startCanceler starts cancelling every n-th gathering p creates; with
// n 0 it cancels none.
func startCanceler(t *testing.T, base string, p *poster, n int) *canceler {
	t.Helper()
	c := &canceler{answers: map[uint64]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	if n == 0 {
		close(c.done)
		return c
	}
	client := &http.Client{Timeout: 30 * time.Second}
	cancelOne := func(id uint64) (int, error) {
		req, err := http.NewRequest(http.MethodDelete, fmt.Sprintf("%s/must-gather/%d", base, id), nil)
		if err != nil {
			return 0, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		switch resp.StatusCode {
		case http.StatusOK, http.StatusAccepted, http.StatusConflict:
			return resp.StatusCode, nil
		}
		return 0, fmt.Errorf("DELETE %d: %s", id, resp.Status)
	}
	go func() {
		defer close(c.done)
		pace := time.NewTicker(100 * time.Millisecond)
		defer pace.Stop()
		next := n - 1 // index in p.ids of the next to cancel
		stopping := false
		var since time.Time // of the first DELETE of the next to cancel
		for {
			p.mu.Lock()
			var id uint64
			if next < len(p.ids) {
				id = p.ids[next]
			}
			p.mu.Unlock()
			if id == 0 && stopping {
				return
			}
			if id != 0 {
				if since.IsZero() {
					since = time.Now()
				}
				code, err := cancelOne(id)
				if err == nil || time.Since(since) > time.Minute {
					c.mu.Lock()
					if err == nil {
						c.answers[id] = code
					} else {
						c.failed = append(c.failed, err.Error())
					}
					c.mu.Unlock()
					next += n
					since = time.Time{}
					continue
				}
			}
			select {
			case <-c.stop:
				stopping = true
			case <-pace.C:
			}
		}
	}()
	t.Cleanup(func() { c.end(t) })
	return c
}

// end cancels the rest of the gatherings the poster, stopped before, created
// that are to be canceled, and returns the answers by gathering id.
func (c *canceler) end(t *testing.T) map[uint64]int {
	t.Helper()
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.failed {
		t.Errorf("not answered within a minute: %s", f)
	}
	c.failed = nil
	return maps.Clone(c.answers)
}

// answerCounts says how many of answers were which HTTP status.
func answerCounts(answers map[uint64]int) string {
	n := map[int]int{}
	for _, code := range answers {
		n[code]++
	}
	var parts []string
	for _, code := range slices.Sorted(maps.Keys(n)) {
		parts = append(parts, fmt.Sprintf("%d: %d", code, n[code]))
	}
	return strings.Join(parts, ", ")
}

// countingCommand is a gathering's command that adds a line to a file named
// after the gathering in dir each time it runs, so that a test counts runs.
// It runs for seconds after that.
func countingCommand(dir, seconds string) string {
	return fmt.Sprintf(`echo run >> %s/$MUST_GATHER_ID; echo gathered; sleep %s`, dir, seconds)
}

// chaosFigures is what a run with outages measured.
type chaosFigures struct {
	gatherings, completed, failed int
	canceled                      int // ended in error with reason canceled, as asked
	lost, stuck, ranTwice         int
	duplicateEvents               int // status events of one gathering and type stored more than once
	missingEvents                 int
}

func (f chaosFigures) String() string {
	return fmt.Sprintf("%d gatherings: %d completed, %d canceled, %d error; lost %d, stuck %d, ran twice %d; events missing %d, duplicate %d",
		f.gatherings, f.completed, f.canceled, f.failed, f.lost, f.stuck, f.ranTwice, f.missingEvents, f.duplicateEvents)
}

// checkNothingLost waits until every gathering the system lists has ended
// and checks that none of those created is lost, none ran twice (runs in
// dir), each completed, and the events stream holds the requested event
// of each and its started and final status events. A gathering in
// canceled, by the answer to its DELETE, ended canceled instead: at once
// when the answer was 200 (and then perhaps without a requested event),
// or, for 202, when its runner stopped it (or it completed, when its
// gatherer finished first).
func checkNothingLost(t *testing.T, s *system, natsURL, runs string, created []uint64, canceled map[uint64]int, within time.Duration) chaosFigures {
	t.Helper()
	var f chaosFigures
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var gs []gathering
	err := testenv.Poll(ctx, 200*time.Millisecond, func() error {
		var err error
		if gs, err = list(s.base); err != nil {
			return err
		}
		open := 0
		for _, g := range gs {
			if g.Status != "completed" && g.Status != "error" {
				open++
			}
		}
		if open > 0 {
			return fmt.Errorf("%d of %d gatherings have not ended", open, len(gs))
		}
		return nil
	})
	byID := map[uint64]gathering{}
	for _, g := range gs {
		byID[g.ID] = g
		if g.Status != "completed" && g.Status != "error" {
			f.stuck++
		}
	}
	if err != nil {
		t.Errorf("within %s: %v", within, err)
	}
	f.gatherings = len(gs)
	for _, id := range created {
		g, ok := byID[id]
		switch {
		case !ok:
			f.lost++
			t.Errorf("gathering %d was created and is not listed; %s", id, whereIs(natsURL, s.base, id))
		case canceled[id] != 0 && g.Status == "error" && g.Reason == "canceled":
			f.canceled++
		case canceled[id] == http.StatusOK:
			f.failed++
			t.Errorf("gathering %d, canceled while new, is %s (reason %q):\n%s", id, g.Status, g.Reason, g.ExecOutput)
		case g.Status == "completed":
			f.completed++
		case g.Status == "error":
			f.failed++
			t.Errorf("gathering %d ended in error:\n%s", id, g.ExecOutput)
		}
	}
	for _, g := range gs {
		b, _ := os.ReadFile(filepath.Join(runs, fmt.Sprint(g.ID)))
		if n := strings.Count(string(b), "run"); n > 1 {
			f.ranTwice++
			t.Errorf("gathering %d ran %d times", g.ID, n)
		}
	}

	requested, statuses := streamEvents(t, natsURL)
	for _, g := range gs {
		id := mustgather.ID(g.ID)
		final := eventing.TypeCompleted
		if g.Status == "error" {
			final = eventing.TypeFailed
		}
		// A POST that stored its gathering while NATS was away leaves its
		// requested event to the reaper, which announces no gathering that
		// was canceled while it was new.
		if requested[id] == 0 && canceled[g.ID] != http.StatusOK {
			f.missingEvents++
			t.Errorf("gathering %d: no requested event in the stream", id)
		}
		for _, typ := range []string{eventing.TypeStarted, final} {
			switch n := statuses[id][typ]; {
			case n == 0 && !(typ == eventing.TypeStarted && g.Status == "error"):
				f.missingEvents++
				t.Errorf("gathering %d (%s): no %s event in the stream", id, g.Status, typ)
			case n > 1:
				f.duplicateEvents += n - 1
			}
		}
	}
	return f
}

// whereIs says where a gathering missing from the list is found: in the
// gatherings bucket, and by id through the API.
func whereIs(natsURL, base string, id uint64) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var b strings.Builder
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return err.Error()
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(ctx, jsstore.DefaultConfig().Bucket)
	if err == nil {
		var e jetstream.KeyValueEntry
		if e, err = kv.Get(ctx, fmt.Sprintf("g.%d", id)); err == nil {
			fmt.Fprintf(&b, "in the bucket at revision %d (%s)", e.Revision(), e.Value())
		}
		if st, serr := kv.Status(ctx); serr == nil {
			fmt.Fprintf(&b, "; bucket last revision %d", st.(*jetstream.KeyValueBucketStatus).StreamInfo().State.LastSeq)
		}
	}
	if err != nil {
		fmt.Fprintf(&b, "not in the bucket: %v", err)
	}
	resp, err := http.Get(fmt.Sprintf("%s/must-gather/%d", base, id))
	if err != nil {
		fmt.Fprintf(&b, "; GET: %v", err)
		return b.String()
	}
	defer resp.Body.Close()
	fmt.Fprintf(&b, "; GET by id: %s", resp.Status)
	return b.String()
}

// streamEvents reads every event of the events stream and counts, per
// gathering, its requested events and its status events by type.
func streamEvents(t *testing.T, natsURL string) (map[mustgather.ID]int, map[mustgather.ID]map[string]int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	js := jetStream(t, natsURL)
	// A cluster that just had a node back may still be electing the
	// stream's leader: ask until it answers.
	var (
		info *jetstream.StreamInfo
		cons jetstream.Consumer
	)
	err := testenv.Poll(ctx, 200*time.Millisecond, func() error {
		stream, err := js.Stream(ctx, natsbus.DefaultConfig().Stream)
		if err != nil {
			return err
		}
		if info, err = stream.Info(ctx); err != nil {
			return err
		}
		cons, err = stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
		return err
	})
	if err != nil {
		t.Fatalf("read the events stream: %v", err)
	}
	requested := map[mustgather.ID]int{}
	statuses := map[mustgather.ID]map[string]int{}
	for read := uint64(0); read < info.State.Msgs; {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			e, err := natsbus.Decode(ctx, &nats.Msg{Subject: msg.Subject(), Header: msg.Headers(), Data: msg.Data()})
			if err != nil {
				t.Errorf("event %s: %v", msg.Subject(), err)
				continue
			}
			if g, err := eventing.ParseRequested(e); err == nil {
				requested[g.ID]++
			} else if u, err := eventing.ParseStatus(e); err == nil {
				if statuses[u.ID] == nil {
					statuses[u.ID] = map[string]int{}
				}
				statuses[u.ID][e.Type()]++
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			t.Fatal(err)
		}
		if n == 0 {
			t.Fatalf("read %d of the %d events in the stream, then none came", read, info.State.Msgs)
		}
		read += uint64(n)
	}
	return requested, statuses
}

func TestNATSRestartedTenTimesMidFlowLosesNoGatheringEventOrStatus(t *testing.T) {
	for _, c := range []restartCase{
		{name: "under the default cap"},
		// Most gatherings wait for the one slot through the restarts.
		{name: "with one gathering running at a time and the others waiting for a slot", maxRunning: "1", soak: true},
		// Gatherings of two seconds, a third of them canceled as they wait
		// for a slot or run.
		{name: "with a third of the gatherings canceled", cancelEvery: 3, soak: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.soak && os.Getenv("MGF_NATS_RESTARTS") == "" {
				t.Skip("set MGF_NATS_RESTARTS (make soak): this case runs only there, to keep make test short")
			}
			natsRestartedTenTimes(t, c)
		})
	}
}

// restartCase is one way to run natsRestartedTenTimes.
type restartCase struct {
	name string
	// maxRunning is RUNNER_MAX_RUNNING, if not empty.
	maxRunning string
	// cancelEvery > 0 cancels every cancelEvery-th gathering created.
	cancelEvery int
	// soak runs the case only in make soak (MGF_NATS_RESTARTS set).
	soak bool
}

// natsRestartedTenTimes restarts NATS ten times while gatherings are
// posted (and some canceled), and checks that nothing was lost and
// nothing stuck.
func natsRestartedTenTimes(t *testing.T, c restartCase) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	node := startNATSNode(t, natsserver.Options{Port: port, StoreDir: t.TempDir()})
	runs := t.TempDir()
	env := map[string]string{
		"NATS_URL": node.url(), "AUTH": "off", "HTTP_ADDRESS": "127.0.0.1:0", "API_POST_RATE": "0",
		"RUNNER_REAP_INTERVAL": minReapInterval.String(), "RUNNER_FINISH_GRACE": "1m",
	}
	if c.maxRunning != "" {
		env["RUNNER_MAX_RUNNING"] = c.maxRunning
	}
	s := start(t, t.TempDir(), env)
	seconds := "0.2"
	if c.cancelEvery > 0 {
		seconds = "2"
	}
	p := startPoster(t, s.base, countingCommand(runs, seconds))
	cn := startCanceler(t, s.base, p, c.cancelEvery)
	const restarts = 10
	var down time.Duration
	for i := range restarts {
		p.waitPosted(t, 3, time.Minute)
		node.stop()
		outage := time.Duration(200+rng.IntN(1300)) * time.Millisecond
		time.Sleep(outage) // the outage itself
		stopped := time.Now()
		node.start()
		down += outage + time.Since(stopped)
		t.Logf("restart %d: NATS away %s", i+1, outage.Round(time.Millisecond))
	}
	p.waitPosted(t, 3, time.Minute)
	created := p.end()
	canceled := cn.end(t)
	f := checkNothingLost(t, s, node.url(), runs, created, canceled, 3*time.Minute)
	asked := ""
	if len(canceled) > 0 {
		asked = fmt.Sprintf(", %d cancels answered (%s)", len(canceled), answerCounts(canceled))
	}
	t.Logf("%d NATS restarts (away %s in all), %d POSTs refused meanwhile%s; %s", restarts, down.Round(time.Millisecond), p.refused, asked, f)
	if f.lost+f.stuck+f.ranTwice+f.missingEvents+f.failed > 0 {
		t.Errorf("figures: %s", f)
	}
}

// startNATSCluster starts a JetStream cluster of n nodes on loopback, each
// with its own store, routed to each other, and waits until JetStream
// answers.
func startNATSCluster(t *testing.T, n int) []*natsNode {
	t.Helper()
	clientPorts, routePorts := make([]int, n), make([]int, n)
	var routes []string
	for i := range n {
		var err error
		if clientPorts[i], err = testenv.FreePort(); err != nil {
			t.Fatal(err)
		}
		if routePorts[i], err = testenv.FreePort(); err != nil {
			t.Fatal(err)
		}
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", routePorts[i]))
	}
	nodes := make([]*natsNode, n)
	var wg sync.WaitGroup
	for i := range n {
		opts := natsserver.Options{
			Name: fmt.Sprintf("node-%d", i+1), Port: clientPorts[i], StoreDir: t.TempDir(),
			Cluster: &natsserver.Cluster{Name: "must-gather-test", Port: routePorts[i], Routes: routes},
		}
		// A node is ready for clients only once it has found the others.
		wg.Go(func() { nodes[i] = startNATSNode(t, opts) })
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	js := jetStream(t, clusterURL(nodes))
	testenv.Eventually(t, time.Minute, "the cluster's JetStream to answer", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err == nil
	})
	return nodes
}

// clusterURL is the NATS_URL of every node.
func clusterURL(nodes []*natsNode) string {
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.url())
	}
	return strings.Join(urls, ",")
}

// waitReplicasCurrent waits until every replica of every stream is in
// step with its leader, so that a node that came back holds all again.
func waitReplicasCurrent(t *testing.T, natsURL string, within time.Duration) {
	t.Helper()
	js := jetStream(t, natsURL)
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	err := testenv.Poll(ctx, 100*time.Millisecond, func() error {
		// A request the cluster drops while it elects a leader is asked
		// again on the next turn.
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		names := js.StreamNames(ctx)
		for name := range names.Name() {
			s, err := js.Stream(ctx, name)
			if err != nil {
				return err
			}
			info := s.CachedInfo()
			if info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != info.Config.Replicas-1 {
				return fmt.Errorf("stream %s: cluster %+v", name, info.Cluster)
			}
			for _, r := range info.Cluster.Replicas {
				if !r.Current || r.Offline {
					return fmt.Errorf("stream %s: replica %s is behind or offline", name, r.Name)
				}
			}
		}
		return names.Err()
	})
	if err != nil {
		t.Fatalf("every stream's replicas to be current: %v", err)
	}
}

func TestAThreeNodeNATSClusterLosingOneNodeAtATimeLosesNoGatheringEventOrStatus(t *testing.T) {
	nodes := startNATSCluster(t, 3)
	url := clusterURL(nodes)
	runs := t.TempDir()
	s := start(t, t.TempDir(), map[string]string{
		"NATS_URL": url, "NATS_REPLICAS": "3", "AUTH": "off", "HTTP_ADDRESS": "127.0.0.1:0", "API_POST_RATE": "0",
		// The default: time enough to record a final status while the
		// cluster elects new leaders.
		"RUNNER_REAP_INTERVAL": minReapInterval.String(), "RUNNER_FINISH_GRACE": "1m",
	})
	p := startPoster(t, s.base, countingCommand(runs, "0.2"))
	p.waitPosted(t, 5, time.Minute)
	// One node away, back, and then another.
	for _, i := range []int{0, 2} {
		nodes[i].stop()
		t.Logf("node %d stopped", i+1)
		p.waitPosted(t, 5, 2*time.Minute)
		nodes[i].start()
		waitReplicasCurrent(t, url, 2*time.Minute)
		t.Logf("node %d back and in step", i+1)
		p.waitPosted(t, 3, time.Minute)
	}
	created := p.end()
	f := checkNothingLost(t, s, url, runs, created, nil, 3*time.Minute)
	t.Logf("3 nodes, 2 stopped one at a time, %d POSTs refused meanwhile; %s", p.refused, f)
	if f.lost+f.stuck+f.ranTwice+f.missingEvents+f.failed > 0 {
		t.Errorf("figures: %s", f)
	}
	// Every stream and bucket has three copies.
	js := jetStream(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	infos := js.ListStreams(ctx)
	for info := range infos.Info() {
		if info.Config.Replicas != 3 {
			t.Errorf("stream %s has %d replicas, want 3", info.Config.Name, info.Config.Replicas)
		}
	}
	if err := infos.Err(); err != nil {
		t.Error(err)
	}
}
