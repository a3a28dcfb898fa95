package raycluster

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rayv1 "github.com/goray/goray/operator/api/v1"
	"github.com/goray/goray/operator/test/testenv"
)

var nsCount int

func newNamespace(t *testing.T) string {
	t.Helper()
	nsCount++
	name := fmt.Sprintf("t%d-%s", nsCount, strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())))
	if len(name) > 60 {
		name = name[:60]
	}
	name = strings.TrimRight(name, "-")
	if err := env.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
	return name
}

func testCluster(ns, name string, replicas int32) *rayv1.RayCluster {
	rc := &rayv1.RayCluster{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	rc.Spec.HeadGroupSpec.Template.Spec.Containers = []corev1.Container{{Name: "ray-head", Image: "goray:test", Resources: corev1.ResourceRequirements{
		Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("2Gi")},
	}}}
	g := rayv1.WorkerGroupSpec{GroupName: "small", Replicas: ptr.To(replicas), MinReplicas: ptr.To[int32](0), MaxReplicas: ptr.To[int32](10)}
	g.Template.Spec.Containers = []corev1.Container{{Name: "ray-worker", Image: "goray:test", Resources: corev1.ResourceRequirements{
		Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("1Gi")},
	}}}
	rc.Spec.WorkerGroupSpecs = []rayv1.WorkerGroupSpec{g}
	return rc
}

type harness struct {
	t   *testing.T
	ctx context.Context
	r   *Reconciler
	ev  *testenv.Events
}

func newHarness(t *testing.T) *harness {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	ev := &testenv.Events{}
	return &harness{t: t, ctx: ctx, ev: ev, r: &Reconciler{Client: env.Client, Recorder: ev, Expect: NewExpectations()}}
}

func (h *harness) create(rc *rayv1.RayCluster) {
	h.t.Helper()
	if err := env.Client.Create(h.ctx, rc); err != nil {
		h.t.Fatal(err)
	}
}

// reconcile runs one reconcile of rc, as the controller would on an event.
func (h *harness) reconcile(rc *rayv1.RayCluster) {
	h.t.Helper()
	if _, err := h.r.Reconcile(h.ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(rc)}); err != nil {
		h.t.Fatalf("reconcile: %v", err)
	}
}

func (h *harness) get(rc *rayv1.RayCluster) *rayv1.RayCluster {
	h.t.Helper()
	var got rayv1.RayCluster
	if err := env.Client.Get(h.ctx, client.ObjectKeyFromObject(rc), &got); err != nil {
		h.t.Fatal(err)
	}
	return &got
}

// update changes rc's spec with f, retrying on conflicts.
func (h *harness) update(rc *rayv1.RayCluster, f func(*rayv1.RayCluster)) {
	h.t.Helper()
	for i := 0; ; i++ {
		cur := h.get(rc)
		f(cur)
		err := env.Client.Update(h.ctx, cur)
		if err == nil {
			return
		}
		if i > 5 {
			h.t.Fatal(err)
		}
	}
}

func (h *harness) pods(rc *rayv1.RayCluster, nodeType string) []corev1.Pod {
	h.t.Helper()
	var pods corev1.PodList
	if err := env.Client.List(h.ctx, &pods, client.InNamespace(rc.Namespace), client.MatchingLabels{LabelCluster: rc.Name, LabelNodeType: nodeType}); err != nil {
		h.t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func names(pods []corev1.Pod) []string {
	out := make([]string, len(pods))
	for i, p := range pods {
		out[i] = p.Name
	}
	return out
}

// setPodStatus does what a kubelet would: phase, readiness and IP.
func (h *harness) setPodStatus(p corev1.Pod, phase corev1.PodPhase, ready bool, ip string) {
	h.t.Helper()
	p.Status.Phase = phase
	p.Status.PodIP = ip
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}
	if err := env.Client.Status().Update(h.ctx, &p); err != nil {
		h.t.Fatal(err)
	}
}

func envValue(c *corev1.Container, name string) (corev1.EnvVar, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e, true
		}
	}
	return corev1.EnvVar{}, false
}

