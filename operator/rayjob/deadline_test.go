package rayjob

import (
	"context"
	"testing"
	"time"

	rayv1 "github.com/goray/goray/operator/api/v1"
	"github.com/goray/goray/testcluster"
)

// TestRayJobDeadlineStopsAndMirrorsStopped: past activeDeadlineSeconds the
// job is stopped on the head, the RayJob fails with DeadlineExceeded, and
// its jobStatus says STOPPED like the head (not RUNNING).
func TestRayJobDeadlineStopsAndMirrorsStopped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h := newHarness(t)
	spec := jobSpec("sleep 60")
	spec.ActiveDeadlineSeconds = new(int32(30))
	key := h.create(ctx, "deadline", spec)
	h.until(ctx, key, "the job running", running)
	h.skew.Store(int64(time.Minute)) // past the deadline
	cur, _ := h.reconcile(ctx, key)
	st := cur.Status
	if st.JobDeploymentStatus != rayv1.JobDeploymentStatusFailed || st.Reason != rayv1.DeadlineExceeded || st.JobStatus != rayv1.JobStatusStopped {
		t.Fatalf("status after the deadline: deployment %s reason %s job %s, want Failed DeadlineExceeded STOPPED", st.JobDeploymentStatus, st.Reason, st.JobStatus)
	}
	testcluster.Eventually(t, 20*time.Second, "the job STOPPED on the head", func() bool {
		return h.headJob(ctx, st.JobId).Status == string(rayv1.JobStatusStopped)
	})
	// Later reconciles keep it so.
	if cur, _ = h.reconcile(ctx, key); cur.Status.JobStatus != rayv1.JobStatusStopped || cur.Status.Reason != rayv1.DeadlineExceeded {
		t.Errorf("later status %+v", cur.Status)
	}
}
