package raycluster

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	ctrl "sigs.k8s.io/controller-runtime"

	rayv1 "github.com/goray/goray/operator/api/v1"
	"github.com/goray/goray/operator/scheme"
	"github.com/goray/goray/testcluster"
)

// reconcileLog records when each cluster was reconciled.
type reconcileLog struct {
	mu    sync.Mutex
	times map[string][]time.Time
}

func (l *reconcileLog) of(name string) []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Time(nil), l.times[name]...)
}

// waitFor polls until name was reconciled n times and returns those times.
func (l *reconcileLog) waitFor(t *testing.T, name string, n int, timeout time.Duration) []time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if ts := l.of(name); len(ts) >= n {
			return ts
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s reconciled %d times in %v, want %d", name, len(l.of(name)), timeout, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startController runs the RayCluster controller in a manager watching ns
// (with the controller's real watches, predicates, rate limiter and event
// recorder), logging every reconcile.
func startController(t *testing.T, ns string) (*Reconciler, *reconcileLog) {
	t.Helper()
	skip := true
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:     scheme.New(),
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Cache:      cache.Options{DefaultNamespaces: map[string]cache.Config{ns: {}}},
		Controller: config.Controller{SkipNameValidation: &skip},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &Reconciler{Client: mgr.GetClient(), Recorder: NewRecorder(mgr.GetEventRecorder("raycluster-controller"))}
	log := &reconcileLog{times: map[string][]time.Time{}}
	logged := reconcile.Func(func(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
		log.mu.Lock()
		log.times[req.Name] = append(log.times[req.Name], time.Now())
		log.mu.Unlock()
		return r.Reconcile(ctx, req)
	})
	if err := r.watches(mgr).Complete(logged); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return r, log
}

func eventsOf(t *testing.T, ns, name string) []eventsv1.Event {
	t.Helper()
	var evs eventsv1.EventList
	if err := env.Client.List(context.Background(), &evs, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var out []eventsv1.Event
	for _, e := range evs.Items {
		if e.Regarding.Name == name {
			out = append(out, e)
		}
	}
	return out
}

// TestRefusedPodBacksOffQuietly: when the API server refuses a worker pod
// (a container named Bad_Name), the reconcile fails and is retried with
// the rate limiter's exponential backoff, not in a hot loop: the status
// and the Event name the group and the generateName prefix, never the
// random pod name, so the status is written once and stops moving and the
// Events are aggregated. A group name that is no label value is refused up
// front by validation, with no retry.
func TestRefusedPodBacksOffQuietly(t *testing.T) {
	ns := newNamespace(t)
	_, log := startController(t, ns)
	ctx := context.Background()

	rc := testCluster(ns, "refused", 1)
	rc.Spec.WorkerGroupSpecs[0].Template.Spec.Containers[0].Name = "Bad_Name"
	bad := testCluster(ns, "badgroup", 1)
	bad.Spec.WorkerGroupSpecs[0].GroupName = "bad group"
	for _, c := range []*rayv1.RayCluster{rc, bad} {
		if err := env.Client.Create(ctx, c); err != nil {
			t.Fatal(err)
		}
	}

	// The rate limiter waits 5ms·2^k before the k+1th retry of a failing
	// key: the 8th reconcile comes within a second or two, and the 10th at
	// least 5ms·(2^6+2^7) ≈ 1s after it (a little less if an event
	// added the key meanwhile). Between the two, the cluster must not
	// change: the window in which "it stays quiet" is observed is this
	// backoff, not a sleep.
	ts := log.waitFor(t, "refused", 8, 30*time.Second)
	var before rayv1.RayCluster
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(rc), &before); err != nil {
		t.Fatal(err)
	}
	ts = log.waitFor(t, "refused", 10, 30*time.Second)
	if gap := ts[9].Sub(ts[7]); gap < 500*time.Millisecond {
		t.Errorf("reconciles 8 to 10 of a failing cluster took %v: no backoff (%d reconciles so far)", gap, len(log.of("refused")))
	}
	var after rayv1.RayCluster
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(rc), &after); err != nil {
		t.Fatal(err)
	}
	if after.ResourceVersion != before.ResourceVersion || after.Generation != before.Generation {
		t.Errorf("the cluster kept changing while its reconcile failed: resourceVersion %s → %s", before.ResourceVersion, after.ResourceVersion)
	}
	if r := after.Status.Reason; !strings.Contains(r, "group small (refused-small-worker-*)") || !strings.Contains(r, "Bad_Name") {
		t.Errorf("status reason %q does not name the group and the refusal", r)
	}

	// One FailedCreateWorkerPod Event (or one per resourceVersion the
	// cluster had), its repeats counted in its series.
	testcluster.Eventually(t, 20*time.Second, "the refusal's Event to be aggregated", func() bool {
		for _, e := range eventsOf(t, ns, "refused") {
			if e.Reason == rayv1.FailedCreateWorkerPod && e.Series != nil && e.Series.Count >= 2 {
				return true
			}
		}
		return false
	})
	if evs := eventsOf(t, ns, "refused"); len(evs) > 5 {
		var notes []string
		for _, e := range evs {
			notes = append(notes, e.Reason+": "+e.Note)
		}
		t.Errorf("%d Events for the cluster, want at most 5:\n%s", len(evs), strings.Join(notes, "\n"))
	}

	// The invalid group: one InvalidRayClusterSpec Event naming the group
	// and the rule, no pod, no retry.
	testcluster.Eventually(t, 20*time.Second, "an InvalidRayClusterSpec Event", func() bool {
		for _, e := range eventsOf(t, ns, "badgroup") {
			if e.Reason == rayv1.InvalidSpec && e.Type == corev1.EventTypeWarning &&
				strings.Contains(e.Note, `groupName "bad group" is not a valid label value`) {
				return true
			}
		}
		return false
	})
	var pods corev1.PodList
	if err := env.Client.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{LabelCluster: "badgroup"}); err != nil || len(pods.Items) != 0 {
		t.Errorf("pods of the invalid cluster: %d (%v)", len(pods.Items), err)
	}
	if n := len(log.of("badgroup")); n > 1 {
		t.Errorf("the invalid cluster was reconciled %d times, want once (its status write must not trigger another)", n)
	}
}

// TestLongEventNoteIsTruncated: a note over the API server's 1024
// characters reaches the API cut to fit, its start and its end kept with
// "..." between.
func TestLongEventNoteIsTruncated(t *testing.T) {
	ns := newNamespace(t)
	r, _ := startController(t, ns)
	rc := testCluster(ns, "longnote", 0)
	rc.Spec.Suspend = ptr.To(true)
	if err := env.Client.Create(context.Background(), rc); err != nil {
		t.Fatal(err)
	}
	long := "start " + strings.Repeat("é", 1500) // 3000 bytes, runes of two
	r.Recorder.Eventf(rc, nil, corev1.EventTypeWarning, "Long", "Test", "%s and the end", long)
	var got string
	testcluster.Eventually(t, 20*time.Second, "the long Event in the API", func() bool {
		for _, e := range eventsOf(t, ns, "longnote") {
			if e.Reason == "Long" {
				got = e.Note
				return true
			}
		}
		return false
	})
	if len(got) > 1024 || !strings.HasPrefix(got, "start éé") || !strings.Contains(got, "é...é") || !strings.HasSuffix(got, "éé and the end") {
		t.Errorf("note of %d bytes: %q…%q", len(got), got[:10], got[len(got)-10:])
	}
}
