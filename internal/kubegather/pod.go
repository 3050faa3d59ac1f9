package kubegather

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// podRun is one image's pod.
type podRun struct {
	r      *run
	image  string
	node   string // the node a node-selector gathering runs it on
	name   string
	prefix string // "[<pod>]"
	dir    string // source dir in the pod

	// last is the latest state of the pod seen.
	lastMu sync.Mutex
	last   *corev1.Pod

	logMu   sync.Mutex
	gathLog bytes.Buffer // the gather container's log for gather.logs
	cut     int64        // bytes of it not kept

	// replayed is how many lines of the gather's log the job's log
	// showed before a runner re-attached: they go into gather.logs only.
	replayed int
}

// runPod runs t's pod to its end and copies its output. ctx lasts longer
// than work, which ends when the job must stop.
func (r *run) runPod(ctx, work context.Context, t target) error {
	image := t.image
	mg := r.job.Gathering
	command := strings.TrimSpace(mg.Command)
	if command == "" {
		command = r.g.cfg.DefaultCommand
	}
	dir := r.sourceDir()
	spec := podSpec{image: image, command: command, sourceDir: dir, nodeName: mg.NodeName, affinity: r.place.affinity(),
		hostNetwork: mg.HostNetwork, opts: r.opts}
	if t.node != "" {
		spec.nodeName = t.node
	}
	pod, err := r.createPod(work, r.g.newPod(spec, r.labels()))
	if err != nil {
		if work.Err() != nil {
			r.interrupt()
			r.out.printf(gatheringPrefix, "pod for plug-in image %s not created: %v", image, context.Cause(work))
			return nil
		}
		r.out.printf(gatheringPrefix, "pod for plug-in image %s not created: %v", image, err)
		return fmt.Errorf("create pod for image %s: %w", image, err)
	}
	p := &podRun{r: r, image: image, node: t.node, name: pod.Name, prefix: "[" + pod.Name + "]", dir: dir, last: pod}
	log := r.log.With("pod", pod.Name, "image", image)
	log.Info("pod created", "node", t.node)
	if t.node != "" {
		r.out.printf(p.prefix, "pod: %s on node: %s for plug-in image %s created", pod.Name, t.node, image)
	} else {
		r.out.printf(p.prefix, "pod for plug-in image %s created", image)
	}

	return p.gatherAndCopy(ctx, work, log)
}

// sourceDir is where the gathering's pods write.
func (r *run) sourceDir() string {
	if dir := r.job.Gathering.SourceDir; strings.TrimSpace(dir) != "" {
		return dir
	}
	return r.g.cfg.DefaultSourceDir
}

// gatherAndCopy follows the pod's gather to its end and copies its output.
func (p *podRun) gatherAndCopy(ctx, work context.Context, log *slog.Logger) error {
	gatherErr := p.checkTargeted(p.waitAndFollow(ctx, work))
	if gatherErr != nil {
		p.r.out.printf(p.prefix, "%v", gatherErr)
	}
	copyErr := p.copyOutput(ctx)
	if copyErr != nil {
		p.r.out.printf(p.prefix, "gather output not copied: %v", copyErr)
		copyErr = fmt.Errorf("pod %s: copy output: %w", p.name, copyErr)
	}
	if gatherErr != nil || copyErr != nil {
		log.Warn("pod failed", "gather", gatherErr, "copy", copyErr)
	}
	return joinErrors([]error{gatherErr, copyErr})
}

func (p *podRun) setLast(pod *corev1.Pod) {
	p.lastMu.Lock()
	p.last = pod
	p.lastMu.Unlock()
}

func (p *podRun) lastPod() *corev1.Pod {
	p.lastMu.Lock()
	defer p.lastMu.Unlock()
	return p.last
}

