package kubegather

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/testenv"
	"github.com/kubev2v/must-gather-functions/internal/testenv/kube"
)

// refusePods is a ValidatingAdmissionPolicy that refuses every pod of one
// gathering's namespace while its parameter, a ConfigMap, exists: deleting
// the ConfigMap stands for the cluster-admin binding reaching admission.
const refusePods = `
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: refuse-%[1]s}
spec:
  failurePolicy: Fail
  paramKind: {apiVersion: v1, kind: ConfigMap}
  matchConstraints:
    resourceRules:
    - {apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods]}
  validations:
  - expression: "false"
    message: "pods of gathering %[1]s are refused until the binding propagates"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: refuse-%[1]s}
spec:
  policyName: refuse-%[1]s
  validationActions: [Deny]
  paramRef: {name: refuse-%[1]s, namespace: default, parameterNotFoundAction: Allow}
  matchResources:
    namespaceSelector:
      matchLabels: {"` + LabelGathering + `": "%[1]s"}
`

// restrictPods is a MutatingAdmissionPolicy that admits every pod of one
// gathering's namespace under the restricted-v2 SCC, as OpenShift's SCC
// admission records it, while its ConfigMap exists.
const restrictPods = `
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingAdmissionPolicy
metadata: {name: restrict-%[1]s}
spec:
  failurePolicy: Fail
  paramKind: {apiVersion: v1, kind: ConfigMap}
  matchConstraints:
    resourceRules:
    - {apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods]}
  reinvocationPolicy: Never
  mutations:
  - patchType: ApplyConfiguration
    applyConfiguration:
      expression: 'Object{metadata: Object.metadata{annotations: {"` + AnnotationSCC + `": "restricted-v2"}}}'
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingAdmissionPolicyBinding
metadata: {name: restrict-%[1]s}
spec:
  policyName: restrict-%[1]s
  paramRef: {name: refuse-%[1]s, namespace: default, parameterNotFoundAction: Allow}
  matchResources:
    namespaceSelector:
      matchLabels: {"` + LabelGathering + `": "%[1]s"}
`