// TestRayClusterCreatesHeadServiceWorkersAndSecret: one reconcile yields
// the head pod, the head Service, the worker pods with KubeRay's commands,
// probes and labels, and the token Secret given to every pod; the status
// follows pod readiness.
func TestRayClusterCreatesHeadServiceWorkersAndSecret(t *testing.T) {
	h := newHarness(t)
	ns := newNamespace(t)
	rc := testCluster(ns, "demo", 2)
	h.create(rc)
	h.reconcile(rc)

	heads := h.pods(rc, NodeTypeHead)
	if len(heads) != 1 {
		t.Fatalf("%d head pods, want 1", len(heads))
	}
	head := heads[0]
	for k, v := range map[string]string{LabelCluster: "demo", LabelNodeType: "head", LabelGroup: "headgroup", LabelIsRayNode: "yes", LabelIdentifier: "demo-head"} {
		if head.Labels[k] != v {
			t.Errorf("head label %s = %q, want %q", k, head.Labels[k], v)
		}
	}
	hc := &head.Spec.Containers[0]
	if want := "goray start --head  --block  --dashboard-agent-listen-port=52365  --dashboard-host=0.0.0.0  --memory=2147483648  --metrics-export-port=8080  --num-cpus=1 "; !strings.HasSuffix(hc.Args[0], want) || hc.Command[0] != "/bin/bash" {
		t.Errorf("head command %q %q", hc.Command, hc.Args)
	}
	if hc.LivenessProbe == nil || hc.LivenessProbe.HTTPGet.Path != "/api/healthz" || hc.LivenessProbe.HTTPGet.Port.IntValue() != 52365 {
		t.Errorf("head liveness probe %+v", hc.LivenessProbe)
	}
	if hc.ReadinessProbe == nil || hc.ReadinessProbe.HTTPGet.Path != "/api/gcs_healthz" || hc.ReadinessProbe.HTTPGet.Port.IntValue() != 8265 {
		t.Errorf("head readiness probe %+v", hc.ReadinessProbe)
	}
	for _, name := range []string{"GORAY_ADDRESS", "RAY_ADDRESS"} {
		if e, ok := envValue(hc, name); !ok || e.Value != "127.0.0.1:6379" {
			t.Errorf("head %s %+v, want 127.0.0.1:6379 as KubeRay", name, e)
		}
	}
	if e, ok := envValue(hc, EnvPodIP); !ok || e.ValueFrom.FieldRef.FieldPath != "status.podIP" {
		t.Errorf("head %s %+v", EnvPodIP, e)
	}
	var secret corev1.Secret
	if err := env.Client.Get(h.ctx, client.ObjectKey{Namespace: ns, Name: "demo-auth"}, &secret); err != nil || len(secret.Data[AuthTokenKey]) != 64 {
		t.Fatalf("token secret: %v %v", err, secret.Data)
	}
	if e, ok := envValue(hc, "GORAY_AUTH_TOKEN"); !ok || e.ValueFrom.SecretKeyRef.Name != "demo-auth" || e.ValueFrom.SecretKeyRef.Key != AuthTokenKey {
		t.Errorf("head token env %+v", e)
	}

	var svc corev1.Service
	if err := env.Client.Get(h.ctx, client.ObjectKey{Namespace: ns, Name: "demo-head-svc"}, &svc); err != nil {
		t.Fatal(err)
	}
	ports := map[string]int32{}
	for _, p := range svc.Spec.Ports {
		ports[p.Name] = p.Port
	}
	if fmt.Sprint(ports) != fmt.Sprint(map[string]int32{"client": 10001, "dashboard": 8265, "gcs-server": 6379, "metrics": 8080}) {
		t.Errorf("head service ports %v", ports)
	}
	if svc.Spec.ClusterIP != corev1.ClusterIPNone || svc.Spec.Selector[LabelNodeType] != "head" {
		t.Errorf("head service %+v", svc.Spec)
	}

	workers := h.pods(rc, NodeTypeWorker)
	if len(workers) != 2 {
		t.Fatalf("%d worker pods, want 2", len(workers))
	}
	for _, w := range workers {
		wc := &w.Spec.Containers[0]
		if w.Labels[LabelGroup] != "small" || w.Labels[LabelNodeType] != "worker" || !strings.HasPrefix(w.Name, "demo-small-worker-") {
			t.Errorf("worker %s labels %v", w.Name, w.Labels)
		}
		if !strings.Contains(wc.Args[0], "goray start  --address=demo-head-svc."+ns+".svc.cluster.local:6379  --block ") || !strings.Contains(wc.Args[0], " --num-cpus=2 ") {
			t.Errorf("worker command %q", wc.Args[0])
		}
		if wc.ReadinessProbe == nil || wc.ReadinessProbe.HTTPGet.Path != "/api/local_raylet_healthz" || wc.ReadinessProbe.HTTPGet.Port.IntValue() != 52365 {
			t.Errorf("worker readiness %+v", wc.ReadinessProbe)
		}
		if e, ok := envValue(wc, "GORAY_AUTH_TOKEN"); !ok || e.ValueFrom.SecretKeyRef.Name != "demo-auth" {
			t.Errorf("worker token env %+v", e)
		}
	}

	st := h.get(rc).Status
	if st.DesiredWorkerReplicas != 2 || st.ReadyWorkerReplicas != 0 || st.State != "" || st.DesiredCPU.String() != "5" {
		t.Errorf("status before readiness: %+v", st)
	}
	if c := meta.FindStatusCondition(st.Conditions, rayv1.HeadPodReady); c == nil || c.Status != metav1.ConditionFalse {
		t.Errorf("HeadPodReady before readiness: %+v", c)
	}

	// The "kubelet" starts the head and one worker.
	h.setPodStatus(head, corev1.PodRunning, true, "10.1.0.1")
	h.setPodStatus(workers[0], corev1.PodRunning, true, "10.1.0.2")
	h.setPodStatus(workers[1], corev1.PodRunning, false, "10.1.0.3")
	h.reconcile(rc)
	st = h.get(rc).Status
	if st.ReadyWorkerReplicas != 1 || st.AvailableWorkerReplicas != 2 || st.State != "" || st.Head.PodIP != "10.1.0.1" || st.Head.ServiceIP != "10.1.0.1" || st.Head.PodName != head.Name {
		t.Errorf("status with one worker not ready: %+v", st)
	}
	if st.Endpoints["dashboard"] != "8265" || st.Endpoints["client"] != "10001" {
		t.Errorf("endpoints %v", st.Endpoints)
	}
	h.setPodStatus(h.pods(rc, NodeTypeWorker)[1], corev1.PodRunning, true, "10.1.0.3")
	h.reconcile(rc)
	st = h.get(rc).Status
	if st.ReadyWorkerReplicas != 2 || st.State != rayv1.Ready {
		t.Errorf("status when all ready: %+v", st)
	}
	for _, ct := range []string{rayv1.HeadPodReady, rayv1.RayClusterProvisioned} {
		if !meta.IsStatusConditionTrue(st.Conditions, ct) {
			t.Errorf("condition %s not true: %+v", ct, st.Conditions)
		}
	}
	// A reconcile that changes nothing writes no status.
	rv := h.get(rc).ResourceVersion
	h.reconcile(rc)
	if got := h.get(rc).ResourceVersion; got != rv {
		t.Errorf("an idle reconcile wrote the cluster (resourceVersion %s → %s)", rv, got)
	}
}