// waitAndFollow waits for the gather to start, follows its log and waits
// for it to end. It returns the gather's failure; it returns nil when work
// ended first, having noted the interruption. ctx outlives work: it reads
// the pod once more after a stop.
func (p *podRun) waitAndFollow(ctx, work context.Context) error {
	err := p.waitStart(work)
	if err != nil && work.Err() == nil {
		return err
	}
	var terminated *corev1.ContainerStateTerminated
	if work.Err() == nil {
		terminated, err = p.followToEnd(work)
	}
	if terminated == nil && work.Err() != nil {
		// A stop and the pod's last change race: the gather may have
		// started, or ended, after the watch last told of the pod. What
		// the log says and what is copied follow the pod, not the watch.
		p.refresh(ctx)
		st := containerStatus(p.lastPod(), gatherContainer)
		switch {
		case st != nil && st.State.Terminated != nil:
			terminated = st.State.Terminated
		case st != nil && st.State.Running != nil:
			p.r.interrupt()
			p.r.out.printf(p.prefix, "gather stopped before it finished: %v", context.Cause(work))
			return nil
		default:
			p.r.interrupt()
			p.r.out.printf(p.prefix, "gather did not start: %v", context.Cause(work))
			return nil
		}
	}
	switch {
	case terminated == nil:
		return err
	case terminated.ExitCode == 0:
		p.r.out.printf(p.prefix, "gather completed")
		return nil
	}
	return fmt.Errorf("pod %s: gather for image %s exited with code %d%s", p.name, p.image, terminated.ExitCode, describeTermination(terminated))
}

// waitStart waits until the gather container runs or has ended, and
// returns why it never will, or work's cause.
func (p *podRun) waitStart(work context.Context) error {
	cfg := p.r.g.cfg
	var pullFailingSince time.Time
	return p.r.g.watchPod(work, p.r.ns, p.name, func(pod *corev1.Pod) (bool, error) {
		p.setLast(pod)
		if err := podFailed(pod); err != nil {
			return true, err
		}
		st := containerStatus(pod, gatherContainer)
		if st == nil {
			return false, nil
		}
		switch {
		case st.State.Running != nil || st.State.Terminated != nil:
			return true, nil
		case st.State.Waiting != nil && pullFails(st.State.Waiting.Reason):
			w := st.State.Waiting
			// Real time, not g.now: this measures a wait.
			now := time.Now()
			if pullFailingSince.IsZero() {
				pullFailingSince = now
			}
			if fatalWaiting[w.Reason] || now.Sub(pullFailingSince) >= cfg.ImagePullGrace {
				return true, fmt.Errorf("pod %s: image %s cannot be pulled (gave up after %s): %s: %s",
					p.name, p.image, cfg.ImagePullGrace, w.Reason, w.Message)
			}
		default:
			pullFailingSince = time.Time{}
		}
		return false, nil
	})
}

// followToEnd follows the gather's log until the gather container has
// terminated and the log had LogDrain to reach its end, or until work
// ends. It returns the termination, or nil and why the pod cannot end
// well.
func (p *podRun) followToEnd(work context.Context) (*corev1.ContainerStateTerminated, error) {
	followCtx, stopFollowing := context.WithCancel(work)
	defer stopFollowing()
	gatherDone := make(chan struct{})
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		p.follow(followCtx, gatherDone)
	}()

	var terminated *corev1.ContainerStateTerminated
	err := p.r.g.watchPod(work, p.r.ns, p.name, func(pod *corev1.Pod) (bool, error) {
		p.setLast(pod)
		if st := containerStatus(pod, gatherContainer); st != nil && st.State.Terminated != nil {
			terminated = st.State.Terminated
			return true, nil
		}
		return false, podFailed(pod)
	})
	close(gatherDone)
	if terminated != nil {
		select {
		case <-followed:
		case <-time.After(p.r.g.cfg.LogDrain):
			p.r.out.printf(p.prefix, "log still open %s after the gather ended; not following it further", p.r.g.cfg.LogDrain)
		case <-work.Done():
		}
	}
	stopFollowing()
	<-followed
	return terminated, err
}

