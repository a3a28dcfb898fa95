package rayjob

import (
	"context"
	"fmt"
	"os"
	"strings"
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

var env *testenv.Env

func TestMain(m *testing.M) {
	var err error
	if env, err = testenv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	env.Stop()
	os.Exit(code)
}

func jobSpec(entrypoint string) rayv1.RayJobSpec {
	spec := &rayv1.RayClusterSpec{}
	spec.HeadGroupSpec.Template.Spec.Containers = []corev1.Container{{Name: "ray-head", Image: "goray:test"}}
	return rayv1.RayJobSpec{Entrypoint: entrypoint, RayClusterSpec: spec, ShutdownAfterJobFinishes: true, TTLSecondsAfterFinished: 1,
		Metadata: map[string]string{"owner": "test"}, RuntimeEnvYAML: "env_vars:\n  GREETING: hello\n"}
}

// TestRayJobOnAGorayHead runs RayJobs against a real goray head on
// loopback standing in for the head Service: the operator creates the
// cluster, submits the entrypoint through the Jobs API when the cluster is
// ready, mirrors the job's status to SUCCEEDED or FAILED, and deletes the
// cluster ttlSecondsAfterFinished after the end.
func TestRayJobOnAGorayHead(t *testing.T) {
	head := testcluster.Start(t, testcluster.Options{HeadCPUs: 2})
	ev := &testenv.Events{}
	r := &Reconciler{
		Client: env.Client, Recorder: ev, Poll: 100 * time.Millisecond,
		DashboardURL: func(*rayv1.RayCluster) string { return "http://" + head.Head.Info.DashboardAddress },
	}
	for _, c := range []struct {
		name, entrypoint string
		backoffLimit     int32
		status           rayv1.JobStatus
		deployment       rayv1.JobDeploymentStatus
		failed           int32
	}{
		{"succeeds", `test "$GREETING" = hello && echo done`, 0, rayv1.JobStatusSucceeded, rayv1.JobDeploymentStatusComplete, 0},
		{"fails", "exit 3", 0, rayv1.JobStatusFailed, rayv1.JobDeploymentStatusFailed, 1},
		{"retries", "exit 3", 1, rayv1.JobStatusFailed, rayv1.JobDeploymentStatusFailed, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			job := &rayv1.RayJob{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("job-%s-%d", c.name, time.Now().UnixNano()%100000), Namespace: "default"}, Spec: jobSpec(c.entrypoint)}
			job.Spec.BackoffLimit = &c.backoffLimit
			clusters := map[string]bool{}
			if err := env.Client.Create(ctx, job); err != nil {
				t.Fatal(err)
			}
			var cur rayv1.RayJob
			var clusterSeenAtEnd bool
			for {
				if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(job)}); err != nil {
					t.Logf("reconcile: %v", err)
				}
				if err := env.Client.Get(ctx, client.ObjectKeyFromObject(job), &cur); err != nil {
					t.Fatal(err)
				}
				st := &cur.Status
				var rc rayv1.RayCluster
				err := env.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: st.RayClusterName}, &rc)
				if err == nil {
					clusters[rc.Name] = true
				}
				if err == nil && rc.Status.State != rayv1.Ready {
					// Stand in for the RayCluster controller and the kubelet:
					// the cluster's token Secret holds the head's token, and
					// the cluster is ready.
					s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: raycluster.AuthSecretName(&rc), Namespace: "default"},
						Data: map[string][]byte{raycluster.AuthTokenKey: []byte(head.Token)}}
					if err := env.Client.Create(ctx, s); err != nil && !apierrors.IsAlreadyExists(err) {
						t.Fatal(err)
					}
					rc.Status.State = rayv1.Ready
					if err := env.Client.Status().Update(ctx, &rc); err != nil {
						t.Fatal(err)
					}
				}
				if st.JobDeploymentStatus == c.deployment && !clusterSeenAtEnd {
					if err != nil {
						t.Fatalf("cluster %s gone as soon as the job ended (TTL 1s): %v", st.RayClusterName, err)
					}
					clusterSeenAtEnd = true
				}
				if clusterSeenAtEnd && apierrors.IsNotFound(err) {
					break
				}
				if ctx.Err() != nil {
					t.Fatalf("timed out; status %+v; events %v", cur.Status, ev.All())
				}
				time.Sleep(50 * time.Millisecond)
			}
			st := cur.Status
			if valueOr(st.Failed) != c.failed || len(clusters) != int(c.failed) && c.failed > 0 {
				t.Errorf("failed %d times on clusters %v, want %d", valueOr(st.Failed), clusters, c.failed)
			}
			for name := range clusters {
				var rc rayv1.RayCluster
				if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: name}, &rc); !apierrors.IsNotFound(err) {
					t.Errorf("cluster %s of an earlier attempt still there: %v", name, err)
				}
			}
			if st.JobStatus != c.status || st.JobDeploymentStatus != c.deployment || st.EndTime == nil || st.StartTime == nil || !strings.HasPrefix(st.JobId, job.Name+"-") {
				t.Errorf("final status %+v", st)
			}
			if c.status == rayv1.JobStatusFailed && st.Reason != rayv1.AppFailed {
				t.Errorf("reason %q, want %q", st.Reason, rayv1.AppFailed)
			}
			if ended := time.Since(st.EndTime.Time); ended < time.Second-100*time.Millisecond {
				t.Errorf("cluster deleted %v after the end, before the TTL", ended)
			}
		})
	}
}