// TestRayClusterScalesReplicas: replicas up creates pods, down deletes the
// surplus (no autoscaler), clamped to [minReplicas, maxReplicas].
func TestRayClusterScalesReplicas(t *testing.T) {
	h := newHarness(t)
	rc := testCluster(newNamespace(t), "scale", 1)
	h.create(rc)
	h.reconcile(rc)
	for _, c := range []struct{ replicas, want int32 }{{4, 4}, {1, 1}, {20, 10}, {0, 0}} {
		h.update(rc, func(rc *rayv1.RayCluster) { rc.Spec.WorkerGroupSpecs[0].Replicas = ptr.To(c.replicas) })
		h.reconcile(rc)
		if got := len(h.pods(rc, NodeTypeWorker)); got != int(c.want) {
			t.Errorf("replicas %d: %d worker pods, want %d", c.replicas, got, c.want)
		}
		if st := h.get(rc).Status; st.DesiredWorkerReplicas != c.want {
			t.Errorf("replicas %d: desiredWorkerReplicas %d", c.replicas, st.DesiredWorkerReplicas)
		}
	}
	if got := len(h.pods(rc, NodeTypeHead)); got != 1 {
		t.Errorf("%d head pods", got)
	}
}

// TestRayClusterWorkersToDeleteDeletesExactlyThem: with the autoscaler on, a
// Failed pod named in workersToDelete is deleted, the others stay, and
// lowering replicas alone deletes nothing (the autoscaler names victims).
func TestRayClusterWorkersToDeleteDeletesExactlyThem(t *testing.T) {
	h := newHarness(t)
	rc := testCluster(newNamespace(t), "wtd", 3)
	rc.Spec.EnableInTreeAutoscaling = ptr.To(true)
	h.create(rc)
	h.reconcile(rc)
	before := h.pods(rc, NodeTypeWorker)
	if len(before) != 3 {
		t.Fatalf("%d workers, want 3", len(before))
	}
	victim := before[1]
	h.setPodStatus(victim, corev1.PodFailed, false, "")
	h.update(rc, func(rc *rayv1.RayCluster) {
		rc.Spec.WorkerGroupSpecs[0].Replicas = ptr.To[int32](2)
		rc.Spec.WorkerGroupSpecs[0].ScaleStrategy.WorkersToDelete = []string{victim.Name}
	})
	h.reconcile(rc)
	after := names(h.pods(rc, NodeTypeWorker))
	if want := []string{before[0].Name, before[2].Name}; fmt.Sprint(after) != fmt.Sprint(want) {
		t.Errorf("workers after deleting %s: %v, want %v", victim.Name, after, want)
	}
	// A running pod named there goes too, whatever its phase.
	h.setPodStatus(h.pods(rc, NodeTypeWorker)[0], corev1.PodRunning, true, "10.0.0.9")
	h.update(rc, func(rc *rayv1.RayCluster) {
		rc.Spec.WorkerGroupSpecs[0].Replicas = ptr.To[int32](1)
		rc.Spec.WorkerGroupSpecs[0].ScaleStrategy.WorkersToDelete = []string{before[0].Name}
	})
	h.reconcile(rc)
	if after := names(h.pods(rc, NodeTypeWorker)); fmt.Sprint(after) != fmt.Sprint([]string{before[2].Name}) {
		t.Errorf("workers after deleting %s: %v", before[0].Name, after)
	}
	// Lower replicas without naming pods: the operator waits for the autoscaler.
	h.update(rc, func(rc *rayv1.RayCluster) {
		rc.Spec.WorkerGroupSpecs[0].Replicas = ptr.To[int32](0)
		rc.Spec.WorkerGroupSpecs[0].ScaleStrategy.WorkersToDelete = nil
	})
	h.reconcile(rc)
	if after := names(h.pods(rc, NodeTypeWorker)); len(after) != 1 {
		t.Errorf("autoscaled group lost pods no one named: %v", after)
	}
	// The head pod carries the autoscaler container.
	head := h.pods(rc, NodeTypeHead)[0]
	if len(head.Spec.Containers) != 2 || head.Spec.Containers[1].Name != "autoscaler" ||
		!strings.Contains(head.Spec.Containers[1].Args[0], "goray kuberay-autoscaler --cluster-name $(RAY_CLUSTER_NAME) --cluster-namespace $(RAY_CLUSTER_NAMESPACE)") ||
		!strings.Contains(head.Spec.Containers[0].Args[0], " --no-monitor ") || head.Spec.ServiceAccountName != "wtd" {
		t.Errorf("head pod of an autoscaled cluster: %+v", head.Spec)
	}
}

