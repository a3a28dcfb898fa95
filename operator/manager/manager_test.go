package manager

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rayv1 "github.com/goray/goray/operator/api/v1"
	"github.com/goray/goray/operator/raycluster"
	"github.com/goray/goray/operator/test/testenv"
	"github.com/goray/goray/testcluster"
)

// startOperator starts an API server and the whole operator (manager,
// informers, event recorder) until the test ends.
func startOperator(t *testing.T) (context.Context, client.Client) {
	t.Helper()
	env, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.Stop() })
	mgr, err := New(env.Config, Config{MetricsAddr: "0", ProbeAddr: "0", SkipNameValidation: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return ctx, env.Client
}

// createCluster creates a RayCluster with a head and a group "g" of two
// 1-CPU workers.
func createCluster(ctx context.Context, t *testing.T, c client.Client, name string) *rayv1.RayCluster {
	t.Helper()
	rc := &rayv1.RayCluster{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}}
	rc.Spec.HeadGroupSpec.Template.Spec.Containers = []corev1.Container{{Name: "ray-head", Image: "goray:test"}}
	g := rayv1.WorkerGroupSpec{GroupName: "g", Replicas: ptr.To[int32](2)}
	g.Template.Spec.Containers = []corev1.Container{{Name: "w", Image: "goray:test", Resources: corev1.ResourceRequirements{
		Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}}}
	rc.Spec.WorkerGroupSpecs = []rayv1.WorkerGroupSpec{g}
	if err := c.Create(ctx, rc); err != nil {
		t.Fatal(err)
	}
	return rc
}

// TestOperatorReconcilesThroughWatches runs the whole operator (manager,
// informers, event recorder) against a real API server: a new cluster gets
// its pods, a replicas change is seen through the watch, a deleted pod is
// replaced, an invalid cluster yields a Warning Event in the API, and the
// RayJob controller runs too (an invalid RayJob fails validation).
func TestOperatorReconcilesThroughWatches(t *testing.T) {
	ctx, c := startOperator(t)

	rc := createCluster(ctx, t, c, "live")
	count := func(nodeType string) int {
		var pods corev1.PodList
		c.List(ctx, &pods, client.InNamespace("default"), client.MatchingLabels{raycluster.LabelCluster: "live", raycluster.LabelNodeType: nodeType})
		n := 0
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil {
				n++
			}
		}
		return n
	}
	testcluster.Eventually(t, 30*time.Second, "1 head and 2 workers", func() bool { return count("head") == 1 && count("worker") == 2 })

	// The operator writes the object's status meanwhile: retry on conflicts.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var cur rayv1.RayCluster
		if err := c.Get(ctx, client.ObjectKeyFromObject(rc), &cur); err != nil {
			return err
		}
		cur.Spec.WorkerGroupSpecs[0].Replicas = ptr.To[int32](4)
		return c.Update(ctx, &cur)
	}); err != nil {
		t.Fatal(err)
	}
	testcluster.Eventually(t, 30*time.Second, "4 workers", func() bool { return count("worker") == 4 })

	var pods corev1.PodList
	c.List(ctx, &pods, client.InNamespace("default"), client.MatchingLabels{raycluster.LabelCluster: "live", raycluster.LabelNodeType: "head"})
	if err := c.Delete(ctx, &pods.Items[0]); err != nil {
		t.Fatal(err)
	}
	// The status names the new head once a reconcile saw it in the
	// informer cache; every reconcile before that ran on a cache without it
	// and must not have created a second one (the expectations cache).
	testcluster.Eventually(t, 30*time.Second, "the status to name a new head pod", func() bool {
		var cur rayv1.RayCluster
		c.Get(ctx, client.ObjectKeyFromObject(rc), &cur)
		return cur.Status.Head.PodName != "" && cur.Status.Head.PodName != pods.Items[0].Name
	})
	if h, w := count("head"), count("worker"); h != 1 || w != 4 {
		t.Errorf("%d heads, %d workers once the cache caught up; want 1 and 4", h, w)
	}

	bad := &rayv1.RayCluster{ObjectMeta: metav1.ObjectMeta{Name: "bad", Namespace: "default"}}
	bad.Spec.HeadGroupSpec.Template.Spec.Containers = nil
	bad.Spec.HeadGroupSpec.Template.Spec.Containers = []corev1.Container{}
	if err := c.Create(ctx, bad); err != nil {
		t.Fatal(err)
	}
	testcluster.Eventually(t, 30*time.Second, "an InvalidRayClusterSpec event", func() bool {
		var evs eventsv1.EventList
		c.List(ctx, &evs, client.InNamespace("default"))
		for _, e := range evs.Items {
			if e.Regarding.Name == "bad" && e.Reason == rayv1.InvalidSpec && e.Type == corev1.EventTypeWarning {
				return true
			}
		}
		return false
	})

	job := &rayv1.RayJob{ObjectMeta: metav1.ObjectMeta{Name: "nojob", Namespace: "default"}, Spec: rayv1.RayJobSpec{Entrypoint: "true"}}
	if err := c.Create(ctx, job); err != nil {
		t.Fatal(err)
	}
	testcluster.Eventually(t, 30*time.Second, "the RayJob marked ValidationFailed", func() bool {
		var cur rayv1.RayJob
		c.Get(ctx, client.ObjectKeyFromObject(job), &cur)
		return cur.Status.JobDeploymentStatus == rayv1.JobDeploymentStatusValidationFailed
	})
}