// TestRayJobInvalidSpec: a job without entrypoint or cluster fails
// validation with an Event and creates nothing.
func TestRayJobInvalidSpec(t *testing.T) {
	ctx := context.Background()
	ev := &testenv.Events{}
	r := &Reconciler{Client: env.Client, Recorder: ev}
	job := &rayv1.RayJob{ObjectMeta: metav1.ObjectMeta{GenerateName: "bad-job-", Namespace: "default"}, Spec: rayv1.RayJobSpec{Entrypoint: "true"}}
	if err := env.Client.Create(ctx, job); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(job)}); err != nil {
		t.Fatal(err)
	}
	var cur rayv1.RayJob
	env.Client.Get(ctx, client.ObjectKeyFromObject(job), &cur)
	if cur.Status.JobDeploymentStatus != rayv1.JobDeploymentStatusValidationFailed || len(ev.All()) != 1 || !strings.Contains(ev.All()[0], "ValidationFailed") {
		t.Errorf("status %+v events %v", cur.Status, ev.All())
	}
}

// TestRayJobSuspendDeletesItsClusterAndResumeStartsOver: suspending an
// initializing job deletes the cluster it made; resuming makes a new one.
func TestRayJobSuspendDeletesItsClusterAndResumeStartsOver(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := &Reconciler{Client: env.Client, Recorder: &testenv.Events{}}
	job := &rayv1.RayJob{ObjectMeta: metav1.ObjectMeta{GenerateName: "sus-", Namespace: "default"}, Spec: jobSpec("true")}
	if err := env.Client.Create(ctx, job); err != nil {
		t.Fatal(err)
	}
	reconcile := func() *rayv1.RayJob {
		t.Helper()
		if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(job)}); err != nil {
			t.Fatal(err)
		}
		var cur rayv1.RayJob
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(job), &cur); err != nil {
			t.Fatal(err)
		}
		return &cur
	}
	reconcile()
	cur := reconcile() // Initializing: the cluster is created
	first := cur.Status.RayClusterName
	var rc rayv1.RayCluster
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: first}, &rc); err != nil || cur.Status.JobDeploymentStatus != rayv1.JobDeploymentStatusInitializing {
		t.Fatalf("status %+v, cluster %v", cur.Status, err)
	}
	cur.Spec.Suspend = true
	if err := env.Client.Update(ctx, cur); err != nil {
		t.Fatal(err)
	}
	reconcile()
	cur = reconcile()
	if cur.Status.JobDeploymentStatus != rayv1.JobDeploymentStatusSuspended || cur.Status.RayClusterName != "" {
		t.Fatalf("after suspend: %+v", cur.Status)
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: first}, &rc); !apierrors.IsNotFound(err) {
		t.Fatalf("cluster %s after suspend: %v", first, err)
	}
	cur.Spec.Suspend = false
	if err := env.Client.Update(ctx, cur); err != nil {
		t.Fatal(err)
	}
	reconcile()
	cur = reconcile()
	if cur.Status.JobDeploymentStatus != rayv1.JobDeploymentStatusInitializing || cur.Status.RayClusterName == "" || cur.Status.RayClusterName == first {
		t.Fatalf("after resume: %+v", cur.Status)
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: cur.Status.RayClusterName}, &rc); err != nil {
		t.Fatalf("no new cluster after resume: %v", err)
	}
}