// TestRayClusterSuspendAndResume: suspend deletes every pod; resuming
// recreates them.
func TestRayClusterSuspendAndResume(t *testing.T) {
	h := newHarness(t)
	rc := testCluster(newNamespace(t), "sus", 2)
	h.create(rc)
	h.reconcile(rc)
	h.update(rc, func(rc *rayv1.RayCluster) { rc.Spec.Suspend = ptr.To(true) })
	h.reconcile(rc)
	if n := len(h.pods(rc, NodeTypeHead)) + len(h.pods(rc, NodeTypeWorker)); n != 0 {
		t.Fatalf("%d pods left while suspended", n)
	}
	h.reconcile(rc)
	st := h.get(rc).Status
	if st.State != rayv1.Suspended || !meta.IsStatusConditionTrue(st.Conditions, rayv1.RayClusterSuspended) {
		t.Errorf("suspended status %+v", st)
	}
	h.update(rc, func(rc *rayv1.RayCluster) { rc.Spec.Suspend = ptr.To(false) })
	h.reconcile(rc)
	if nh, nw := len(h.pods(rc, NodeTypeHead)), len(h.pods(rc, NodeTypeWorker)); nh != 1 || nw != 2 {
		t.Errorf("after resume: %d head, %d workers", nh, nw)
	}
	if st := h.get(rc).Status; st.State == rayv1.Suspended {
		t.Errorf("still suspended after resume: %+v", st)
	}
}

