package rayjob

import (
	"context"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	rayv1 "github.com/goray/goray/operator/api/v1"
	"github.com/goray/goray/operator/raycluster"
	"github.com/goray/goray/operator/test/testenv"
)

// logLines is a logger for the reconcile context (as controller-runtime
// gives one) that keeps what is logged.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) into(ctx context.Context) context.Context {
	return logf.IntoContext(ctx, funcr.New(func(prefix, args string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.lines = append(l.lines, prefix+" "+args)
	}, funcr.Options{Verbosity: 0}))
}

func (l *logLines) like(s string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, x := range l.lines {
		if strings.Contains(x, s) {
			out = append(out, x)
		}
	}
	return out
}

// TestRayJobSaysWhyTheJobsAPIDoesNotAnswer: a RayJob whose cluster is
// ready but whose Jobs API cannot be reached (nothing listens) or refuses
// the token (403) stays Initializing and polls on,
// and says why: status.message names the address and the error, the error
// is logged, and a Warning Event is recorded once per problem, not once per
// poll. Once the API answers the job is submitted and the message goes.
func TestRayJobSaysWhyTheJobsAPIDoesNotAnswer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	logs := &logLines{}
	ctx = logs.into(ctx)
	h := newHarness(t)
	// A head nothing listens on (a closed loopback port: refused at once,
	// where a DNS name that does not resolve would depend on the resolver).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nowhere := "http://" + ln.Addr().String()
	ln.Close()
	h.r.DashboardURL = func(*rayv1.RayCluster) string { return nowhere }
	key := h.create(ctx, "apierr", jobSpec("sleep 60"))

	want := "cannot reach the Jobs API at " + nowhere + ": dial tcp " + strings.TrimPrefix(nowhere, "http://") + ": connect: connection refused"
	cur := h.until(ctx, key, "status.message naming the refused connection", func(j *rayv1.RayJob) bool {
		return j != nil && j.Status.Message != ""
	})
	for range 3 {
		if !strings.HasPrefix(cur.Status.Message, want) || cur.Status.JobDeploymentStatus != rayv1.JobDeploymentStatusInitializing {
			t.Fatalf("status %s %q, want Initializing with a message starting %q", cur.Status.JobDeploymentStatus, cur.Status.Message, want)
		}
		cur, _ = h.reconcile(ctx, key)
	}
	if w := h.ev.Like("Warning JobsAPIError: " + want); len(w) != 1 {
		t.Errorf("events %v, want one Warning JobsAPIError %q after 4 polls", h.ev.All(), want)
	}
	if l := logs.like(want); len(l) == 0 {
		t.Errorf("the error is not logged; log %v", logs.lines)
	}

	// The address answers, but refuses the token.
	h.r.DashboardURL = func(*rayv1.RayCluster) string { return h.proxy.URL }
	var rc rayv1.RayCluster
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: cur.Status.RayClusterName}, &rc); err != nil {
		t.Fatal(err)
	}
	var secret corev1.Secret
	skey := client.ObjectKey{Namespace: "default", Name: raycluster.AuthSecretName(&rc)}
	setToken := func(token string) {
		t.Helper()
		if err := env.Client.Get(ctx, skey, &secret); err != nil {
			t.Fatal(err)
		}
		secret.Data[raycluster.AuthTokenKey] = []byte(token)
		if err := env.Client.Update(ctx, &secret); err != nil {
			t.Fatal(err)
		}
	}
	setToken("not-the-token")
	want = "the Jobs API at " + h.proxy.URL + " answered 403 Forbidden: Invalid authentication token"
	for range 3 {
		cur, _ = h.reconcile(ctx, key)
		if cur.Status.Message != want || cur.Status.JobDeploymentStatus != rayv1.JobDeploymentStatusInitializing {
			t.Fatalf("status %s %q, want Initializing with the message %q", cur.Status.JobDeploymentStatus, cur.Status.Message, want)
		}
	}
	if w := h.ev.Like("JobsAPIError"); len(w) != 2 || !strings.Contains(w[1], want) {
		t.Errorf("events %v, want a second Warning JobsAPIError %q", w, want)
	}
	if l := logs.like(want); len(l) == 0 {
		t.Errorf("the 403 is not logged; log %v", logs.lines)
	}

	// The API answers: the job is submitted and the message goes.
	setToken(h.head.Token)
	cur = h.until(ctx, key, "the job running", running)
	if strings.Contains(cur.Status.Message, "Jobs API") {
		t.Errorf("status.message %q still about the Jobs API once it answered", cur.Status.Message)
	}
	if len(h.ev.Like("Normal Submitted")) != 1 {
		t.Errorf("events %v, want one Submitted", h.ev.All())
	}
	(&HTTPDashboard{URL: h.head.Head.Info.DashboardAddress, Token: h.head.Token}).StopJob(ctx, cur.Status.JobId)
}

