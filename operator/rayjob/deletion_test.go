package rayjob

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rayv1 "github.com/goray/goray/operator/api/v1"
	"github.com/goray/goray/testcluster"
)

// TestRayJobDeletionStopsItsJob: a RayJob carries ray.io/rayjob-finalizer;
// deleting it stops its running Ray job on the head before it goes. A
// cluster that is gone does not hold the deletion up, and one that does
// not answer holds it only for StopTimeout; a Warning says so at the first
// failed stop and again when it gives up.
func TestRayJobDeletionStopsItsJob(t *testing.T) {
	h := newHarness(t)
	h.r.StopTimeout = time.Minute
	start := func(ctx context.Context, t *testing.T, name string) (client.ObjectKey, *rayv1.RayJob) {
		spec := jobSpec("sleep 60")
		spec.ShutdownAfterJobFinishes = false
		spec.TTLSecondsAfterFinished = 0
		key := h.create(ctx, name, spec)
		cur := h.until(ctx, key, "the job running", running)
		if !slices.Contains(cur.Finalizers, Finalizer) {
			t.Fatalf("finalizers %v, want %s", cur.Finalizers, Finalizer)
		}
		if err := env.Client.Delete(ctx, cur); err != nil {
			t.Fatal(err)
		}
		return key, cur
	}

	t.Run("stops the job", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		key, cur := start(ctx, t, "del-stop")
		if left, _ := h.reconcile(ctx, key); left != nil {
			t.Fatalf("RayJob still there after the stop: %+v; events %v", left.ObjectMeta, h.ev.All())
		}
		testcluster.Eventually(t, 20*time.Second, "the job STOPPED on the head", func() bool {
			return h.headJob(ctx, cur.Status.JobId).Status == string(rayv1.JobStatusStopped)
		})
		if len(h.ev.Like("StoppedJob")) != 1 {
			t.Errorf("events %v, want one StoppedJob", h.ev.All())
		}
	})

	t.Run("cluster gone", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		key, cur := start(ctx, t, "del-gone")
		rc := &rayv1.RayCluster{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: cur.Status.RayClusterName}}
		if err := env.Client.Delete(ctx, rc); err != nil {
			t.Fatal(err)
		}
		if left, _ := h.reconcile(ctx, key); left != nil {
			t.Fatalf("RayJob of a deleted cluster still there: %+v", left.ObjectMeta)
		}
		(&HTTPDashboard{URL: h.head.Head.Info.DashboardAddress, Token: h.head.Token}).StopJob(ctx, cur.Status.JobId)
	})

	t.Run("cluster not answering", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		key, cur := start(ctx, t, "del-mute")
		h.down.Store(true)
		defer h.down.Store(false)
		left, res := h.reconcile(ctx, key)
		if left == nil || res.RequeueAfter <= 0 || res.RequeueAfter > 30*time.Second {
			t.Fatalf("after a failed stop: job %v, requeue %v; want it kept and retried", left, res)
		}
		// The first failure is told at once, and only once.
		want := "cannot stop job " + cur.Status.JobId + " on RayCluster " + cur.Status.RayClusterName +
			" before deleting the RayJob (retrying for up to 1m0s): cannot reach the Jobs API at " + h.proxy.URL + ": "
		if left.Status.Message == "" || !strings.HasPrefix(left.Status.Message, want) {
			t.Errorf("status.message %q after a failed stop, want it to start %q", left.Status.Message, want)
		}
		if w := h.ev.Like("Warning StopJobFailed: " + want); len(w) != 1 {
			t.Fatalf("events %v, want one Warning StopJobFailed %q after the first failed stop", h.ev.All(), want)
		}
		if left, _ = h.reconcile(ctx, key); left == nil {
			t.Fatal("gave up before StopTimeout")
		}
		if w := h.ev.Like("StopJobFailed"); len(w) != 1 {
			t.Fatalf("events %v, want no more after a second failed stop", w)
		}
		h.skew.Store(int64(2 * time.Minute)) // past StopTimeout
		defer h.skew.Store(0)
		if left, _ := h.reconcile(ctx, key); left != nil {
			t.Fatalf("RayJob still there after StopTimeout: %+v", left.ObjectMeta)
		}
		if w := h.ev.Like("Warning StopJobFailed: Gave up"); len(w) != 1 {
			t.Errorf("events %v, want one Warning StopJobFailed giving up", h.ev.All())
		}
		if st := h.headJob(ctx, cur.Status.JobId).Status; st != string(rayv1.JobStatusRunning) {
			t.Errorf("job %s on the unreachable cluster is %s; the test expected it untouched", cur.Status.JobId, st)
		}
		var gone rayv1.RayJob
		if err := env.Client.Get(ctx, key, &gone); !apierrors.IsNotFound(err) {
			t.Errorf("get after deletion: %v", err)
		}
	})
}