// TestRayClusterInvalidSpecIsAnEvent: an invalid spec yields a Warning
// event, a reason in the status, no pods and no error (no retry).
func TestRayClusterInvalidSpecIsAnEvent(t *testing.T) {
	h := newHarness(t)
	rc := testCluster(newNamespace(t), "bad", 1)
	rc.Spec.WorkerGroupSpecs[0].MinReplicas = ptr.To[int32](5)
	rc.Spec.WorkerGroupSpecs[0].MaxReplicas = ptr.To[int32](2)
	h.create(rc)
	h.reconcile(rc)
	if n := len(h.pods(rc, NodeTypeHead)) + len(h.pods(rc, NodeTypeWorker)); n != 0 {
		t.Errorf("%d pods for an invalid spec", n)
	}
	if ev := h.ev.Like(" " + rayv1.InvalidSpec + ": "); len(ev) != 1 || !strings.Contains(ev[0], "minReplicas 5 is greater than maxReplicas 2") {
		t.Errorf("events %v", h.ev.All())
	}
	if st := h.get(rc).Status; !strings.Contains(st.Reason, "minReplicas") {
		t.Errorf("status reason %q", st.Reason)
	}
}

func replicasOf(pods []corev1.Pod) map[string][]string {
	out := map[string][]string{}
	for _, p := range pods {
		n := p.Labels[LabelReplicaName]
		out[n] = append(out[n], p.Labels[LabelReplicaIndex]+"/"+p.Labels[LabelHostIndex])
	}
	for _, v := range out {
		sort.Strings(v)
	}
	return out
}

