// Package kubegather runs a gathering on a Kubernetes or OpenShift cluster
// the way `oc adm must-gather` does, and streams what it gathers straight
// into the job's archive.
//
// For each gathering it creates a temporary namespace (privileged for pod
// security) and a ClusterRoleBinding of cluster-admin to that namespace's
// default ServiceAccount, owned by the namespace. It then runs one pod per
// image, at most MaxParallel at once, placed as oc places its pods: on a
// control-plane node if it can, never on a node that is not Ready or is
// unreachable (see placement). Each pod has two containers that share
// an emptyDir at the source dir: "gather" runs the command, "copy" only
// sleeps so that the output can be read after the gather has ended. The
// gather container's log is followed into the job's log as it is written,
// lines prefixed "[<pod>] POD" as oc does; warning events of the pods show up
// there too. The end of a gather is read from the pod's container statuses,
// never from the end of the log stream. The output is then streamed out of
// the copy container with `tar cf -` over exec into the archive, under a
// directory named after the image, as in oc's dest-dir; nothing touches
// local disk.
//
// When the job is stopped (timeout or shutdown) the log is no longer
// followed, what the pods wrote so far is still copied, and the error
// returned wraps the cause. The namespace and the binding are deleted on
// every path with a context of their own. Objects carry labels and a
// leftover-after annotation so that Sweep can delete those that a crashed
// runner left behind.
package kubegather

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// Labels and annotations on the objects a Gatherer creates. Sweep finds
// leftovers by them.
const (
	// LabelManagedBy carries ManagedBy on every object.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedBy is the value of LabelManagedBy.
	ManagedBy = "must-gather-functions"
	// LabelGathering carries the gathering's id.
	LabelGathering = "must-gather-functions.kubev2v.io/gathering"
	// LabelOwner carries Config.Owner.
	LabelOwner = "must-gather-functions.kubev2v.io/owner"
	// AnnotationLeftoverAfter holds the time (RFC 3339) after which the
	// object is a leftover that Sweep deletes: its creation plus the
	// gathering's timeout plus Config.LeftoverGrace.
	AnnotationLeftoverAfter = "must-gather-functions.kubev2v.io/leftover-after"
)

// Container names in a gather pod, as in oc.
const (
	gatherContainer = "gather"
	copyContainer   = "copy"
)

// Config holds a Gatherer's settings. Zero values take the defaults that
// DefaultConfig returns.
type Config struct {
	// NamespacePrefix starts the generated name of each gathering's
	// namespace.
	NamespacePrefix string
	// DefaultImage runs when a gathering names neither image nor
	// image-stream and the cluster records no must-gather image of an
	// installed Forklift (see Gatherer.defaultImage).
	DefaultImage string
	// DefaultCommand runs when a gathering has no command.
	DefaultCommand string
	// DefaultSourceDir is where the gather writes when a gathering has no
	// source-dir.
	DefaultSourceDir string
	// Owner is the value of LabelOwner; Sweep only deletes objects with
	// the same owner. It must be a valid label value.
	Owner string
	// NodeSelector is added to the node selector of every pod that the
	// scheduler places; a gathering's node-name or node-selector pins its
	// pods instead.
	NodeSelector map[string]string
	// MaxParallel is how many pods of one gathering run at once.
	MaxParallel int
	// VolumePercentage: when the output volume is fuller than this, the
	// gather is stopped and what it wrote is still copied, as oc's
	// --volume-percentage. 100 turns the check off.
	VolumePercentage int
	// DefaultTimeout is the timeout of a gathering without a valid one; it
	// only sets the leftover-after time.
	DefaultTimeout time.Duration
	// ImagePullGrace is how long an image may fail to pull before its pod
	// fails, rather than waiting for the whole timeout.
	ImagePullGrace time.Duration
	// LeftoverGrace is added to a gathering's timeout to make the
	// leftover-after time.
	LeftoverGrace time.Duration
	// AdmissionRetry is how long a pod that admission refuses, or admits
	// under a restricted SCC, is created again, with backoff: the time a
	// new ClusterRoleBinding may take to reach admission.
	AdmissionRetry time.Duration
	// CleanupTimeout bounds the deletion of a gathering's objects.
	CleanupTimeout time.Duration
	// LogDrain is how long the log may still flow after the gather
	// container has terminated.
	LogDrain time.Duration
	// PollInterval is how often a pod's state is looked at again without
	// news from the watch, and the pause before a watch or log stream is
	// opened again.
	PollInterval time.Duration
	// GatherLogLimit caps the gather.logs file kept per image, in bytes.
	GatherLogLimit int
	// CopyAttempts is how many times an image's copy stream is opened in
	// all when it breaks off (see podRun.copyOutput).
	CopyAttempts int
	// AllowedImages, when not empty, are the patterns of the images a
	// gathering may run (mustgather.Policy.AllowsImage). The API checks a
	// request's image and image stream name; the image an image stream
	// resolves to, and the installed Forklift's image, are known only
	// here, and are checked here.
	AllowedImages []string
}

