package kubegather

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
	"github.com/kubev2v/must-gather-functions/internal/testenv/kube"
)

// testNodes are the nodes the placement tests add to the test cluster's
// own: kwok makes every node Ready, so a node that is not is one with the
// taint the node lifecycle controller would put on it.
var testNodes = []*corev1.Node{
	newTestNode("cp-0", true, nil, false),
	newTestNode("cp-1", true, []corev1.Taint{{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute}}, false),
	newTestNode("worker-0", false, nil, false),
	newTestNode("worker-1", false, []corev1.Taint{{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoSchedule}}, false),
	newTestNode("worker-2", false, nil, true),
}

func newTestNode(name string, controlPlane bool, taints []corev1.Taint, cordoned bool) *corev1.Node {
	labels := map[string]string{"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "kwok"}
	if controlPlane {
		labels[labelControlPlane] = ""
	} else {
		labels["node-role.kubernetes.io/worker"] = ""
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       corev1.NodeSpec{Taints: taints, Unschedulable: cordoned},
	}
}

// addTestNodes creates testNodes, waits until kwok has made them Ready,
// and then gives every node of the cluster the taints it is meant to have:
// the API server's TaintNodesByCondition admission puts the not-ready
// taint on every new node, and the node lifecycle controller, which the
// test environment does not run, would take it off a Ready one.
func addTestNodes(t *testing.T, ctx context.Context, admin kubernetes.Interface, clusterNode string) {
	t.Helper()
	want := map[string][]corev1.Taint{clusterNode: nil}
	for _, n := range testNodes {
		want[n.Name] = n.Spec.Taints
		if _, err := admin.CoreV1().Nodes().Create(ctx, n.DeepCopy(), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	err := testenv.Poll(ctx, 20*time.Millisecond, func() error {
		for name, taints := range want {
			node, err := admin.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if ready, _ := nodeUsable(&corev1.Node{Status: node.Status}, true); !ready {
				return fmt.Errorf("node %s is not Ready yet", name)
			}
			if !cmp.Equal(node.Spec.Taints, taints, cmpopts.EquateEmpty()) {
				node.Spec.Taints = taints
				if _, err := admin.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// startWithTestNodes starts a test cluster with testNodes, and returns it,
// an admin client and a Gatherer for it.
func startWithTestNodes(t *testing.T, ctx context.Context) (*kube.Cluster, kubernetes.Interface, *Gatherer) {
	t.Helper()
	k := kube.Start(t)
	admin, err := kubernetes.NewForConfig(k.Admin)
	if err != nil {
		t.Fatal(err)
	}
	addTestNodes(t, ctx, admin, k.Node)
	g, err := NewForConfig(k.Admin, testConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return k, admin, g
}

// runOnTestCluster runs g on k until its pods run, lets check look at
// them, finishes their gathers and waits for the end of the gathering,
// which must succeed.
func runOnTestCluster(t *testing.T, ctx context.Context, k *kube.Cluster, g *Gatherer, mg mustgather.Gathering, pods int, check func(pods []*corev1.Pod)) *testJob {
	t.Helper()
	job, err := gatherOnTestCluster(t, ctx, k, g, mg, pods, func(pods []*corev1.Pod) map[string]int {
		check(pods)
		return nil
	})
	if err != nil {
		t.Fatalf("Gather: %v\n%s", err, job.log)
	}
	return job
}

// gatherOnTestCluster runs g on k until its pods run, lets prepare look at
// them and say with what exit code each pod's gather ends (0 for a pod it
// does not name), finishes their gathers and returns the job and the
// gathering's error.
func gatherOnTestCluster(t *testing.T, ctx context.Context, k *kube.Cluster, g *Gatherer, mg mustgather.Gathering, pods int, prepare func(pods []*corev1.Pod) (exitCodes map[string]int)) (*testJob, error) {
	t.Helper()
	job := newTestJob(t, mg)
	done := make(chan error, 1)
	go func() { done <- g.Gather(ctx, job.Job) }()
	var running []*corev1.Pod
	seen := map[string]bool{}
	for len(running) < pods {
		p := k.WaitPod(t, func(p *corev1.Pod) bool {
			return p.Labels[LabelGathering] == mg.ID.String() && p.Status.Phase == corev1.PodRunning && !seen[p.Name]
		})
		seen[p.Name] = true
		running = append(running, p)
	}
	exitCodes := prepare(running)
	for _, p := range running {
		k.FinishGather(t, p.Namespace, p.Name, exitCodes[p.Name])
	}
	select {
	case err := <-done:
		return job, err
	case <-ctx.Done():
		t.Fatalf("the gathering did not end:\n%s", job.log)
	}
	return nil, nil
}

// TestPodsAvoidNodesThatAreNotReadyAndPreferTheControlPlane checks, on a
// real kube-apiserver with nodes of each kind, the placement of the pods
// as created there and the namespace's labels, as oc sets them. The test
// environment runs no kube-scheduler; its own binder places pods by node
// selector and node affinity only (not taints or resources).
func TestPodsAvoidNodesThatAreNotReadyAndPreferTheControlPlane(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	k, admin, g := startWithTestNodes(t, ctx)

	t.Run("a pod left to the scheduler avoids nodes not Ready, unreachable or cordoned and prefers the control plane", func(t *testing.T) {
		runOnTestCluster(t, ctx, k, g, mustgather.Gathering{ID: 51, Image: forkliftImage, Timeout: "2m"}, 1, func(pods []*corev1.Pod) {
			avoid := func(name string) corev1.NodeSelectorRequirement {
				return corev1.NodeSelectorRequirement{Key: "metadata.name", Operator: corev1.NodeSelectorOpNotIn, Values: []string{name}}
			}
			want := &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
					MatchFields: []corev1.NodeSelectorRequirement{avoid("cp-1"), avoid("worker-1"), avoid("worker-2")},
				}}},
				PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{
					Weight: 100,
					Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{
						{Key: "node-role.kubernetes.io/control-plane", Operator: corev1.NodeSelectorOpExists},
					}},
				}},
			}}
			if diff := cmp.Diff(want, pods[0].Spec.Affinity); diff != "" {
				t.Errorf("affinity (-want +got):\n%s", diff)
			}
			// The test environment's binder honours node selector and
			// node affinity: of the Ready nodes, the control-plane one.
			if got := pods[0].Spec.NodeName; got != "cp-0" {
				t.Errorf("pod bound to %s, want cp-0", got)
			}
			if diff := cmp.Diff(map[string]string{"kubernetes.io/os": "linux"}, pods[0].Spec.NodeSelector); diff != "" {
				t.Errorf("node selector (-want +got):\n%s", diff)
			}
			ns, err := admin.CoreV1().Namespaces().Get(ctx, pods[0].Namespace, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range map[string]string{
				"openshift.io/run-level":                         "0",
				"pod-security.kubernetes.io/enforce":             "privileged",
				"pod-security.kubernetes.io/audit":               "privileged",
				"pod-security.kubernetes.io/warn":                "privileged",
				"security.openshift.io/scc.podSecurityLabelSync": "false",
			} {
				if got, ok := ns.Labels[k]; !ok || got != v {
					t.Errorf("namespace label %s = %q, want %q", k, got, v)
				}
			}
			if got, ok := ns.Annotations["openshift.io/node-selector"]; !ok || got != "" {
				t.Errorf("namespace annotation openshift.io/node-selector = %q (set %v), want empty", got, ok)
			}
		})
	})

	t.Run("node-name pins the pod, even to a node that is not Ready, and says so", func(t *testing.T) {
		job := runOnTestCluster(t, ctx, k, g, mustgather.Gathering{ID: 52, Image: forkliftImage, NodeName: "worker-1", Timeout: "2m"}, 1, func(pods []*corev1.Pod) {
			if pods[0].Spec.NodeName != "worker-1" || pods[0].Spec.Affinity != nil {
				t.Errorf("pod on node %q with affinity %v, want on worker-1 without affinity", pods[0].Spec.NodeName, pods[0].Spec.Affinity)
			}
		})
		if want := "node worker-1 is not Ready: its pod may not start before the timeout"; !strings.Contains(job.log.String(), want) {
			t.Errorf("exec-output lacks %q:\n%s", want, job.log)
		}
	})

	t.Run("when no node can run a pod, the pod is left to the scheduler, and exec-output says so", func(t *testing.T) {
		nodes, err := admin.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes.Items {
			n.Spec.Taints = []corev1.Taint{{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoSchedule}}
			if _, err := admin.CoreV1().Nodes().Update(ctx, &n, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		var reported []string
		p := g.place(ctx, func(format string, args ...any) { reported = append(reported, fmt.Sprintf(format, args...)) })
		if len(p.avoid) != 0 || p.affinity().NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
			t.Errorf("placement %+v keeps off nodes; want none kept off", p)
		}
		want := []string{"no node is Ready, reachable and schedulable: the pods are left to the scheduler"}
		if diff := cmp.Diff(want, reported); diff != "" {
			t.Errorf("reported (-want +got):\n%s", diff)
		}
	})
}

// TestANodeSelectorRunsOnePodPerReadyNode runs gatherings with a
// node-selector on a real kube-apiserver with nodes of each kind: one pod
// per image on each Ready node selected, pinned there (a cordoned node
// runs a pinned pod), the output of each under its node's directory, as
// oc does; and host-network as oc sets it.
func TestANodeSelectorRunsOnePodPerReadyNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	k, admin, g := startWithTestNodes(t, ctx)

	t.Run("one pod per image on each Ready worker, in the host network with CAP_NET_RAW", func(t *testing.T) {
		const other = "quay.io/kubev2v/other-must-gather:1"
		mg := mustgather.Gathering{ID: 61, Image: forkliftImage + "," + other, NodeSelector: "node-role.kubernetes.io/worker", HostNetwork: true, Timeout: "2m"}
		job := runOnTestCluster(t, ctx, k, g, mg, 4, func(pods []*corev1.Pod) {
			got := map[string]int{}
			for _, p := range pods {
				got[p.Spec.NodeName+" "+p.Spec.Containers[0].Image]++
				if p.Spec.Affinity != nil {
					t.Errorf("pod %s pinned to %s has affinity %v", p.Name, p.Spec.NodeName, p.Spec.Affinity)
				}
				if !p.Spec.HostNetwork {
					t.Errorf("pod %s is not in the host network", p.Name)
				}
				want := &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"CAP_NET_RAW"}}}
				if diff := cmp.Diff(want, p.Spec.Containers[0].SecurityContext); diff != "" {
					t.Errorf("pod %s gather container security context (-want +got):\n%s", p.Name, diff)
				}
				if p.Spec.Containers[1].SecurityContext != nil {
					t.Errorf("pod %s copy container has security context %v", p.Name, p.Spec.Containers[1].SecurityContext)
				}
			}
			want := map[string]int{
				"worker-0 " + forkliftImage: 1, "worker-0 " + other: 1,
				"worker-2 " + forkliftImage: 1, "worker-2 " + other: 1,
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("pods per node and image (-want +got):\n%s", diff)
			}
		})
		log := job.log.String()
		for _, want := range []string{
			`node worker-1 matches node-selector "node-role.kubernetes.io/worker" but is not Ready: no pod runs there`,
			`node-selector "node-role.kubernetes.io/worker": one pod per image on each of 2 nodes: worker-0, worker-2`,
			" on node: worker-0 for plug-in image " + forkliftImage + " created",
			" on node: worker-2 for plug-in image " + other + " created",
		} {
			if !strings.Contains(log, want) {
				t.Errorf("exec-output lacks %q:\n%s", want, log)
			}
		}
		dirs := map[string]bool{}
		for name := range job.files(t) {
			if strings.HasSuffix(name, "/gather.logs") {
				dirs[strings.TrimSuffix(name, "/gather.logs")] = true
			}
		}
		var nodes []string
		for d := range dirs {
			node, _, _ := strings.Cut(d, "/")
			nodes = append(nodes, node)
		}
		slices.Sort(nodes)
		if diff := cmp.Diff([]string{"worker-0", "worker-0", "worker-2", "worker-2"}, nodes); diff != "" {
			t.Errorf("gather.logs per node directory (-want +got):\n%s\ndirs: %v", diff, dirs)
		}
	})

	t.Run("without host-network the pods are not in the host network", func(t *testing.T) {
		runOnTestCluster(t, ctx, k, g, mustgather.Gathering{ID: 62, Image: forkliftImage, NodeSelector: "kubernetes.io/hostname=cp-0", Timeout: "2m"}, 1, func(pods []*corev1.Pod) {
			if p := pods[0]; p.Spec.NodeName != "cp-0" || p.Spec.HostNetwork || p.Spec.Containers[0].SecurityContext != nil {
				t.Errorf("pod on %s, host network %v, security context %v; want on cp-0 without either", p.Spec.NodeName, p.Spec.HostNetwork, p.Spec.Containers[0].SecurityContext)
			}
		})
	})

	for _, tt := range []struct{ name, selector, want string }{
		{"a selector of nodes none of which is Ready fails, saying so", "kubernetes.io/hostname in (cp-1,worker-1)",
			`node-selector "kubernetes.io/hostname in (cp-1,worker-1)" selects no Ready node (2 selected, none Ready)`},
		{"a selector of no node fails, saying so", "zone=nowhere", `node-selector "zone=nowhere" selects no node`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			job := newTestJob(t, mustgather.Gathering{ID: 63, Image: forkliftImage, NodeSelector: tt.selector, Timeout: "2m"})
			err := g.Gather(ctx, job.Job)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Gather: %v, want an error saying %q", err, tt.want)
			}
			if !strings.Contains(job.log.String(), tt.want) {
				t.Errorf("exec-output lacks %q:\n%s", tt.want, job.log)
			}
			list, err := admin.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: LabelGathering + "=63"})
			if err != nil || len(list.Items) != 0 {
				t.Errorf("namespaces of the failed gathering: %v, %v; want none", list, err)
			}
		})
	}
}

