// Package e2e runs the operator against a real API server with pods that
// really run: a Docker stand-in for the kubelet starts the goray image
// with the commands, environment and probes the operator rendered.
package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rayv1 "github.com/goray/goray/operator/api/v1"
	"github.com/goray/goray/operator/manager"
	"github.com/goray/goray/operator/raycluster"
	"github.com/goray/goray/operator/test/testenv"
	"github.com/goray/goray/testcluster"
)

// A KubeRay sample with the goray image: what a KubeRay user applies.
const manifest = `apiVersion: ray.io/v1
kind: RayCluster
metadata:
  name: kuberay-sample
  namespace: default
spec:
  rayVersion: "2.46.0"
  headGroupSpec:
    rayStartParams: {}
    template:
      spec:
        containers:
        - name: ray-head
          image: IMAGE
          resources:
            limits: {cpu: "1", memory: 2Gi}
            requests: {cpu: "1", memory: 2Gi}
          ports:
          - {containerPort: 6379, name: gcs-server}
          - {containerPort: 8265, name: dashboard}
          - {containerPort: 10001, name: client}
  workerGroupSpecs:
  - groupName: workergroup
    replicas: 1
    minReplicas: 1
    maxReplicas: 5
    rayStartParams: {}
    template:
      spec:
        containers:
        - name: ray-worker
          image: IMAGE
          resources:
            limits: {cpu: "1", memory: 1Gi}
            requests: {cpu: "1", memory: 1Gi}
`