// DefaultConfig returns the defaults documented in the README.
func DefaultConfig() Config {
	return Config{
		NamespacePrefix:  "openshift-must-gather-",
		DefaultImage:     "quay.io/kubev2v/forklift-must-gather:latest",
		DefaultCommand:   "/usr/bin/gather",
		DefaultSourceDir: "/must-gather/",
		Owner:            ManagedBy,
		MaxParallel:      4,
		VolumePercentage: 70,
		DefaultTimeout:   mustgather.DefaultTimeout,
		ImagePullGrace:   2 * time.Minute,
		LeftoverGrace:    15 * time.Minute,
		AdmissionRetry:   2 * time.Minute,
		CleanupTimeout:   time.Minute,
		LogDrain:         10 * time.Second,
		PollInterval:     5 * time.Second,
		GatherLogLimit:   8 << 20,
		CopyAttempts:     4,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	set := func(v *string, def string) {
		if *v == "" {
			*v = def
		}
	}
	set(&c.NamespacePrefix, d.NamespacePrefix)
	set(&c.DefaultImage, d.DefaultImage)
	set(&c.DefaultCommand, d.DefaultCommand)
	set(&c.DefaultSourceDir, d.DefaultSourceDir)
	set(&c.Owner, d.Owner)
	setInt := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	setInt(&c.MaxParallel, d.MaxParallel)
	setInt(&c.VolumePercentage, d.VolumePercentage)
	setInt(&c.GatherLogLimit, d.GatherLogLimit)
	setInt(&c.CopyAttempts, d.CopyAttempts)
	setDur := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	setDur(&c.DefaultTimeout, d.DefaultTimeout)
	setDur(&c.ImagePullGrace, d.ImagePullGrace)
	setDur(&c.LeftoverGrace, d.LeftoverGrace)
	setDur(&c.AdmissionRetry, d.AdmissionRetry)
	setDur(&c.CleanupTimeout, d.CleanupTimeout)
	setDur(&c.LogDrain, d.LogDrain)
	setDur(&c.PollInterval, d.PollInterval)
	return c
}

// Gatherer runs gatherings on one cluster. It implements mustgather.Gatherer.
type Gatherer struct {
	kube kubernetes.Interface
	dyn  dynamic.Interface
	exec Executor
	logs LogFollower
	cfg  Config
	log  *slog.Logger
	now  func() time.Time
}

var _ mustgather.Gatherer = (*Gatherer)(nil)

// New returns a Gatherer that works with the given clients. dyn is only
// used to resolve image streams and may be nil on clusters without them.
func New(c kubernetes.Interface, dyn dynamic.Interface, exec Executor, logs LogFollower, cfg Config, log *slog.Logger) *Gatherer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Gatherer{kube: c, dyn: dyn, exec: exec, logs: logs, cfg: cfg.withDefaults(), log: log, now: time.Now}
}

