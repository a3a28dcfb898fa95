package rayjob

import (
	"context"
	"strings"
	"testing"
	"time"

	rayv1 "github.com/goray/goray/operator/api/v1"
)

// TestRayJobStatusCheckFailure: while the head does not answer, a running
// RayJob records since when (jobStatusCheckFailureStartTime), clears it
// when the head answers again, and fails with JobStatusCheckTimeoutExceeded
// once RAYJOB_STATUS_CHECK_TIMEOUT_SECONDS passed without an answer.
// Meanwhile status.message, the log and a Warning Event (one an outage)
// say why.
func TestRayJobStatusCheckFailure(t *testing.T) {
	t.Setenv("RAYJOB_STATUS_CHECK_TIMEOUT_SECONDS", "120")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h := newHarness(t)
	key := h.create(ctx, "check", jobSpec("sleep 60"))
	h.until(ctx, key, "the job running", running)

	logs := &logLines{}
	ctx = logs.into(ctx)
	h.down.Store(true)
	cur, _ := h.reconcile(ctx, key)
	if !running(cur) || cur.Status.JobStatusCheckFailureStartTime == nil {
		t.Fatalf("head not answering: status %+v, want Running with jobStatusCheckFailureStartTime", cur.Status)
	}
	// It says why, once: status.message, the log, one Warning Event.
	want := "cannot check job " + cur.Status.JobId + ": cannot reach the Jobs API at " + h.proxy.URL + ": "
	if !strings.HasPrefix(cur.Status.Message, want) {
		t.Errorf("status.message %q, want it to start %q", cur.Status.Message, want)
	}
	h.reconcile(ctx, key)
	if w := h.ev.Like("Warning JobStatusCheckFailed: " + want); len(w) != 1 {
		t.Errorf("events %v, want one Warning JobStatusCheckFailed %q after two failed checks", h.ev.All(), want)
	}
	if len(logs.like(want)) == 0 {
		t.Errorf("the failed check is not logged: %v", logs.lines)
	}
	h.down.Store(false)
	if cur, _ = h.reconcile(ctx, key); !running(cur) || cur.Status.JobStatusCheckFailureStartTime != nil || strings.Contains(cur.Status.Message, "Jobs API") {
		t.Fatalf("head answering again: status %+v, want the failure time and message cleared", cur.Status)
	}

	h.down.Store(true)
	h.reconcile(ctx, key)
	if w := h.ev.Like("JobStatusCheckFailed"); len(w) != 2 {
		t.Errorf("events %v, want a second JobStatusCheckFailed for the second outage", w)
	}
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
