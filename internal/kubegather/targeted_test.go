package kubegather

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubev2v/must-gather-functions/internal/mustgather"
	"github.com/kubev2v/must-gather-functions/internal/testenv/kube"
)

// What Forklift's targeted script prints (collection-scripts/targeted and
// targeted_crs of kubev2v/forklift-must-gather), by case.
const (
	targetedEnd = `Cleaning must-gather directory structure...
Tarring must-gather artifacts...
Created /must-gather/must-gather.tar.gz
Waiting for copy phase...`
	targetedPlanFound = `Targeted gathering for Forklift in namespaces [openshift-mtv]
Targeted gathering for Plan: mig-plan-cold
Gathering plans..
Dumping plan: mig-plan-cold from openshift-mtv
Gathering logs for namespaces [openshift-mtv]
` + targetedEnd
	targetedPlanMissing = `Targeted gathering for Forklift in namespaces [openshift-mtv]
Targeted gathering for Plan: mig-plan-gone
Error from server (NotFound): plans.forklift.konveyor.io "mig-plan-gone" not found
Gathering logs for namespaces [openshift-mtv]
` + targetedEnd
	targetedNoForklift = targetedEnd
	targetedNSMissing  = `Targeted gathering for Forklift in namespaces [openshift-mtv]
Targeted gathering for Namespace: gone
ERROR: Specified NS doesn't exist, targeted gathering cannot continue. Set NS to an existing namespace.`
)