// PodOptions are settings of a gathering's pods beyond image and command.
type PodOptions struct {
	// Since is a duration such as 2h; it reaches the image as
	// MUST_GATHER_SINCE.
	Since string
	// SinceTime is an RFC 3339 time; it reaches the image as
	// MUST_GATHER_SINCE_TIME.
	SinceTime string
}

// podOptions returns the pod options of g, whose since and since-time
// Request.Validate has checked: since is written as oc writes it.
func podOptions(g mustgather.Gathering) PodOptions {
	o := PodOptions{Since: g.Since, SinceTime: g.SinceTime}
	if d, err := time.ParseDuration(o.Since); err == nil {
		o.Since = d.String()
	}
	return o
}

// Gather implements mustgather.Gatherer. The gathering's since and
// since-time become the pod options.
func (g *Gatherer) Gather(ctx context.Context, job mustgather.Job) error {
	r := &run{
		g:    g,
		job:  job,
		opts: podOptions(job.Gathering),
		log:  g.log.With("gathering", job.Gathering.ID),
		out:  &lineWriter{w: job.Log, now: g.now},
		dirs: map[string]int{},
	}
	return r.gather(ctx)
}

// gatheringPrefix starts the lines about the gathering as a whole, as oc's
// own lines do.
const gatheringPrefix = "[must-gather      ]"

// run is one gathering.
type run struct {
	g    *Gatherer
	job  mustgather.Job
	opts PodOptions
	log  *slog.Logger
	out  *lineWriter

	ns      string
	binding string
	place   placement

	// archiveMu serializes the writers of the archive, which is not safe
	// for concurrent use; dirs, under it, counts the directory names used.
	archiveMu sync.Mutex
	dirs      map[string]int

	interruptedMu sync.Mutex
	interrupted   bool // Stop cut a gather short or kept one from starting

	podCreated sync.Once // see markPodCreated
}

func (r *run) gather(ctx context.Context) error {
	work, stopped := r.workUntilStop(ctx)
	defer stopped()

	report := func(format string, args ...any) { r.out.printf(gatheringPrefix, format, args...) }
	images, reason, err := r.g.resolveImages(work, r.job.Gathering, report)
	if err != nil {
		return r.stopped(work, err)
	}
	if reason != "" {
		reason = " (" + reason + ")"
	}
	r.out.printf(gatheringPrefix, "Using must-gather plug-in image: %s%s", strings.Join(images, ", "), reason)
	state := r.clusterStateAtStart(work)
	defer r.clusterStateAtEnd(ctx, state)

	if node := r.job.Gathering.NodeName; node != "" {
		n, err := r.g.checkNode(work, node)
		if err != nil {
			return r.stopped(work, err)
		}
		if n != nil {
			r.g.warnNode(n, report)
		}
	} else if sel := r.job.Gathering.NodeSelector; sel == "" {
		r.place = r.g.place(work, report)
	}
	targets := make([]target, 0, len(images))
	for _, image := range images {
		targets = append(targets, target{image: image})
	}
	if sel := r.job.Gathering.NodeSelector; sel != "" {
		nodes, err := r.g.selectNodes(work, sel, report)
		if err != nil {
			return r.stopped(work, err)
		}
		targets = targets[:0]
		for _, image := range images {
			for _, node := range nodes {
				targets = append(targets, target{image: image, node: node})
			}
		}
	}

	defer r.cleanupAtEnd(ctx)()
	if err := r.setup(work); err != nil {
		return r.stopped(work, err)
	}

	stopEvents := r.watchEvents(work)
	errs := r.runPods(ctx, work, targets)
	stopEvents()
	r.fallback(ctx, errs)
	return r.ended(work, errs)
}

// workUntilStop returns the context of the work: it ends when the job must
// stop, while ctx lasts longer, for the copy. Call the func returned when
// the work is over.
func (r *run) workUntilStop(ctx context.Context) (context.Context, func()) {
	work, cancelWork := context.WithCancelCause(ctx)
	stopWork := context.AfterFunc(r.job.Stop, func() { cancelWork(context.Cause(r.job.Stop)) })
	// AfterFunc calls its func in a goroutine of its own, even for a job
	// stopped already: that one must not start anything at all.
	if r.job.Stop.Err() != nil {
		cancelWork(context.Cause(r.job.Stop))
	}
	return work, func() { stopWork(); cancelWork(nil) }
}