// TestRayClusterPodsRun: the operator's pods, started as a kubelet would
// (init container, command, env with the Secret's token), form a goray
// cluster whose nodes register with their pod IPs and the pods' names as
// instance ids; the RayCluster's status turns ready from the pods' real
// probes; scaling up adds a node, and a pod named in workersToDelete is
// deleted, its node leaving the cluster.
func TestRayClusterPodsRun(t *testing.T) {
	image := testcluster.DockerImage(t)
	env, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer env.Stop()
	mgr, err := manager.New(env.Config, manager.Config{MetricsAddr: "0", ProbeAddr: "0", SkipNameValidation: true, Requeue: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	mctx, mcancel := context.WithCancel(ctx)
	mgrDone := make(chan error, 1)
	go func() { mgrDone <- mgr.Start(mctx) }()
	defer func() { mcancel(); <-mgrDone }()
	c := env.Client

	var rc rayv1.RayCluster
	if err := yaml.NewYAMLOrJSONDecoder(strings.NewReader(strings.ReplaceAll(manifest, "IMAGE", image)), 4096).Decode(&rc); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &rc); err != nil {
		t.Fatal(err)
	}
	k := startKubelet(t, c, image, "default", rc.Name)

	get := func() *rayv1.RayCluster {
		var cur rayv1.RayCluster
		if err := c.Get(ctx, client.ObjectKeyFromObject(&rc), &cur); err != nil {
			t.Fatal(err)
		}
		return &cur
	}
	pods := func(nodeType string) []corev1.Pod {
		var l corev1.PodList
		c.List(ctx, &l, client.InNamespace("default"), client.MatchingLabels{raycluster.LabelCluster: rc.Name, raycluster.LabelNodeType: nodeType})
		var out []corev1.Pod
		for _, p := range l.Items {
			if p.DeletionTimestamp == nil {
				out = append(out, p)
			}
		}
		return out
	}
	// aliveNodes lists the ALIVE nodes' IPs as the head sees them.
	aliveNodes := func(head string) map[string]string {
		out, err := k.exec(head, "goray", "list", "nodes")
		if err != nil {
			return nil
		}
		nodes := map[string]string{}
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) >= 5 && f[3] == "ALIVE" {
				nodes[f[1]] = strings.Join(f[4:], " ")
			}
		}
		return nodes
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for !cond() {
			if f := k.failures(); len(f) > 0 {
				t.Fatalf("waiting for %s: the kubelet could not run pods: %v", what, f)
			}
			if time.Now().After(deadline) {
				cur := get()
				t.Fatalf("timed out waiting for %s; status %s", what, jsonString(cur.Status))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	start := time.Now()
	wait("the cluster ready with 1 ready worker", func() bool {
		s := get().Status
		return s.State == rayv1.Ready && s.ReadyWorkerReplicas == 1 && s.AvailableWorkerReplicas == 1 && s.Head.PodIP != ""
	})
	t.Logf("RayCluster created → state ready with its worker ready: %v", time.Since(start).Round(time.Millisecond))
	head := pods(raycluster.NodeTypeHead)[0]
	worker := pods(raycluster.NodeTypeWorker)[0]
	var nodes map[string]string
	wait("both pods' nodes alive at their pod IPs", func() bool {
		nodes = aliveNodes(head.Name)
		return len(nodes) == 2 && nodes[head.Status.PodIP] != "" && nodes[worker.Status.PodIP] != ""
	})
	// num-cpus and memory come from the container limits, as KubeRay renders them.
	if w := nodes[worker.Status.PodIP]; !strings.Contains(w, "CPU:1") || !strings.Contains(w, "memory:1.073741824e+09") {
		t.Errorf("worker node resources %s; want CPU 1 and 1Gi memory from the limits", w)
	}
	if h := nodes[head.Status.PodIP]; !strings.Contains(h, "CPU:1") || !strings.Contains(h, "memory:2.147483648e+09") {
		t.Errorf("head node resources %s; want CPU 1 and 2Gi memory from the limits", h)
	}
	// The worker reached the head through the head Service's name with
	// the Secret's token: a wrong token would not have registered it.
	if out, err := k.exec(worker.Name, "/bin/bash", "-c", `test "$GORAY_AUTH_TOKEN" = "$RAY_AUTH_TOKEN" && test -n "$GORAY_AUTH_TOKEN" && echo "$RAY_CLOUD_INSTANCE_ID $RAY_NODE_TYPE_NAME"`); err != nil || out != worker.Name+" workergroup" {
		t.Errorf("worker env: %q %v; want the token from the Secret and %q", out, err, worker.Name+" workergroup")
	}

	// Scale up: a second worker pod runs and its node joins.
	update := func(f func(*rayv1.RayCluster)) {
		t.Helper()
		if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur := get()
			f(cur)
			return c.Update(ctx, cur)
		}); err != nil {
			t.Fatal(err)
		}
	}
	start = time.Now()
	update(func(r *rayv1.RayCluster) { r.Spec.WorkerGroupSpecs[0].Replicas = ptr.To[int32](2) })
	wait("2 ready workers and 3 alive nodes", func() bool {
		return get().Status.ReadyWorkerReplicas == 2 && len(aliveNodes(head.Name)) == 3
	})
	t.Logf("replicas 1 → 2: new worker ready and its node alive after %v", time.Since(start).Round(time.Millisecond))

	// Scale down the way the autoscaler does: exactly the named pod goes,
	// and its node leaves the cluster.
	start = time.Now()
	update(func(r *rayv1.RayCluster) {
		r.Spec.WorkerGroupSpecs[0].Replicas = ptr.To[int32](1)
		r.Spec.WorkerGroupSpecs[0].ScaleStrategy.WorkersToDelete = []string{worker.Name}
	})
	wait(fmt.Sprintf("pod %s deleted and its node gone", worker.Name), func() bool {
		left := pods(raycluster.NodeTypeWorker)
		nodes := aliveNodes(head.Name)
		return len(left) == 1 && left[0].Name != worker.Name && len(nodes) == 2 && nodes[worker.Status.PodIP] == ""
	})
	t.Logf("workersToDelete: pod deleted and its node dead in the GCS after %v", time.Since(start).Round(time.Millisecond))
	if s := get().Status; s.State != rayv1.Ready || s.DesiredWorkerReplicas != 1 || s.ReadyWorkerReplicas != 1 {
		t.Errorf("status after scale-down: %s", jsonString(s))
	}
}