// startGatherer starts a test cluster and returns it with a Gatherer of
// cfg for it.
func startGatherer(t *testing.T, cfg Config) (*kube.Cluster, *Gatherer) {
	t.Helper()
	k := kube.Start(t)
	g, err := NewForConfig(k.Admin, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k, g
}

func TestTheTargetedScriptsOutputSaysWhenNothingMatched(t *testing.T) {
	tests := []struct {
		name   string
		asked  mustgather.Targeted
		log    string
		wantIn string // "" for a gathering that found what it was asked for
	}{
		{"a plan that is there", mustgather.Targeted{Plan: "mig-plan-cold"}, targetedPlanFound, ""},
		{"a plan that is not", mustgather.Targeted{Plan: "mig-plan-gone"}, targetedPlanMissing,
			`the targeted gathering found nothing: plan "mig-plan-gone" not found in the Forklift namespace (the image said: Error from server (NotFound): plans.forklift.konveyor.io "mig-plan-gone" not found)`},
		{"a plan that is not, in a named namespace", mustgather.Targeted{Plan: "mig-plan-gone", Namespace: "mtv"}, targetedPlanMissing,
			`plan "mig-plan-gone" not found in namespace mtv`},
		{"a plan that is there and a VM that is not", mustgather.Targeted{Plan: "mig-plan-cold", VM: "vm-1"},
			targetedPlanFound + "\nError from server (NotFound): virtualmachines.kubevirt.io \"vm-1\" not found", ""},
		{"a plan and a VM that are not", mustgather.Targeted{Plan: "mig-plan-gone", VM: "vm-1"},
			targetedPlanMissing + "\nError from server (NotFound): virtualmachines.kubevirt.io \"vm-1\" not found",
			`plan "mig-plan-gone" and VM "vm-1" not found in the Forklift namespace`},
		{"no Forklift installed", mustgather.Targeted{Plan: "mig-plan-cold"}, targetedNoForklift,
			"the targeted gathering found no ForkliftController on the cluster, so it gathered nothing"},
		{"the script's own error", mustgather.Targeted{Namespace: "gone"}, targetedNSMissing,
			"the targeted gathering stopped: ERROR: Specified NS doesn't exist, targeted gathering cannot continue. Set NS to an existing namespace."},
		{"a log that is not the script's", mustgather.Targeted{Plan: "cold"}, "gathering plan cold", ""},
		{"a namespace alone that is there", mustgather.Targeted{Namespace: "mtv"}, targetedPlanFound, ""},
		{"a log followed with timestamps", mustgather.Targeted{Plan: "mig-plan-gone"},
			"2026-01-02T03:04:05.123456789Z " + strings.ReplaceAll(targetedPlanMissing, "\n", "\n2026-01-02T03:04:05.123456789Z "),
			`plan "mig-plan-gone" not found in the Forklift namespace (the image said: Error from server (NotFound)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := targetedOutcome(tt.asked, tt.log)
			if tt.wantIn == "" && got != "" || !strings.Contains(got, tt.wantIn) {
				t.Errorf("targetedOutcome = %q, want it to hold %q", got, tt.wantIn)
			}
		})
	}
}

// TestATargetedGatheringThatFindsNothingSaysSo runs targeted gatherings on
// a real kube-apiserver whose pods log what Forklift's script prints, and
// checks that the script's words reach exec-output and that a gathering
// of nothing ends in error, saying so plainly.
func TestATargetedGatheringThatFindsNothingSaysSo(t *testing.T) {
	k, g := startGatherer(t, testConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tests := []struct {
		name     string
		command  string
		log      string
		exitCode int
		wantErr  string
		wantLogs []string
	}{{
		name:     "a plan that is there completes",
		command:  `PLAN='mig-plan-cold' /usr/bin/targeted`,
		log:      targetedPlanFound,
		wantLogs: []string{"Z Dumping plan: mig-plan-cold from openshift-mtv", "gather completed"},
	}, {
		name:    "a plan that is not fails, in the script's words",
		command: `PLAN='mig-plan-gone' /usr/bin/targeted`,
		log:     targetedPlanMissing,
		wantErr: `the targeted gathering found nothing: plan "mig-plan-gone" not found in the Forklift namespace (the image said: Error from server (NotFound): plans.forklift.konveyor.io "mig-plan-gone" not found)`,
		wantLogs: []string{
			`Z Error from server (NotFound): plans.forklift.konveyor.io "mig-plan-gone" not found`,
			`: the targeted gathering found nothing: plan "mig-plan-gone" not found`,
			"gather output copied",
		},
	}, {
		name:     "the script's error is in the reason",
		command:  `NS='gone' /usr/bin/targeted`,
		log:      targetedNSMissing,
		exitCode: 1,
		// The script's last line is the termination message, as the
		// kubelet makes it, and the error quotes it once.
		wantErr:  "exited with code 1 (ERROR: Specified NS doesn't exist, targeted gathering cannot continue. Set NS to an existing namespace.)",
		wantLogs: []string{"Z ERROR: Specified NS doesn't exist, targeted gathering cannot continue."},
	}}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := mustgather.ID(201 + i)
			job := newTestJob(t, mustgather.Gathering{ID: id, Image: forkliftImage, Command: tt.command})
			done := make(chan error, 1)
			go func() { done <- g.Gather(ctx, job.Job) }()
			p := k.WaitPod(t, func(p *corev1.Pod) bool {
				return p.Labels[LabelGathering] == id.String() && p.Status.Phase == corev1.PodRunning
			})
			k.AppendLogs(t, p.Namespace, p.Name, gatherContainer, tt.log)
			k.FinishGather(t, p.Namespace, p.Name, tt.exitCode)
			var err error
			select {
			case err = <-done:
			case <-ctx.Done():
				t.Fatalf("the gathering did not end:\n%s", job.log)
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Gather: %v\n%s", err, job.log)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Gather: %v, want an error with %q\n%s", err, tt.wantErr, job.log)
			case err != nil && strings.Count(err.Error(), "ERROR:") > 1:
				t.Errorf("Gather: %v: the script's error more than once", err)
			}
			for _, want := range tt.wantLogs {
				if !strings.Contains(job.log.String(), want) {
					t.Errorf("exec-output lacks %q:\n%s", want, job.log)
				}
			}
		})
	}
}