// TestRayClusterMultiHostGroups: a group of numOfHosts 2 gets whole
// replicas, each pod labelled with its replica's index and name and its
// host index, and a headless worker Service; scaling down or losing a pod
// removes whole replicas. A single-host group's pods get replica indices
// only.
func TestRayClusterMultiHostGroups(t *testing.T) {
	h := newHarness(t)
	rc := testCluster(newNamespace(t), "mh", 2)
	tpu := rc.Spec.WorkerGroupSpecs[0].DeepCopy()
	tpu.GroupName, tpu.NumOfHosts = "tpu", 2
	rc.Spec.WorkerGroupSpecs = append(rc.Spec.WorkerGroupSpecs, *tpu)
	h.create(rc)
	h.reconcile(rc)

	group := func(name string) []corev1.Pod {
		var out []corev1.Pod
		for _, p := range h.pods(rc, NodeTypeWorker) {
			if p.Labels[LabelGroup] == name {
				out = append(out, p)
			}
		}
		return out
	}
	small := group("small")
	if got := replicasOf(small); len(small) != 2 || fmt.Sprint(got[""]) != "[0/ 1/]" {
		t.Errorf("single-host pods by replica: %v", got)
	}
	reps := replicasOf(group("tpu"))
	if len(reps) != 2 {
		t.Fatalf("multi-host replicas %v, want 2 of 2 hosts", reps)
	}
	var indexSets []string
	for name, hs := range reps {
		if !strings.HasPrefix(name, "tpu-") || len(hs) != 2 || hs[0][1:] != "/0" || hs[1][1:] != "/1" || hs[0][0] != hs[1][0] {
			t.Errorf("replica %s: index/host %v", name, hs)
		}
		indexSets = append(indexSets, hs[0][:1])
	}
	if sort.Strings(indexSets); fmt.Sprint(indexSets) != "[0 1]" {
		t.Errorf("replica indices %v", indexSets)
	}
	var svc corev1.Service
	if err := env.Client.Get(h.ctx, client.ObjectKey{Namespace: rc.Namespace, Name: "mh-headless"}, &svc); err != nil {
		t.Fatal(err)
	}
	if svc.Spec.ClusterIP != corev1.ClusterIPNone || !svc.Spec.PublishNotReadyAddresses ||
		fmt.Sprint(svc.Spec.Selector) != fmt.Sprint(map[string]string{LabelCluster: "mh", LabelNodeType: "worker"}) {
		t.Errorf("headless service %+v", svc.Spec)
	}
	if st := h.get(rc).Status; st.DesiredWorkerReplicas != 6 {
		t.Errorf("desiredWorkerReplicas %d, want 2 + 2×2", st.DesiredWorkerReplicas)
	}

	// Down to one replica: both hosts of one replica go.
	h.update(rc, func(rc *rayv1.RayCluster) { rc.Spec.WorkerGroupSpecs[1].Replicas = ptr.To[int32](1) })
	h.reconcile(rc)
	left := replicasOf(group("tpu"))
	if len(left) != 1 {
		t.Fatalf("after scaling down: replicas %v, want 1", left)
	}
	var kept string
	for name, hs := range left {
		if len(hs) != 2 {
			t.Errorf("replica %s left with hosts %v", name, hs)
		}
		kept = name
	}

	// One host fails: its whole replica is replaced by a new one.
	h.setPodStatus(group("tpu")[0], corev1.PodFailed, false, "")
	h.reconcile(rc)
	now := replicasOf(group("tpu"))
	if _, still := now[kept]; still || len(now) != 1 {
		t.Errorf("after a host failed: replicas %v (replica %s should be gone)", now, kept)
	}
	for name, hs := range now {
		if fmt.Sprint(hs) != "[0/0 0/1]" {
			t.Errorf("new replica %s: %v", name, hs)
		}
	}
}

// TestRayClusterUpgradeStrategy: with Recreate, a change of a group's pod
// template recreates every pod (head included) from the new templates,
// and a replicas change recreates nothing; with None (as unset) a template
// change leaves the pods.
func TestRayClusterUpgradeStrategy(t *testing.T) {
	h := newHarness(t)
	ns := newNamespace(t)
	all := func(rc *rayv1.RayCluster) []string {
		return append(names(h.pods(rc, NodeTypeHead)), names(h.pods(rc, NodeTypeWorker))...)
	}
	addEnv := func(rc *rayv1.RayCluster) {
		c := &rc.Spec.WorkerGroupSpecs[0].Template.Spec.Containers[0]
		c.Env = append(c.Env, corev1.EnvVar{Name: "NEW", Value: "1"})
	}
	recreate := rayv1.Recreate
	rc := testCluster(ns, "recreate", 2)
	rc.Spec.UpgradeStrategy = &rayv1.RayClusterUpgradeStrategy{Type: &recreate}
	h.create(rc)
	h.reconcile(rc)
	before := all(rc)
	if len(before) != 3 {
		t.Fatalf("pods %v", before)
	}
	h.update(rc, func(rc *rayv1.RayCluster) { rc.Spec.WorkerGroupSpecs[0].Replicas = ptr.To[int32](3) })
	h.reconcile(rc)
	if got := all(rc); len(got) != 4 || !strings.Contains(fmt.Sprint(got), before[0]) {
		t.Errorf("a replicas change recreated pods: %v → %v", before, got)
	}
	before = all(rc)
	h.update(rc, addEnv)
	h.reconcile(rc)
	after := all(rc)
	if len(after) != 4 {
		t.Fatalf("after the template change: pods %v", after)
	}
	for _, n := range before {
		if strings.Contains(fmt.Sprint(after), n) {
			t.Errorf("pod %s survived the template change (Recreate)", n)
		}
	}
	for _, p := range h.pods(rc, NodeTypeWorker) {
		if e, ok := envValue(&p.Spec.Containers[0], "NEW"); !ok || e.Value != "1" {
			t.Errorf("worker %s not from the new template", p.Name)
		}
	}
	h.reconcile(rc)
	if again := all(rc); fmt.Sprint(again) != fmt.Sprint(after) {
		t.Errorf("pods recreated again: %v → %v", after, again)
	}

	none := testCluster(ns, "none", 1)
	h.create(none)
	h.reconcile(none)
	before = all(none)
	h.update(none, addEnv)
	h.reconcile(none)
	if got := all(none); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Errorf("upgradeStrategy unset: pods %v → %v", before, got)
	}
}

