package kuberay_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/goray/goray"
	rayv1 "github.com/goray/goray/operator/api/v1"
	"github.com/goray/goray/operator/manager"
	"github.com/goray/goray/operator/raycluster"
	"github.com/goray/goray/operator/test/testenv"
	"github.com/goray/goray/proto/rpcpb"
	"github.com/goray/goray/testcluster"
)

// The test binary is a goray program: raylets start it in worker mode.
func TestMain(m *testing.M) {
	if goray.IsWorker() {
		goray.Init() // never returns
	}
	os.Exit(m.Run())
}

var whereAmI = goray.Register1("kuberay.whereAmI", func(ctx context.Context, sleep time.Duration) (string, error) {
	time.Sleep(sleep)
	return goray.NodeID(), nil
})

// writeKubeconfig writes dir/name, a kubeconfig for the test API server's
// admin whose cluster entry has the server and the given lines (""
// means the inline CA).
func writeKubeconfig(t *testing.T, cfg *rest.Config, dir, name, cluster string) string {
	b64 := base64.StdEncoding.EncodeToString
	if cluster == "" {
		cluster = "    certificate-authority-data: " + b64(cfg.CAData)
	}
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
current-context: test
clusters:
- name: test
  cluster:
    server: %s
%s
users:
- name: admin
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: test
  context: {cluster: test, user: admin}
`, cfg.Host, cluster, b64(cfg.CertData), b64(cfg.KeyData))
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestKubeRayAutoscalerScalesTheRayCluster: a goray head on loopback and
// `goray kuberay-autoscaler` pointed at the test API server. The head has
// no CPUs (as KubeRay users often set it), so the demand fits only the
// worker group: the autoscaler, a separate process, tells the GCS so and
// the raylet queues the tasks as demand instead of calling them
// infeasible. The demand raises the worker group's replicas (the operator then creates
// pods, for which the test starts goray worker nodes as a kubelet would);
// once the demand is gone and the workers idle, the autoscaler lowers
// replicas and names exactly those pods in workersToDelete, and the
// operator deletes them.
func TestKubeRayAutoscalerScalesTheRayCluster(t *testing.T) {
	env, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer env.Stop()
	mgr, err := manager.New(env.Config, manager.Config{MetricsAddr: "0", ProbeAddr: "0", SkipNameValidation: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	mgrDone := make(chan error, 1)
	mctx, mcancel := context.WithCancel(ctx)
	go func() { mgrDone <- mgr.Start(mctx) }()
	defer func() { mcancel(); <-mgrDone }()
	c := env.Client

	rc := &rayv1.RayCluster{ObjectMeta: metav1.ObjectMeta{Name: "auto", Namespace: "default"}}
	rc.Spec.EnableInTreeAutoscaling = ptr.To(true)
	rc.Spec.AutoscalerOptions = &rayv1.AutoscalerOptions{IdleTimeoutSeconds: ptr.To[int32](2)}
	rc.Spec.HeadGroupSpec.RayStartParams = map[string]string{"num-cpus": "0"}
	rc.Spec.HeadGroupSpec.Template.Spec.Containers = []corev1.Container{{Name: "ray-head", Image: "goray:test"}}
	g := rayv1.WorkerGroupSpec{GroupName: "small", Replicas: ptr.To[int32](0), MinReplicas: ptr.To[int32](0), MaxReplicas: ptr.To[int32](3)}
	g.Template.Spec.Containers = []corev1.Container{{Name: "ray-worker", Image: "goray:test", Resources: corev1.ResourceRequirements{
		Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("1Gi")}}}}
	rc.Spec.WorkerGroupSpecs = []rayv1.WorkerGroupSpec{g}
	if err := c.Create(ctx, rc); err != nil {
		t.Fatal(err)
	}

	head := testcluster.Start(t, testcluster.Options{HeadFlags: []string{"--num-cpus=0"}})
	var logs testcluster.SyncBuffer
	as := exec.Command(head.Bin, "kuberay-autoscaler", "--cluster-name=auto", "--cluster-namespace=default",
		"--kubeconfig="+writeKubeconfig(t, env.Config, t.TempDir(), "kubeconfig", ""), "--address="+head.Address)
	as.Env = append(head.Env(), "AUTOSCALER_UPDATE_INTERVAL_S=0.3")
	as.Stdout, as.Stderr = &logs, &logs
	if err := as.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		as.Process.Kill()
		as.Wait()
		if t.Failed() {
			t.Logf("kuberay-autoscaler log:\n%s", logs.String())
		}
	}()

	get := func() *rayv1.RayCluster {
		var cur rayv1.RayCluster
		if err := c.Get(ctx, client.ObjectKeyFromObject(rc), &cur); err != nil {
			t.Fatal(err)
		}
		return &cur
	}
	workers := func() []corev1.Pod {
		var pods corev1.PodList
		c.List(ctx, &pods, client.InNamespace("default"), client.MatchingLabels{raycluster.LabelCluster: "auto", raycluster.LabelNodeType: "worker"})
		var out []corev1.Pod
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil {
				out = append(out, p)
			}
		}
		return out
	}

	// A job whose entrypoint needs a CPU and two 1-CPU tasks, where the head
	// has none: they wait as demand, and three 1-CPU workers are asked for.
	// The entrypoint waits in the head's job manager, which the autoscaler
	// (another process) learns of through the GCS.
	if out, err := head.Goray("job", "submit", "--no-wait", "--submission-id=needs-a-cpu", "--entrypoint-num-cpus=1", "--", "echo entrypoint ran"); err != nil {
		t.Fatalf("job submit: %v\n%s", err, out)
	}
	t.Setenv("GORAY_AUTH_TOKEN", head.Token)
	t.Setenv("HOME", head.Home)
	if err := goray.Init(goray.Address(head.Address)); err != nil {
		t.Fatal(err)
	}
	defer goray.Shutdown()
	var refs []goray.ObjectRef[string]
	for range 2 {
		refs = append(refs, whereAmI.Remote(goray.Val(8*time.Second)))
	}
	// Before any worker exists the head's raylet reports the tasks as
	// demand a worker group can run, not as infeasible.
	gcs := head.GCS()
	testcluster.Eventually(t, 30*time.Second, "the tasks reported as feasible demand", func() bool {
		v, err := gcs.GetClusterView(ctx, &rpcpb.Empty{})
		if err != nil {
			return false
		}
		var tasks, entrypoints int64
		for _, n := range v.Nodes {
			for _, d := range n.Demands {
				if d.Infeasible {
					return false
				}
				tasks += d.Count
			}
			for _, d := range n.EntrypointDemands {
				entrypoints += d.Count
			}
		}
		return tasks > 0 && entrypoints == 1
	})
	// The "kubelet": every worker pod the operator creates gets a goray
	// node (with the pod's name as its instance id) and is reported
	// running.
	started := map[string]bool{}
	kubelet := func() {
		for i, p := range workers() {
			if started[p.Name] {
				continue
			}
			started[p.Name] = true
			head.AddNode(testcluster.NodeOptions{CPUs: 1, Env: []string{"GORAY_CLOUD_INSTANCE_ID=" + p.Name, "GORAY_NODE_TYPE_NAME=small"}})
			p.Status.Phase = corev1.PodRunning
			p.Status.PodIP = fmt.Sprintf("127.0.0.%d", i+2)
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "ray-worker", Image: "goray:test", Ready: true,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}}}
			if err := c.Status().Update(ctx, &p); err != nil {
				t.Fatal(err)
			}
		}
	}
	type result struct {
		node string
		err  error
	}
	results := make(chan result, len(refs))
	go func() {
		for _, r := range refs {
			id, err := goray.Get(ctx, r, goray.Timeout(90*time.Second))
			results <- result{id, err}
		}
	}()
	ran := map[string]bool{}
	for n := 0; n < len(refs); {
		kubelet()
		select {
		case res := <-results:
			if res.err != nil {
				t.Fatal(res.err)
			}
			ran[res.node] = true
			n++
		case <-time.After(100 * time.Millisecond):
		}
	}
	// Each worker has 1 CPU and the tasks overlap: two workers ran them,
	// and the third ran the job's entrypoint.
	if ran[head.Head.Info.NodeID] {
		t.Errorf("a task ran on the head, which has no CPUs")
	}
	if len(ran) != 2 {
		t.Errorf("the 2 tasks ran on %d nodes, want 2", len(ran))
	}
	var status string
	testcluster.Eventually(t, 60*time.Second, "the job's entrypoint to run on a worker", func() bool {
		kubelet()
		status, _ = head.Goray("job", "status", "needs-a-cpu")
		return strings.Contains(status, "SUCCEEDED")
	})
	if len(started) != 3 {
		t.Errorf("the operator made %d worker pods; want 3", len(started))
	}

	// Demand gone: after the 2 s idle timeout every worker is named in
	// workersToDelete and the operator deletes it.
	named := map[string]bool{}
	testcluster.Eventually(t, 60*time.Second, "replicas lowered to 0 and the workers deleted", func() bool {
		kubelet()
		cur := get()
		for _, n := range cur.Spec.WorkerGroupSpecs[0].ScaleStrategy.WorkersToDelete {
			named[n] = true
		}
		return *cur.Spec.WorkerGroupSpecs[0].Replicas == 0 && len(workers()) == 0
	})
	for name := range started {
		if !named[name] {
			t.Errorf("pod %s was deleted without being named in workersToDelete (named: %v)", name, named)
		}
	}
	if len(named) != len(started) {
		t.Errorf("workersToDelete named %v, want exactly the %d workers", named, len(started))
	}
}
