package rayjob

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rayv1 "github.com/goray/goray/operator/api/v1"
	"github.com/goray/goray/operator/raycluster"
	"github.com/goray/goray/operator/test/testenv"
	"github.com/goray/goray/testcluster"
)

// harness runs the reconciler against a real goray head on loopback,
// reached through a proxy the test can take down (a head that exists but
// does not answer), with a clock the test can move forward. It stands in
// for the RayCluster controller and the kubelet: a cluster gets the head's
// token Secret and turns ready.
type harness struct {
	t     *testing.T
	head  *testcluster.Cluster
	ev    *testenv.Events
	r     *Reconciler
	down  atomic.Bool  // the proxy drops every request
	skew  atomic.Int64 // added to the reconciler's clock
	proxy *httptest.Server
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, head: testcluster.Start(t, testcluster.Options{HeadCPUs: 2}), ev: &testenv.Events{}}
	target, err := url.Parse("http://" + h.head.Head.Info.DashboardAddress)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	h.proxy = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if h.down.Load() {
			panic(http.ErrAbortHandler) // close the connection unanswered
		}
		rp.ServeHTTP(w, req)
	}))
	t.Cleanup(h.proxy.Close)
	h.r = &Reconciler{
		Client: env.Client, Recorder: h.ev, Poll: 100 * time.Millisecond,
		DashboardURL: func(*rayv1.RayCluster) string { return h.proxy.URL },
		Now:          func() time.Time { return time.Now().Add(time.Duration(h.skew.Load())) },
	}
	return h
}

// headJob asks the head (directly) about a job.
func (h *harness) headJob(ctx context.Context, id string) *JobInfo {
	h.t.Helper()
	d := &HTTPDashboard{URL: h.head.Head.Info.DashboardAddress, Token: h.head.Token}
	info, err := d.GetJobInfo(ctx, id)
	if err != nil {
		h.t.Fatalf("head: job %s: %v", id, err)
	}
	return info
}

// reconcile runs one reconcile of job and returns the RayJob as stored
// (nil once it is gone).
func (h *harness) reconcile(ctx context.Context, key client.ObjectKey) (*rayv1.RayJob, ctrl.Result) {
	h.t.Helper()
	res, err := h.r.Reconcile(ctx, ctrl.Request{NamespacedName: key})
	if err != nil {
		h.t.Logf("reconcile: %v", err)
	}
	var cur rayv1.RayJob
	if err := env.Client.Get(ctx, key, &cur); apierrors.IsNotFound(err) {
		return nil, res
	} else if err != nil {
		h.t.Fatal(err)
	}
	return &cur, res
}

// readyCluster gives an existing cluster the head's token and the ready
// state; false when there is no such cluster.
func (h *harness) readyCluster(ctx context.Context, name string) bool {
	h.t.Helper()
	var rc rayv1.RayCluster
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: name}, &rc); err != nil {
		return false
	}
	if rc.Status.State == rayv1.Ready {
		return true
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: raycluster.AuthSecretName(&rc), Namespace: "default"},
		Data: map[string][]byte{raycluster.AuthTokenKey: []byte(h.head.Token)}}
	if err := env.Client.Create(ctx, s); err != nil && !apierrors.IsAlreadyExists(err) {
		h.t.Fatal(err)
	}
	rc.Status.State = rayv1.Ready
	if err := env.Client.Status().Update(ctx, &rc); err != nil {
		h.t.Fatal(err)
	}
	return true
}

// until reconciles the job, making its cluster ready, until cond holds.
func (h *harness) until(ctx context.Context, key client.ObjectKey, what string, cond func(*rayv1.RayJob) bool) *rayv1.RayJob {
	h.t.Helper()
	for {
		cur, _ := h.reconcile(ctx, key)
		if cur != nil && cur.Status.RayClusterName != "" {
			h.readyCluster(ctx, cur.Status.RayClusterName)
		}
		if cond(cur) {
			return cur
		}
		if ctx.Err() != nil {
			h.t.Fatalf("timed out waiting for %s; job %+v; events %v", what, cur, h.ev.All())
		}
		time.Sleep(20 * time.Millisecond) // poll; the condition decides
	}
}

func (h *harness) create(ctx context.Context, name string, spec rayv1.RayJobSpec) client.ObjectKey {
	h.t.Helper()
	job := &rayv1.RayJob{ObjectMeta: metav1.ObjectMeta{GenerateName: name + "-", Namespace: "default"}, Spec: spec}
	if err := env.Client.Create(ctx, job); err != nil {
		h.t.Fatal(err)
	}
	return client.ObjectKeyFromObject(job)
}

func running(j *rayv1.RayJob) bool {
	return j != nil && j.Status.JobDeploymentStatus == rayv1.JobDeploymentStatusRunning && j.Status.JobStatus == rayv1.JobStatusRunning
}
