package rayjob

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rayv1 "github.com/goray/goray/operator/api/v1"
	"github.com/goray/goray/operator/raycluster"
	"github.com/goray/goray/operator/test/testenv"
)

func rule(p rayv1.DeletionPolicyType, js rayv1.JobStatus, ttl int32) rayv1.DeletionRule {
	return rayv1.DeletionRule{Policy: p, Condition: rayv1.DeletionCondition{JobStatus: &js, TTLSeconds: ttl}}
}

// strategySpec is a job with one worker group and no shutdown, ready for a
// deletionStrategy.
func strategySpec(entrypoint string) rayv1.RayJobSpec {
	spec := jobSpec(entrypoint)
	spec.ShutdownAfterJobFinishes, spec.TTLSecondsAfterFinished = false, 0
	spec.RayClusterSpec.WorkerGroupSpecs = []rayv1.WorkerGroupSpec{{GroupName: "small", Replicas: new(int32(1)),
		Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "ray-worker", Image: "goray:test"}}}}}}
	return spec
}

// TestRayJobDeletionStrategyRefused: the CRD refuses unknown policies and
// malformed conditions; the controller fails the rest that cannot apply
// with ValidationFailed and says why.
func TestRayJobDeletionStrategyRefused(t *testing.T) {
	ctx := context.Background()
	t.Run("by the CRD", func(t *testing.T) {
		for name, ds := range map[string]*rayv1.DeletionStrategy{
			"unknown policy":  {DeletionRules: []rayv1.DeletionRule{rule("DeleteEverything", rayv1.JobStatusSucceeded, 0)}},
			"unknown status":  {DeletionRules: []rayv1.DeletionRule{rule(rayv1.DeleteCluster, rayv1.JobStatusStopped, 0)}},
			"both conditions": {DeletionRules: []rayv1.DeletionRule{{Policy: rayv1.DeleteSelf, Condition: rayv1.DeletionCondition{JobStatus: new(rayv1.JobStatusFailed), JobDeploymentStatus: new(rayv1.JobDeploymentStatusFailed)}}}},
			"legacy half":     {OnSuccess: &rayv1.DeletionPolicy{Policy: new(rayv1.DeleteCluster)}},
		} {
			spec := strategySpec("true")
			spec.DeletionStrategy = ds
			job := &rayv1.RayJob{ObjectMeta: metav1.ObjectMeta{GenerateName: "ds-crd-", Namespace: "default"}, Spec: spec}
			if err := env.Client.Create(ctx, job); !apierrors.IsInvalid(err) {
				t.Errorf("%s: create answered %v, want Invalid", name, err)
			}
		}
	})
	legacy := func(ok, bad rayv1.DeletionPolicyType) *rayv1.DeletionStrategy {
		return &rayv1.DeletionStrategy{OnSuccess: &rayv1.DeletionPolicy{Policy: &ok}, OnFailure: &rayv1.DeletionPolicy{Policy: &bad}}
	}
	rules := func(r ...rayv1.DeletionRule) *rayv1.DeletionStrategy {
		return &rayv1.DeletionStrategy{DeletionRules: r}
	}
	for _, c := range []struct {
		name string
		edit func(*rayv1.RayJobSpec)
		want string // in the message; "" = valid
	}{
		{"rules with shutdownAfterJobFinishes", func(s *rayv1.RayJobSpec) {
			s.ShutdownAfterJobFinishes = true
			s.DeletionStrategy = rules(rule(rayv1.DeleteCluster, rayv1.JobStatusSucceeded, 0))
		}, "shutdownAfterJobFinishes and deletionStrategy.deletionRules exclude each other"},
		{"rules with ttlSecondsAfterFinished", func(s *rayv1.RayJobSpec) {
			s.TTLSecondsAfterFinished = 10
			s.DeletionStrategy = rules(rule(rayv1.DeleteCluster, rayv1.JobStatusSucceeded, 0))
		}, "ttlSecondsAfterFinished does not apply"},
		{"DeleteCluster on a selected cluster", func(s *rayv1.RayJobSpec) {
			s.RayClusterSpec, s.ClusterSelector = nil, map[string]string{raycluster.LabelCluster: "shared"}
			s.DeletionStrategy = rules(rule(rayv1.DeleteCluster, rayv1.JobStatusSucceeded, 0))
		}, "DeleteCluster cannot apply to a cluster chosen by clusterSelector"},
		{"legacy DeleteWorkers on a selected cluster", func(s *rayv1.RayJobSpec) {
			s.RayClusterSpec, s.ClusterSelector = nil, map[string]string{raycluster.LabelCluster: "shared"}
			s.DeletionStrategy = legacy(rayv1.DeleteNone, rayv1.DeleteWorkers)
		}, "onFailure: DeleteWorkers cannot apply to a cluster chosen by clusterSelector"},
		{"DeleteWorkers with autoscaling", func(s *rayv1.RayJobSpec) {
			s.RayClusterSpec.EnableInTreeAutoscaling = new(true)
			s.DeletionStrategy = rules(rule(rayv1.DeleteWorkers, rayv1.JobStatusFailed, 0))
		}, "DeleteWorkers cannot apply with enableInTreeAutoscaling"},
		{"cluster before workers", func(s *rayv1.RayJobSpec) {
			s.DeletionStrategy = rules(rule(rayv1.DeleteWorkers, rayv1.JobStatusSucceeded, 60), rule(rayv1.DeleteCluster, rayv1.JobStatusSucceeded, 30))
		}, "DeleteCluster ttlSeconds (30) must not be below DeleteWorkers ttlSeconds (60)"},
		{"duplicate rule", func(s *rayv1.RayJobSpec) {
			s.DeletionStrategy = rules(rule(rayv1.DeleteSelf, rayv1.JobStatusFailed, 0), rule(rayv1.DeleteSelf, rayv1.JobStatusFailed, 10))
		}, "a second DeleteSelf rule for jobStatus FAILED"},
		{"legacy DeleteNone with shutdownAfterJobFinishes", func(s *rayv1.RayJobSpec) {
			s.ShutdownAfterJobFinishes = true
			s.DeletionStrategy = legacy(rayv1.DeleteCluster, rayv1.DeleteNone)
		}, "DeleteNone contradicts shutdownAfterJobFinishes=true"},
		// KubeRay lets the legacy policies stand beside shutdownAfterJobFinishes
		// (its TTL then applies to them).
		{"legacy with shutdownAfterJobFinishes", func(s *rayv1.RayJobSpec) {
			s.ShutdownAfterJobFinishes = true
			s.DeletionStrategy = legacy(rayv1.DeleteCluster, rayv1.DeleteWorkers)
		}, ""},
		{"DeleteSelf on a selected cluster", func(s *rayv1.RayJobSpec) {
			s.RayClusterSpec, s.ClusterSelector = nil, map[string]string{raycluster.LabelCluster: "shared"}
			s.DeletionStrategy = rules(rule(rayv1.DeleteSelf, rayv1.JobStatusSucceeded, 0))
		}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			ev := &testenv.Events{}
			r := &Reconciler{Client: env.Client, Recorder: ev}
			spec := strategySpec("true")
			c.edit(&spec)
			job := &rayv1.RayJob{ObjectMeta: metav1.ObjectMeta{GenerateName: "ds-bad-", Namespace: "default"}, Spec: spec}
			if err := env.Client.Create(ctx, job); err != nil {
				t.Fatal(err)
			}
			h := &harness{t: t, r: r}
			cur, _ := h.reconcile(ctx, client.ObjectKeyFromObject(job))
			st := cur.Status
			if c.want == "" {
				if st.JobDeploymentStatus != rayv1.JobDeploymentStatusInitializing {
					t.Errorf("status %s %q, want Initializing", st.JobDeploymentStatus, st.Message)
				}
				return
			}
			if st.JobDeploymentStatus != rayv1.JobDeploymentStatusValidationFailed || st.Reason != rayv1.ValidationFailed || !strings.Contains(st.Message, c.want) {
				t.Errorf("status %s %s %q, want ValidationFailed saying %q", st.JobDeploymentStatus, st.Reason, st.Message, c.want)
			}
			if w := ev.Like("Warning ValidationFailed"); len(w) != 1 {
				t.Errorf("events %v", ev.All())
			}
		})
	}
}