// refresh reads the pod's current state into last. On failure last stays
// what the watch saw.
func (p *podRun) refresh(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, p.r.g.cfg.CleanupTimeout)
	defer cancel()
	pod, err := p.r.g.kube.CoreV1().Pods(p.r.ns).Get(ctx, p.name, metav1.GetOptions{})
	if err != nil {
		p.r.log.Warn("read pod after the stop; going by the last state seen", "pod", p.name, "err", err)
		return
	}
	p.setLast(pod)
}

func describeTermination(t *corev1.ContainerStateTerminated) string {
	var parts []string
	if t.Reason != "" && t.Reason != "Error" && t.Reason != "Completed" {
		parts = append(parts, t.Reason)
	}
	if msg := strings.TrimSpace(t.Message); msg != "" {
		// The message falls back to the log's tail: keep its last line.
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		parts = append(parts, msg)
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ": ") + ")"
}

// Waiting reasons of a container whose image does not come; the fatal
// ones never will.
var (
	pullWaiting = map[string]bool{
		"ErrImagePull": true, "ImagePullBackOff": true, "RegistryUnavailable": true,
		"SignatureValidationFailed": true, "CreateContainerConfigError": true, "CreateContainerError": true,
	}
	fatalWaiting = map[string]bool{"InvalidImageName": true, "ErrImageNeverPull": true}
)

func pullFails(reason string) bool { return pullWaiting[reason] || fatalWaiting[reason] }

// podFailed returns why pod can no longer gather, or nil.
func podFailed(pod *corev1.Pod) error {
	if pod.DeletionTimestamp != nil {
		return fmt.Errorf("pod %s is being deleted", pod.Name)
	}
	if pod.Status.Phase == corev1.PodFailed {
		msg := strings.TrimSpace(pod.Status.Reason + ": " + pod.Status.Message)
		return fmt.Errorf("pod %s failed: %s", pod.Name, strings.Trim(msg, ": "))
	}
	return nil
}

// maxLine caps a line of the gather's log; longer ones are split.
const maxLine = 64 << 10

// follow copies the gather container's log into the job's log, line by
// line, until ctx ends or gatherDone is closed and a stream opened after it
// has been read. A stream that ends while the gather still runs (the API
// server cuts long requests) is opened again and the lines already seen
// are skipped; that the stream ended says nothing about the gather.
func (p *podRun) follow(ctx context.Context, gatherDone <-chan struct{}) {
	seen := 0
	for {
		// Once the gather has ended, its log is whole: one more read is
		// the last one needed.
		last := isClosed(gatherDone)
		rc, err := p.r.g.logs.Follow(ctx, p.r.ns, p.name, gatherContainer)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			p.r.log.Debug("follow log", "pod", p.name, "err", err)
		} else {
			seen = p.copyLines(rc, seen)
			rc.Close()
		}
		if last || !sleep(ctx, p.r.g.cfg.PollInterval/5) {
			return
		}
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// copyLines writes the lines of r after the first skip ones, and returns
// how many lines r had.
func (p *podRun) copyLines(r io.Reader, skip int) int {
	br := bufio.NewReaderSize(r, maxLine)
	n := 0
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			n++
			if n > skip {
				text := strings.TrimRight(string(line), "\r\n")
				if n > p.replayed {
					p.r.out.line(p.prefix, "POD", text)
				}
				p.keepLog(text)
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return n
		}
	}
}

// keepLog keeps a line of the gather's log for gather.logs, up to the
// limit.
func (p *podRun) keepLog(line string) {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	if p.gathLog.Len()+len(line)+1 > p.r.g.cfg.GatherLogLimit {
		p.cut += int64(len(line) + 1)
		return
	}
	p.gathLog.WriteString(line)
	p.gathLog.WriteByte('\n')
}

func (p *podRun) gatherLog() []byte {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	b := bytes.Clone(p.gathLog.Bytes())
	if p.cut > 0 {
		b = fmt.Appendf(b, "[must-gather-functions] log cut: %d more bytes were not kept\n", p.cut)
	}
	return b
}

// sleep waits for d or ctx, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
