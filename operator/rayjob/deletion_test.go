package rayjob

import (
	"context"
	"slices"
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
// not answer holds it only for StopTimeout, then a Warning says so.
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
			t.Fatalf("RayJob still there after the stop: %+v; events %v", left.ObjectMeta, h.ev.all)
		}
		testcluster.Eventually(t, 20*time.Second, "the job STOPPED on the head", func() bool {
			return h.headJob(ctx, cur.Status.JobId).Status == string(rayv1.JobStatusStopped)
		})
		if len(h.ev.like("StoppedJob")) != 1 {
			t.Errorf("events %v, want one StoppedJob", h.ev.all)
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
		if w := h.ev.like("StopJobFailed"); len(w) != 0 {
			t.Fatalf("gave up at once: %v", w)
		}
		h.skew.Store(int64(2 * time.Minute)) // past StopTimeout
		defer h.skew.Store(0)
		if left, _ := h.reconcile(ctx, key); left != nil {
			t.Fatalf("RayJob still there after StopTimeout: %+v", left.ObjectMeta)
		}
		if w := h.ev.like("Warning StopJobFailed"); len(w) != 1 {
			t.Errorf("events %v, want one Warning StopJobFailed", h.ev.all)
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
