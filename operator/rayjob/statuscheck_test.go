package rayjob

import (
	"context"
	"testing"
	"time"

	rayv1 "github.com/goray/goray/operator/api/v1"
)

// TestRayJobStatusCheckFailure: while the head does not answer, a running
// RayJob records since when (jobStatusCheckFailureStartTime), clears it
// when the head answers again, and fails with JobStatusCheckTimeoutExceeded
// once RAYJOB_STATUS_CHECK_TIMEOUT_SECONDS passed without an answer.
func TestRayJobStatusCheckFailure(t *testing.T) {
	t.Setenv("RAYJOB_STATUS_CHECK_TIMEOUT_SECONDS", "120")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h := newHarness(t)
	key := h.create(ctx, "check", jobSpec("sleep 60"))
	h.until(ctx, key, "the job running", running)

	h.down.Store(true)
	cur, _ := h.reconcile(ctx, key)
	if !running(cur) || cur.Status.JobStatusCheckFailureStartTime == nil {
		t.Fatalf("head not answering: status %+v, want Running with jobStatusCheckFailureStartTime", cur.Status)
	}
	h.down.Store(false)
	if cur, _ = h.reconcile(ctx, key); !running(cur) || cur.Status.JobStatusCheckFailureStartTime != nil {
		t.Fatalf("head answering again: status %+v, want the failure time cleared", cur.Status)
	}

	h.down.Store(true)
	h.reconcile(ctx, key)
	h.skew.Store(int64(100 * time.Second))
	if cur, _ = h.reconcile(ctx, key); !running(cur) {
		t.Fatalf("failed before the timeout: %+v", cur.Status)
	}
	h.skew.Store(int64(130 * time.Second))
	cur, _ = h.reconcile(ctx, key)
	if cur.Status.JobDeploymentStatus != rayv1.JobDeploymentStatusFailed || cur.Status.Reason != rayv1.JobStatusCheckTimeout {
		t.Fatalf("past the timeout: status %s %s %q, want Failed JobStatusCheckTimeoutExceeded", cur.Status.JobDeploymentStatus, cur.Status.Reason, cur.Status.Message)
	}
	h.down.Store(false)
	(&HTTPDashboard{URL: h.head.Head.Info.DashboardAddress, Token: h.head.Token}).StopJob(ctx, cur.Status.JobId)
}