// TestRayJobSubmitterSettingsNotUsed: submitterPodTemplate and
// submitterConfig (in any mode) and SidecarMode are told, once per
// RayJob, to be unused: the operator submits through the Jobs REST API
// itself. The default K8sJobMode without them is served silently.
func TestRayJobSubmitterSettingsNotUsed(t *testing.T) {
	ctx := context.Background()
	template := &corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "ray-job-submitter", Image: "submitter:test"}}}}
	for _, c := range []struct {
		name string
		edit func(*rayv1.RayJobSpec)
		want string // the Event; "" = none
	}{
		{"default", func(*rayv1.RayJobSpec) {}, ""},
		{"HTTPMode", func(s *rayv1.RayJobSpec) { s.SubmissionMode = rayv1.HTTPMode }, ""},
		{"template", func(s *rayv1.RayJobSpec) { s.SubmitterPodTemplate = template },
			"Warning SubmitterNotUsed: spec.submitterPodTemplate not used (submissionMode K8sJobMode): the operator submits the job through the cluster's Jobs REST API itself"},
		{"config", func(s *rayv1.RayJobSpec) { s.SubmitterConfig = &rayv1.SubmitterConfig{BackoffLimit: new(int32(2))} },
			"Warning SubmitterNotUsed: spec.submitterConfig not used (submissionMode K8sJobMode)"},
		{"sidecar", func(s *rayv1.RayJobSpec) { s.SubmissionMode = rayv1.SidecarMode },
			"Normal SubmitterNotUsed: submissionMode SidecarMode: the operator submits the job through the cluster's Jobs REST API itself"},
		{"sidecar with both", func(s *rayv1.RayJobSpec) {
			s.SubmissionMode, s.SubmitterPodTemplate, s.SubmitterConfig = rayv1.SidecarMode, template, &rayv1.SubmitterConfig{}
		}, "Warning SubmitterNotUsed: spec.submitterPodTemplate and spec.submitterConfig not used (submissionMode SidecarMode)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ev := &testenv.Events{}
			h := &harness{t: t, ev: ev, r: &Reconciler{Client: env.Client, Recorder: ev}}
			spec := jobSpec("true")
			c.edit(&spec)
			key := h.create(ctx, "submitter-"+strings.ToLower(strings.ReplaceAll(c.name, " ", "-")), spec)
			for range 3 {
				if cur, _ := h.reconcile(ctx, key); cur.Status.JobDeploymentStatus != rayv1.JobDeploymentStatusInitializing && cur.Status.JobDeploymentStatus != rayv1.JobDeploymentStatusNew {
					t.Fatalf("status %+v", cur.Status)
				}
			}
			got := ev.Like("SubmitterNotUsed")
			switch {
			case c.want == "" && len(got) != 0:
				t.Errorf("events %v, want none", got)
			case c.want != "" && (len(got) != 1 || !strings.HasPrefix(got[0], c.want)):
				t.Errorf("events %v, want one starting %q", got, c.want)
			}
		})
	}
}

// TestAPIProblemIsStable: the words for a Jobs API failure name the
// address, not the request (job id) or the local port of the connection.
func TestAPIProblemIsStable(t *testing.T) {
	reset := func(port int) error {
		return &url.Error{Op: "Get", URL: "http://10.0.0.1:8265/api/jobs/job-" + strconv.Itoa(port), Err: &net.OpError{
			Op: "read", Net: "tcp", Source: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 2), Port: port},
			Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 8265}, Err: syscall.ECONNRESET}}
	}
	for _, c := range []struct {
		url  string
		err  error
		want string
	}{
		{"10.0.0.1:8265", reset(40001), "cannot reach the Jobs API at http://10.0.0.1:8265: read tcp 10.0.0.1:8265: connection reset by peer"},
		{"http://10.0.0.1:8265/", reset(40002), "cannot reach the Jobs API at http://10.0.0.1:8265: read tcp 10.0.0.1:8265: connection reset by peer"},
		{"http://h:8265", &APIError{Method: "GET", Path: "/api/jobs/x", Code: 403, Status: "403 Forbidden", Body: "Forbidden: Invalid authentication token"},
			"the Jobs API at http://h:8265 answered 403 Forbidden: Invalid authentication token"},
		{"http://h:8265", &APIError{Method: "GET", Path: "/api/jobs/x", Code: 502, Status: "502 Bad Gateway"}, "the Jobs API at http://h:8265 answered 502 Bad Gateway"},
	} {
		if got := apiProblem(c.url, c.err); got != c.want {
			t.Errorf("apiProblem(%q, %v) = %q, want %q", c.url, c.err, got, c.want)
		}
	}
}