// TestTokenSecretIsWatchedAndItsPodsShareTheToken: the cluster's token
// Secret is watched. Deleted while the cluster runs, it is made anew with
// a new token at once, a Warning Event says so, and every pod (holding the
// lost token) is replaced by one annotated with the new token's hash; a
// token the user edits likewise replaces the pods started with the old one.
func TestTokenSecretIsWatchedAndItsPodsShareTheToken(t *testing.T) {
	ctx, c := startOperator(t)

	rc := createCluster(ctx, t, c, "tok")
	secretKey := client.ObjectKey{Namespace: "default", Name: raycluster.AuthSecretName(rc)}
	token := func() string {
		var s corev1.Secret
		if err := c.Get(ctx, secretKey, &s); err != nil {
			return ""
		}
		return string(s.Data[raycluster.AuthTokenKey])
	}
	livePods := func() []corev1.Pod {
		var pods corev1.PodList
		c.List(ctx, &pods, client.InNamespace("default"), client.MatchingLabels{raycluster.LabelCluster: "tok"})
		var out []corev1.Pod
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil {
				out = append(out, p)
			}
		}
		return out
	}
	// allWith tells whether the cluster has its 3 pods, none named in
	// old, every one annotated with tok's hash.
	allWith := func(tok string, old map[string]bool) bool {
		pods := livePods()
		if tok == "" || len(pods) != 3 {
			return false
		}
		for _, p := range pods {
			if old[p.Name] || p.Annotations[raycluster.AnnotationAuthTokenHash] != raycluster.TokenHash([]byte(tok)) {
				return false
			}
		}
		return true
	}
	names := func() map[string]bool {
		out := map[string]bool{}
		for _, p := range livePods() {
			out[p.Name] = true
		}
		return out
	}
	warned := func(reason string) bool {
		var evs eventsv1.EventList
		c.List(ctx, &evs, client.InNamespace("default"))
		for _, e := range evs.Items {
			if e.Regarding.Name == "tok" && e.Reason == reason && e.Type == corev1.EventTypeWarning {
				return true
			}
		}
		return false
	}

	testcluster.Eventually(t, 30*time.Second, "3 pods annotated with the token's hash", func() bool { return allWith(token(), nil) })
	first, firstPods := token(), names()

	var s corev1.Secret
	if err := c.Get(ctx, secretKey, &s); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, &s); err != nil {
		t.Fatal(err)
	}
	testcluster.Eventually(t, 30*time.Second, "the Secret made anew with a new token", func() bool { t := token(); return t != "" && t != first })
	second := token()
	testcluster.Eventually(t, 30*time.Second, "an AuthSecretRecreated Warning", func() bool { return warned("AuthSecretRecreated") })
	testcluster.Eventually(t, 30*time.Second, "3 new pods with the new token's hash", func() bool { return allWith(second, firstPods) })
	if tok := token(); tok != second {
		t.Fatalf("the token changed again: %q, then %q", second, tok)
	}

	// The user edits the token: the pods started with the old one go.
	secondPods := names()
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var s corev1.Secret
		if err := c.Get(ctx, secretKey, &s); err != nil {
			return err
		}
		s.Data[raycluster.AuthTokenKey] = []byte("edited-token")
		return c.Update(ctx, &s)
	}); err != nil {
		t.Fatal(err)
	}
	testcluster.Eventually(t, 30*time.Second, "3 new pods with the edited token's hash", func() bool { return allWith("edited-token", secondPods) })
	testcluster.Eventually(t, 30*time.Second, "an AuthTokenChanged Warning", func() bool { return warned("AuthTokenChanged") })
}