// TestRayJobDeletionOfAJobNeverSubmitted: a RayJob whose Ray job was never
// submitted — still Initializing with a Jobs API that does not answer,
// failed by preRunningDeadlineSeconds before the submission, or invalid —
// goes at once when deleted: there is nothing to stop, so no stop call is
// tried (and none waits for StopTimeout).
func TestRayJobDeletionOfAJobNeverSubmitted(t *testing.T) {
	h := newHarness(t)
	h.down.Store(true) // the cluster turns ready, its Jobs API never answers
	// ready and asked, no answer
	unanswered := func(j *rayv1.RayJob) bool {
		return j != nil && j.Status.DashboardURL != "" && j.Status.JobDeploymentStatus == rayv1.JobDeploymentStatusInitializing
	}
	deleteAndReconcileOnce := func(ctx context.Context, t *testing.T, key client.ObjectKey) {
		t.Helper()
		var cur rayv1.RayJob
		if err := env.Client.Get(ctx, key, &cur); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(cur.Finalizers, Finalizer) {
			t.Fatalf("finalizers %v, want %s", cur.Finalizers, Finalizer)
		}
		if err := env.Client.Delete(ctx, &cur); err != nil {
			t.Fatal(err)
		}
		if left, res := h.reconcile(ctx, key); left != nil {
			t.Fatalf("deleted RayJob (%s, jobStatus %q) still there, requeue %v: message %q; events %v",
				left.Status.JobDeploymentStatus, left.Status.JobStatus, res, left.Status.Message, h.ev.Like("StopJob"))
		}
		if w := h.ev.Like("StopJob"); len(w) != 0 {
			t.Errorf("events %v, want no stop tried", w)
		}
	}

	t.Run("Initializing", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		key := h.create(ctx, "del-init", jobSpec("sleep 60"))
		h.until(ctx, key, "the Jobs API asked", unanswered)
		h.reconcile(ctx, key)
		deleteAndReconcileOnce(ctx, t, key)
	})

	t.Run("PreRunningDeadlineExceeded", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		spec := jobSpec("sleep 60")
		spec.PreRunningDeadlineSeconds = new(int32(30))
		key := h.create(ctx, "del-prerun", spec)
		h.until(ctx, key, "the Jobs API asked", unanswered)
		h.skew.Store(int64(time.Minute))
		defer h.skew.Store(0)
		cur, _ := h.reconcile(ctx, key)
		if cur.Status.JobDeploymentStatus != rayv1.JobDeploymentStatusFailed || cur.Status.Reason != rayv1.PreRunningDeadlineExceeded {
			t.Fatalf("status %+v, want Failed PreRunningDeadlineExceeded", cur.Status)
		}
		deleteAndReconcileOnce(ctx, t, key)
	})

	t.Run("ValidationFailed", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		spec := jobSpec("")
		key := h.create(ctx, "del-invalid", spec)
		if cur, _ := h.reconcile(ctx, key); cur.Status.JobDeploymentStatus != rayv1.JobDeploymentStatusValidationFailed {
			t.Fatalf("status %+v, want ValidationFailed", cur.Status)
		}
		deleteAndReconcileOnce(ctx, t, key)
	})
}