// TestRayClusterIngressIsAcceptedAndWarnedOnce: the API server keeps
// headGroupSpec.ingressOptions and workerGroupSpecs[].priority; with
// enableIngress the operator says once, in a Warning Event, that it makes
// no Ingress, and again only after it was turned off and on.
func TestRayClusterIngressIsAcceptedAndWarnedOnce(t *testing.T) {
	h := newHarness(t)
	rc := testCluster(newNamespace(t), "ing", 0)
	rc.Spec.HeadGroupSpec.EnableIngress = ptr.To(true)
	rc.Spec.HeadGroupSpec.IngressOptions = &rayv1.IngressOptions{Host: "ray.example.com", Path: "/ray"}
	rc.Spec.WorkerGroupSpecs[0].Priority = 7
	h.create(rc)
	got := h.get(rc)
	if o := got.Spec.HeadGroupSpec.IngressOptions; o == nil || o.Host != "ray.example.com" || got.Spec.WorkerGroupSpecs[0].Priority != 7 {
		t.Errorf("stored spec: ingressOptions %+v, priority %d", o, got.Spec.WorkerGroupSpecs[0].Priority)
	}
	for i := 0; i < 3; i++ {
		h.reconcile(rc)
	}
	if ev := h.ev.Like(" IngressNotSupported: "); len(ev) != 1 || !strings.Contains(ev[0], "does not create Ingresses") || !strings.HasPrefix(ev[0], "Warning ") {
		t.Errorf("ingress warnings after 3 reconciles: %v", ev)
	}
	h.update(rc, func(rc *rayv1.RayCluster) { rc.Spec.HeadGroupSpec.EnableIngress = ptr.To(false) })
	h.reconcile(rc)
	h.update(rc, func(rc *rayv1.RayCluster) { rc.Spec.HeadGroupSpec.EnableIngress = ptr.To(true) })
	h.reconcile(rc)
	h.reconcile(rc)
	if ev := h.ev.Like(" IngressNotSupported: "); len(ev) != 2 {
		t.Errorf("ingress warnings after off and on: %v", ev)
	}
}