// installPolicy creates the two objects of a policy template for the
// gathering id and its ConfigMap, and waits until the API server applies
// the policy to a pod in a namespace of that gathering (a dry run).
func installPolicy(t *testing.T, ctx context.Context, admin kubernetes.Interface, template string, id mustgather.ID) {
	t.Helper()
	docs := strings.Split(fmt.Sprintf(template, id), "\n---\n")
	ar := admin.AdmissionregistrationV1()
	var err error
	if strings.Contains(docs[0], "kind: ValidatingAdmissionPolicy\n") {
		var p admissionv1.ValidatingAdmissionPolicy
		var b admissionv1.ValidatingAdmissionPolicyBinding
		mustUnmarshal(t, docs[0], &p)
		mustUnmarshal(t, docs[1], &b)
		if _, err = ar.ValidatingAdmissionPolicies().Create(ctx, &p, metav1.CreateOptions{}); err == nil {
			_, err = ar.ValidatingAdmissionPolicyBindings().Create(ctx, &b, metav1.CreateOptions{})
		}
	} else {
		var p admissionv1.MutatingAdmissionPolicy
		var b admissionv1.MutatingAdmissionPolicyBinding
		mustUnmarshal(t, docs[0], &p)
		mustUnmarshal(t, docs[1], &b)
		if _, err = ar.MutatingAdmissionPolicies().Create(ctx, &p, metav1.CreateOptions{}); err == nil {
			_, err = ar.MutatingAdmissionPolicyBindings().Create(ctx, &b, metav1.CreateOptions{})
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("refuse-%s", id), Namespace: "default"}}
	if _, err := admin.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	probe := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("probe-%s", id), Labels: map[string]string{LabelGathering: id.String()}}}
	if _, err := admin.CoreV1().Namespaces().Create(ctx, probe, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "probe"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "probe"}}},
	}
	err = testenv.Poll(ctx, 50*time.Millisecond, func() error {
		got, err := admin.CoreV1().Pods(probe.Name).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		switch {
		case err != nil && strings.Contains(err.Error(), "refused until the binding propagates"):
			return nil
		case err != nil:
			return err
		case got.Annotations[AnnotationSCC] != "":
			return nil
		}
		return fmt.Errorf("policy of gathering %s not applied yet", id)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func mustUnmarshal(t *testing.T, doc string, v any) {
	t.Helper()
	if err := yaml.UnmarshalStrict([]byte(doc), v); err != nil {
		t.Fatalf("%v in\n%s", err, doc)
	}
}

// TestAdmissionIsRetriedUntilTheBindingHasPropagated runs gatherings on a
// real kube-apiserver whose admission refuses their pods, or admits them
// under a restricted SCC, until the test lifts the policy (as a binding
// that reaches admission would), or never.
func TestAdmissionIsRetriedUntilTheBindingHasPropagated(t *testing.T) {
	k := kube.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	admin, err := kubernetes.NewForConfig(k.Admin)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		id       mustgather.ID
		policy   string
		lift     bool // delete the policy's ConfigMap after two refusals
		budget   time.Duration
		wantErr  string
		wantLogs []string
		noLogs   []string
	}{{
		name:   "a pod refused by a ValidatingAdmissionPolicy is created once the policy lets it",
		id:     101,
		policy: refusePods,
		lift:   true,
		budget: time.Minute,
		wantLogs: []string{
			`refused (attempt 2): pods "must-gather-`,
			"is forbidden: ValidatingAdmissionPolicy 'refuse-101' with binding 'refuse-101' denied request: pods of gathering 101 are refused until the binding propagates; trying again in",
			"pod for plug-in image quay.io/kubev2v/forklift-must-gather:latest admitted after ",
			"gather completed",
		},
	}, {
		name:    "a pod that admission never lets in fails the gathering, saying what to check",
		id:      102,
		policy:  refusePods,
		budget:  time.Second,
		wantErr: "create pod for image quay.io/kubev2v/forklift-must-gather:latest: admission refused it ",
		wantLogs: []string{
			"pod for plug-in image quay.io/kubev2v/forklift-must-gather:latest not created: admission refused it ",
			`(MUST_GATHER_ADMISSION_RETRY): pods "must-gather-`,
			"is forbidden: ValidatingAdmissionPolicy 'refuse-102' with binding 'refuse-102' denied request",
			"check that the ClusterRoleBinding must-gather-",
			"namespace/openshift-must-gather-",
		},
		noLogs: []string{"gather completed"},
	}, {
		name:   "a pod admitted under a restricted SCC is made again until it is not",
		id:     103,
		policy: restrictPods,
		lift:   true,
		budget: time.Minute,
		wantLogs: []string{
			"refused (attempt 2): admitted under SCC restricted-v2 (the binding has not propagated yet); deleting pod must-gather-",
			"admitted after ",
			"gather completed",
		},
	}, {
		name:   "a pod still under a restricted SCC when the time is up runs, with a warning",
		id:     104,
		policy: restrictPods,
		budget: time.Second,
		wantLogs: []string{
			"runs under SCC restricted-v2, not the privileged one its cluster-admin binding allows, after ",
			"the ClusterRoleBinding must-gather-",
			"gather completed",
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			installPolicy(t, ctx, admin, tt.policy, tt.id)
			cfg := testConfig()
			cfg.AdmissionRetry = tt.budget
			g, err := NewForConfig(k.Admin, cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			job := newTestJob(t, mustgather.Gathering{ID: tt.id})
			done := make(chan error, 1)
			go func() { done <- g.Gather(ctx, job.Job) }()

			if tt.lift {
				testenv.Eventually(t, 30*time.Second, "two refusals", func() bool {
					return strings.Contains(job.log.String(), "refused (attempt 2)")
				})
				if err := admin.CoreV1().ConfigMaps("default").Delete(ctx, fmt.Sprintf("refuse-%s", tt.id), metav1.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			if tt.wantErr == "" {
				p := k.WaitPod(t, func(p *corev1.Pod) bool {
					return p.Labels[LabelGathering] == tt.id.String() && p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil
				})
				if scc := p.Annotations[AnnotationSCC]; tt.lift && scc != "" {
					t.Errorf("the gather pod runs under SCC %s", scc)
				}
				k.FinishGather(t, p.Namespace, p.Name, 0)
			}
			var err2 error
			select {
			case err2 = <-done:
			case <-ctx.Done():
				t.Fatalf("the gathering did not end:\n%s", job.log)
			}
			switch {
			case tt.wantErr == "" && err2 != nil:
				t.Fatalf("Gather: %v\n%s", err2, job.log)
			case tt.wantErr != "" && (err2 == nil || !strings.Contains(err2.Error(), tt.wantErr)):
				t.Fatalf("Gather: %v, want an error with %q\n%s", err2, tt.wantErr, job.log)
			}
			out := job.log.String()
			for _, want := range tt.wantLogs {
				if !strings.Contains(out, want) {
					t.Errorf("exec-output lacks %q:\n%s", want, out)
				}
			}
			for _, no := range tt.noLogs {
				if strings.Contains(out, no) {
					t.Errorf("exec-output has %q:\n%s", no, out)
				}
			}
			if !strings.Contains(out, "] OUT ") || !strings.Contains(out, "namespace/openshift-must-gather-") || !strings.Contains(out, " deleted") {
				t.Errorf("exec-output does not show the namespace created and deleted:\n%s", out)
			}
		})
	}
}