// TestRayJobDeletionRules runs jobs on a goray head and applies their
// deletion strategies as the (test) clock passes each rule's TTL.
func TestRayJobDeletionRules(t *testing.T) {
	h := newHarness(t)
	ended := func(j *rayv1.RayJob) bool {
		return j.Status.JobDeploymentStatus == rayv1.JobDeploymentStatusComplete || j.Status.JobDeploymentStatus == rayv1.JobDeploymentStatusFailed
	}
	cluster := func(ctx context.Context, name string) *rayv1.RayCluster {
		var rc rayv1.RayCluster
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: name}, &rc); apierrors.IsNotFound(err) {
			return nil
		} else if err != nil {
			t.Fatal(err)
		}
		return &rc
	}
	at := func(d time.Duration) { h.skew.Store(int64(d)) }
	defer at(0)

	t.Run("workers, then cluster, then self", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		at(0)
		spec := strategySpec("true")
		spec.DeletionStrategy = &rayv1.DeletionStrategy{DeletionRules: []rayv1.DeletionRule{
			rule(rayv1.DeleteWorkers, rayv1.JobStatusSucceeded, 0),
			rule(rayv1.DeleteCluster, rayv1.JobStatusSucceeded, 30),
			rule(rayv1.DeleteSelf, rayv1.JobStatusSucceeded, 60),
			rule(rayv1.DeleteSelf, rayv1.JobStatusFailed, 0), // does not match
		}}
		key := h.create(ctx, "ds-rules", spec)
		cur := h.until(ctx, key, "the job ended", ended)
		if cur.Status.JobStatus != rayv1.JobStatusSucceeded {
			t.Fatalf("status %+v", cur.Status)
		}
		name := cur.Status.RayClusterName
		cur, res := h.reconcile(ctx, key)
		rc := cluster(ctx, name)
		if rc == nil || rc.Spec.WorkerGroupSpecs[0].Suspend == nil || !*rc.Spec.WorkerGroupSpecs[0].Suspend {
			t.Fatalf("workers not suspended at TTL 0: %+v", rc)
		}
		if cur == nil || res.RequeueAfter <= 0 || res.RequeueAfter > 30*time.Second {
			t.Fatalf("job %v, requeue %v; want it kept and back by the next rule", cur, res)
		}
		at(40 * time.Second)
		if cur, _ = h.reconcile(ctx, key); cur == nil || cluster(ctx, name) != nil {
			t.Fatalf("at 40s: job %v, cluster %v; want the cluster gone, the job kept", cur != nil, cluster(ctx, name) != nil)
		}
		at(70 * time.Second)
		h.reconcile(ctx, key) // DeleteSelf
		if left, _ := h.reconcile(ctx, key); left != nil {
			t.Fatalf("at 70s the RayJob is still there: %+v", left.ObjectMeta)
		}
		for _, e := range []string{"DeletedWorkers", "DeletedRayCluster", "DeletedRayJob"} {
			if len(h.ev.Like("Normal "+e)) != 1 {
				t.Errorf("events %v, want one %s", h.ev.All(), e)
			}
		}
	})

	t.Run("legacy onFailure", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		at(0)
		spec := strategySpec("exit 3")
		spec.TTLSecondsAfterFinished = 20
		spec.DeletionStrategy = &rayv1.DeletionStrategy{OnSuccess: &rayv1.DeletionPolicy{Policy: new(rayv1.DeleteNone)}, OnFailure: &rayv1.DeletionPolicy{Policy: new(rayv1.DeleteCluster)}}
		key := h.create(ctx, "ds-legacy", spec)
		cur := h.until(ctx, key, "the job ended", ended)
		name := cur.Status.RayClusterName
		if cur.Status.JobStatus != rayv1.JobStatusFailed || cluster(ctx, name) == nil {
			t.Fatalf("status %+v", cur.Status)
		}
		if _, res := h.reconcile(ctx, key); cluster(ctx, name) == nil || res.RequeueAfter <= 0 {
			t.Fatalf("cluster deleted before ttlSecondsAfterFinished (requeue %v)", res)
		}
		at(30 * time.Second)
		if cur, _ = h.reconcile(ctx, key); cur == nil || cluster(ctx, name) != nil {
			t.Fatalf("after the TTL: job kept %v, cluster left %v", cur != nil, cluster(ctx, name) != nil)
		}
	})

	t.Run("deployment Failed deletes self", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		at(0)
		spec := strategySpec("sleep 60")
		spec.ActiveDeadlineSeconds = new(int32(30))
		spec.DeletionStrategy = &rayv1.DeletionStrategy{DeletionRules: []rayv1.DeletionRule{
			{Policy: rayv1.DeleteSelf, Condition: rayv1.DeletionCondition{JobDeploymentStatus: new(rayv1.JobDeploymentStatusFailed)}},
		}}
		key := h.create(ctx, "ds-deploy", spec)
		h.until(ctx, key, "the job running", running)
		at(time.Minute) // past the deadline: Failed, then DeleteSelf
		left := h.until(ctx, key, "the RayJob gone", func(j *rayv1.RayJob) bool { return j == nil })
		if left != nil || len(h.ev.Like("DeadlineExceeded")) == 0 {
			t.Errorf("events %v", h.ev.All())
		}
	})
}
