package kubegather

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
)

// openshiftConfigCRDs are minimal CRDs of our own for OpenShift's
// ClusterVersion and ClusterOperator: group, version, names and scope as
// OpenShift's, any fields.
const openshiftConfigCRDs = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: clusterversions.config.openshift.io}
spec:
  group: config.openshift.io
  names: {kind: ClusterVersion, listKind: ClusterVersionList, plural: clusterversions, singular: clusterversion}
  scope: Cluster
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: clusteroperators.config.openshift.io}
spec:
  group: config.openshift.io
  names: {kind: ClusterOperator, listKind: ClusterOperatorList, plural: clusteroperators, singular: clusteroperator, shortNames: [co]}
  scope: Cluster
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
`

// The cluster of TestTheClusterStateIsSummedUpAtStartAndEndOnOpenShift:
// stable at 4.18.3, console degraded, every other long existing operator
// healthy but machine-api, which is missing.
const clusterVersionYAML = `
apiVersion: config.openshift.io/v1
kind: ClusterVersion
metadata: {name: version}
spec: {clusterID: 5c1e7c9f-1d2b-4b6e-9a3c-0f1e2d3c4b5a}
status:
  desired: {version: 4.18.3}
  history:
  - {state: Completed, version: 4.18.3, startedTime: "2026-01-01T00:00:00Z"}
  conditions:
  - {type: Progressing, status: "False", message: "Cluster version is 4.18.3"}
`

func coYAML(name, degraded string) string {
	deg := `{type: Degraded, status: "False", message: ""}`
	if degraded != "" {
		deg = `{type: Degraded, status: "True", message: "` + degraded + `"}`
	}
	return `
apiVersion: config.openshift.io/v1
kind: ClusterOperator
metadata: {name: ` + name + `}
status:
  conditions:
  - {type: Available, status: "True", message: ""}
  - {type: Progressing, status: "False", message: ""}
  - ` + deg + `
`
}

func createYAML(t *testing.T, ctx context.Context, dyn dynamic.Interface, doc string) {
	t.Helper()
	var u unstructured.Unstructured
	if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
		t.Fatal(err)
	}
	gvr := clusterOperators
	if u.GetKind() == "ClusterVersion" {
		gvr = clusterVersions
	}
	if _, err := dyn.Resource(gvr).Create(ctx, &u, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestTheClusterStateIsSummedUpAtStartAndEndOnOpenShift runs a gathering on
// a real kube-apiserver, first without OpenShift's config API (nothing
// said), then with minimal CRDs of ClusterVersion and ClusterOperator
// installed: oc's summary is in exec-output at the start and at the end,
// and both in cluster-state.txt.
func TestTheClusterStateIsSummedUpAtStartAndEndOnOpenShift(t *testing.T) {
	k, g := startGatherer(t, testConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	none := func([]*corev1.Pod) {}

	job := runOnTestCluster(t, ctx, k, g, mustgather.Gathering{ID: 301, Image: forkliftImage}, 1, none)
	if out := job.log.String(); strings.Contains(out, "ClusterID") || strings.Contains(out, "clusteroperators") {
		t.Errorf("exec-output on a cluster without OpenShift's config API speaks of it:\n%s", out)
	}
	if _, ok := job.files(t)[ClusterStateFile]; ok {
		t.Errorf("the archive holds %s on a cluster without OpenShift's config API", ClusterStateFile)
	}

	k.InstallCRDs(t, []byte(openshiftConfigCRDs))
	dyn, err := dynamic.NewForConfig(k.Admin)
	if err != nil {
		t.Fatal(err)
	}
	createYAML(t, ctx, dyn, clusterVersionYAML)
	for _, name := range longExistingOperators {
		switch name {
		case "machine-api":
		case "console":
			createYAML(t, ctx, dyn, coYAML(name, "RouteHealthDegraded: route not reachable"))
		default:
			createYAML(t, ctx, dyn, coYAML(name, ""))
		}
	}

	job = runOnTestCluster(t, ctx, k, g, mustgather.Gathering{ID: 302, Image: forkliftImage}, 1, none)
	const summary = `When opening a support case, bugzilla, or issue please include the following summary data along with any other requested information:
ClusterID: 5c1e7c9f-1d2b-4b6e-9a3c-0f1e2d3c4b5a
ClusterVersion: Stable at "4.18.3"
ClusterOperators:
	clusteroperator/console is degraded because RouteHealthDegraded: route not reachable
	clusteroperator/machine-api is missing
`
	var lines []string
	for _, l := range job.log.Lines() {
		if strings.HasPrefix(l, gatheringPrefix+" OUT ") {
			// Drop the prefix and the time.
			_, text, _ := strings.Cut(strings.TrimPrefix(l, gatheringPrefix+" OUT "), " ")
			lines = append(lines, text)
		}
	}
	out := strings.Join(lines, "\n") + "\n"
	first := strings.Index(out, summary)
	again := strings.Index(out, "Reprinting Cluster State:\n"+summary)
	created := strings.Index(out, "namespace/openshift-must-gather-")
	if first < 0 || again < 0 || !(first < created && created < again) {
		t.Errorf("exec-output does not hold the summary before the namespace and again at the end:\n%s", out)
	}
	want := "Cluster state at the start of the gathering:\n" + summary + "\nCluster state at the end of the gathering:\n" + summary
	if got := job.files(t)[ClusterStateFile]; got != want {
		t.Errorf("%s:\n%s\nwant:\n%s", ClusterStateFile, got, want)
	}
}

func TestTheClusterVersionIsSummedUpAsOcDoes(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	cv := func(history string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		doc := `
status:
  desired: {version: 4.19.0}
  conditions: [{type: Progressing, status: "True", message: "Working towards 4.19.0: 512 of 900 done"}]
  history: ` + history
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			t.Fatal(err)
		}
		return u
	}
	tests := []struct {
		name string
		cv   *unstructured.Unstructured
		want string
	}{
		{"installing", cv(`[{state: Partial, version: 4.19.0, startedTime: "2026-01-02T02:30:00Z"}]`),
			`Installing "4.19.0" for 30 minutes: Working towards 4.19.0: 512 of 900 done`},
		{"updating", cv(`[{state: Partial, version: 4.19.0, startedTime: "2026-01-02T01:00:00Z"}, {state: Completed, version: 4.18.3}]`),
			`Updating to "4.19.0" from "4.18.3" for 2 hours: Working towards 4.19.0: 512 of 900 done`},
		{"stable", cv(`[{state: Completed, version: 4.19.0, startedTime: "2025-12-01T00:00:00Z"}, {state: Completed, version: 4.18.3}]`),
			`Stable at "4.19.0"`},
		{"no cluster version", nil, "Cluster is in a version state we don't recognize"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := clusterVersionSummary(tt.cv, now); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