// ended returns the error of a gathering whose pods returned errs, with
// the stop first if one cut the gathering short.
func (r *run) ended(work context.Context, errs []error) error {
	// work's cause is the job's Stop cause, or the Gather ctx's should
	// that end first.
	if cause := context.Cause(work); cause != nil && r.wasInterrupted() {
		r.out.printf(gatheringPrefix, "gathering stopped: %v", cause)
		errs = append([]error{fmt.Errorf("gathering stopped: %w", cause)}, errs...)
	}
	return joinErrors(errs)
}

// stopped returns err, or the stop's cause when the job was stopped while
// err happened.
func (r *run) stopped(work context.Context, err error) error {
	if cause := context.Cause(work); cause != nil {
		r.out.printf(gatheringPrefix, "gathering stopped: %v", cause)
		return fmt.Errorf("gathering stopped before the pods were started: %w", cause)
	}
	r.out.printf(gatheringPrefix, "%v", err)
	return err
}

func (r *run) interrupt() {
	r.interruptedMu.Lock()
	r.interrupted = true
	r.interruptedMu.Unlock()
}

func (r *run) wasInterrupted() bool {
	r.interruptedMu.Lock()
	defer r.interruptedMu.Unlock()
	return r.interrupted
}

// target is what one pod runs: an image, on a node when the gathering
// has a node-selector.
type target struct {
	image string
	node  string
}

// runPods runs a pod per target, at most MaxParallel at once, and returns
// their errors in the order of the targets.
func (r *run) runPods(ctx, work context.Context, targets []target) []error {
	errs := make([]error, len(targets))
	sem := make(chan struct{}, r.g.cfg.MaxParallel)
	var wg sync.WaitGroup
	for i, t := range targets {
		// A stopped job starts no more pods, even with room for them.
		if work.Err() == nil {
			select {
			case sem <- struct{}{}:
				if work.Err() != nil {
					<-sem
				}
			case <-work.Done():
			}
		}
		if work.Err() != nil {
			r.interrupt()
			if t.node != "" {
				r.out.printf(gatheringPrefix, "pod for plug-in image %s on node %s not started: %v", t.image, t.node, context.Cause(work))
			} else {
				r.out.printf(gatheringPrefix, "pod for plug-in image %s not started: %v", t.image, context.Cause(work))
			}
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = r.runPod(ctx, work, t)
		})
	}
	wg.Wait()
	return errs
}

// joinErrors joins errs, skipping nils, into an error whose message is one
// line, as a gathering's reason is.
func joinErrors(errs []error) error {
	var kept []error
	for _, err := range errs {
		if err != nil {
			kept = append(kept, err)
		}
	}
	switch len(kept) {
	case 0:
		return nil
	case 1:
		return kept[0]
	}
	return multiError(kept)
}

type multiError []error

func (m multiError) Error() string {
	msgs := make([]string, len(m))
	for i, err := range m {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

func (m multiError) Unwrap() []error { return m }

// lineWriter writes whole lines to the job's log, which is safe for
// concurrent use; one Write per line keeps lines of different pods apart.
type lineWriter struct {
	w   io.Writer
	now func() time.Time
}

// printf writes "<prefix> OUT <time> <message>", as oc writes its own
// lines.
func (l *lineWriter) printf(prefix, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	ts := l.now().UTC().Format(time.RFC3339Nano)
	for line := range strings.SplitSeq(strings.TrimRight(msg, "\n"), "\n") {
		_, _ = io.WriteString(l.w, prefix+" OUT "+ts+" "+line+"\n")
	}
}

// line writes "<prefix> <kind> <text>".
func (l *lineWriter) line(prefix, kind, text string) {
	_, _ = io.WriteString(l.w, prefix+" "+kind+" "+text+"\n")
}