// TestRayClusterPodsFollowTheToken: every pod is annotated with the hash
// of the token it started with. An edited token replaces the annotated
// pods with another hash and leaves unannotated ones (an older operator's)
// alone; a Secret made anew while pods exist replaces every pod, with a
// Warning Event; a cluster with the user's own Secret is not touched.
func TestRayClusterPodsFollowTheToken(t *testing.T) {
	h := newHarness(t)
	ns := newNamespace(t)
	rc := testCluster(ns, "token", 1)
	h.create(rc)
	h.reconcile(rc)
	secretKey := client.ObjectKey{Namespace: ns, Name: AuthSecretName(rc)}
	secret := func() *corev1.Secret {
		var s corev1.Secret
		if err := env.Client.Get(h.ctx, secretKey, &s); err != nil {
			t.Fatal(err)
		}
		return &s
	}
	hashOf := func(s *corev1.Secret) string { return TokenHash(s.Data[AuthTokenKey]) }
	head, workers := h.pods(rc, NodeTypeHead), h.pods(rc, NodeTypeWorker)
	if len(head) != 1 || len(workers) != 1 {
		t.Fatalf("pods: %v %v", names(head), names(workers))
	}
	for _, p := range append(head, workers...) {
		if got, want := p.Annotations[AnnotationAuthTokenHash], hashOf(secret()); got != want {
			t.Errorf("pod %s: token hash %q, want %q", p.Name, got, want)
		}
	}

	// The worker as an older operator made it: no annotation.
	old := workers[0]
	delete(old.Annotations, AnnotationAuthTokenHash)
	if err := env.Client.Update(h.ctx, &old); err != nil {
		t.Fatal(err)
	}
	s := secret()
	s.Data[AuthTokenKey] = []byte("edited")
	if err := env.Client.Update(h.ctx, s); err != nil {
		t.Fatal(err)
	}
	h.reconcile(rc)
	newHead, workers := h.pods(rc, NodeTypeHead), h.pods(rc, NodeTypeWorker)
	if len(newHead) != 1 || newHead[0].Name == head[0].Name || newHead[0].Annotations[AnnotationAuthTokenHash] != TokenHash([]byte("edited")) {
		t.Errorf("after the token was edited, heads %v (was %s)", names(newHead), head[0].Name)
	}
	if len(workers) != 1 || workers[0].Name != old.Name {
		t.Errorf("the unannotated worker %s was replaced: workers %v", old.Name, names(workers))
	}
	if ev := h.ev.Like(" AuthTokenChanged: "); len(ev) != 1 || !strings.HasPrefix(ev[0], "Warning") {
		t.Errorf("AuthTokenChanged events: %q", ev)
	}
	h.reconcile(rc)
	if again := h.pods(rc, NodeTypeHead); len(again) != 1 || again[0].Name != newHead[0].Name {
		t.Errorf("the head was replaced again: %v → %v", names(newHead), names(again))
	}

	// The Secret deleted: a new token, and every pod goes, the
	// unannotated worker too.
	if err := env.Client.Delete(h.ctx, secret()); err != nil {
		t.Fatal(err)
	}
	h.reconcile(rc)
	s = secret()
	if string(s.Data[AuthTokenKey]) == "edited" || len(s.Data[AuthTokenKey]) != 64 {
		t.Errorf("the Secret made anew holds %q", s.Data[AuthTokenKey])
	}
	if ev := h.ev.Like(" AuthSecretRecreated: "); len(ev) != 1 || !strings.HasPrefix(ev[0], "Warning") || !strings.Contains(ev[0], secretKey.Name) {
		t.Errorf("AuthSecretRecreated events: %q", ev)
	}
	h.reconcile(rc)
	pods := append(h.pods(rc, NodeTypeHead), h.pods(rc, NodeTypeWorker)...)
	if len(pods) != 2 {
		t.Fatalf("pods after the Secret was made anew: %v", names(pods))
	}
	for _, p := range pods {
		if p.Name == newHead[0].Name || p.Name == old.Name || p.Annotations[AnnotationAuthTokenHash] != hashOf(s) {
			t.Errorf("pod %s (token hash %q) was not replaced with the new token's (%q)", p.Name, p.Annotations[AnnotationAuthTokenHash], hashOf(s))
		}
	}

	// The user's own Secret: no hash, nothing replaced on its account.
	own := testCluster(ns, "own", 1)
	own.Spec.AuthOptions = &rayv1.AuthOptions{SecretName: "mine"}
	h.create(own)
	h.reconcile(own)
	for _, p := range append(h.pods(own, NodeTypeHead), h.pods(own, NodeTypeWorker)...) {
		if v, ok := p.Annotations[AnnotationAuthTokenHash]; ok {
			t.Errorf("pod %s of a cluster with the user's own Secret has token hash %q", p.Name, v)
		}
	}
}