func TestANodeIsUsableWhenReadyAndReachable(t *testing.T) {
	ready := corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}
	notReady := corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionFalse}}}
	unknown := corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionUnknown}}}
	taint := func(key string) corev1.NodeSpec {
		return corev1.NodeSpec{Taints: []corev1.Taint{{Key: key, Effect: corev1.TaintEffectNoSchedule}}}
	}
	tests := []struct {
		name       string
		node       corev1.Node
		cordonedOK bool
		want       bool
		why        string
	}{
		{"a Ready node is", corev1.Node{Status: ready}, false, true, ""},
		{"a node with Ready False is not", corev1.Node{Status: notReady}, false, false, "not Ready"},
		{"a node with Ready Unknown is not", corev1.Node{Status: unknown}, false, false, "not Ready"},
		{"a node without conditions is not", corev1.Node{}, false, false, "not Ready"},
		{"a Ready node with the unreachable taint is not", corev1.Node{Spec: taint(corev1.TaintNodeUnreachable), Status: ready}, false, false, "unreachable"},
		{"a Ready node with the not-ready taint is not", corev1.Node{Spec: taint(corev1.TaintNodeNotReady), Status: ready}, false, false, "not Ready"},
		{"a Ready node with another taint is", corev1.Node{Spec: taint("dedicated"), Status: ready}, false, true, ""},
		{"a cordoned node is not, for the scheduler", corev1.Node{Spec: corev1.NodeSpec{Unschedulable: true}, Status: ready}, false, false, "cordoned"},
		{"a cordoned node is, for a pinned pod", corev1.Node{Spec: corev1.NodeSpec{Unschedulable: true}, Status: ready}, true, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, why := nodeUsable(&tt.node, tt.cordonedOK)
			if got != tt.want || why != tt.why {
				t.Errorf("nodeUsable = %v, %q; want %v, %q", got, why, tt.want, tt.why)
			}
		})
	}
}
