package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"encoding/json"

	"github.com/goray/goray"
	"github.com/goray/goray/internal/node"
	"github.com/goray/goray/proto/rpcpb"
	"github.com/goray/goray/testcluster"
)

// autoscalingCluster starts a head with 0 CPUs whose autoscaler launches
// 2-CPU process nodes.
func autoscalingCluster(t *testing.T, minWorkers int, idleMinutes string) (*testcluster.Cluster, string) {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "cluster.yaml")
	yaml := `cluster_name: e2e
max_workers: 3
upscaling_speed: 1.0
idle_timeout_minutes: ` + idleMinutes + `
provider:
  type: process
head_node_type: head
available_node_types:
  head:
    resources: {CPU: 0}
    node_config: {}
  worker:
    resources: {CPU: 2, memory: 536870912, object_store_memory: 67108864}
    node_config: {}
    min_workers: ` + string(rune('0'+minWorkers)) + `
    max_workers: 3
`
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return testcluster.Start(t, testcluster.Options{
		HeadFlags: []string{"--num-cpus=0", "--autoscaling-config=" + cfg},
		Env:       []string{"AUTOSCALER_UPDATE_INTERVAL_S=0.3"},
	}), cfg
}

// workerNodes returns the autoscaled nodes the GCS knows, alive and dead.
func workerNodes(t *testing.T, gcs rpcpb.GcsServiceClient) (alive, dead []*rpcpb.NodeInfo) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l, err := gcs.GetAllNodes(ctx, &rpcpb.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range l.Nodes {
		if n.IsHead {
			continue
		}
		if n.NodeType != "worker" || n.InstanceId == "" {
			t.Errorf("node %s joined without its node type and provider id: %q %q", n.NodeId, n.NodeType, n.InstanceId)
		}
		if n.State == rpcpb.NodeState_ALIVE {
			alive = append(alive, n)
		} else {
			dead = append(dead, n)
		}
	}
	return alive, dead
}

func TestAutoscalerProcessProviderScalesUpAndDown(t *testing.T) {
	c, cfg := autoscalingCluster(t, 0, "0.05") // 3 s idle timeout
	gcs := c.GCS()
	connect(t, c)

	// No node type can ever fit 999 GPUs: nothing is launched, goray status
	// says it is infeasible and the Get fails once its timeout passes.
	inf := whereAmI.Options(goray.NumGPUs(999)).Remote(goray.Val(time.Duration(0)))
	testcluster.Eventually(t, 15*time.Second, "the 999-GPU demand reported infeasible", func() bool {
		st, _ := c.Goray("status")
		return strings.Contains(st, "'GPU': 999.0}: 1+ pending tasks/actors (infeasible")
	})
	if _, err := goray.Get(context.Background(), inf, goray.Timeout(300*time.Millisecond)); !errors.Is(err, goray.ErrInfeasible) {
		t.Fatalf("Get of a 999-GPU task: %v, want ErrInfeasible", err)
	}
	if alive, _ := workerNodes(t, gcs); len(alive) != 0 {
		t.Fatalf("an infeasible demand launched %d nodes", len(alive))
	}
	goray.Cancel(inf, true)

	// A job whose entrypoint needs a CPU waits on the head for a node.
	out, jobErr := c.Goray("job", "submit", "--entrypoint-num-cpus=1", "--", "echo job ran on a launched node")
	if jobErr != nil || !strings.Contains(out, "job ran on a launched node") || !strings.Contains(out, "succeeded") {
		t.Fatalf("job needing a CPU: %v\n%s", jobErr, out)
	}

	// An actor that declares no resources still needs 1 CPU to be placed:
	// the head has none, so a node is launched for it.
	a, err := counterClass.Remote(goray.Val(1))
	if err != nil {
		t.Fatal(err)
	}
	if got := getT(t, incr.Remote(a, goray.Val(1))); got != 2 {
		t.Fatalf("actor call = %d, want 2", got)
	}
	onNode := getT(t, counterNode.Remote(a))
	alive, _ := workerNodes(t, gcs)
	if len(alive) != 1 || alive[0].NodeId != onNode {
		t.Fatalf("want the actor on the one launched node, got actor on %s, nodes %v", onNode, alive)
	}
	goray.Kill(a, true)

	// Six 1-CPU tasks on 2-CPU nodes: three nodes in all, never more.
	var refs []goray.ObjectRef[string]
	for i := 0; i < 6; i++ {
		refs = append(refs, whereAmI.Remote(goray.Val(4*time.Second)))
	}
	ran := map[string]int{}
	for _, r := range refs {
		ran[getT(t, r)]++ // no timeout of its own is needed: the nodes come
	}
	alive, _ = workerNodes(t, gcs)
	if len(alive) != 3 {
		t.Fatalf("%d worker nodes alive after six 1-CPU tasks, want 3 (max_workers)", len(alive))
	}
	if len(ran) < 2 {
		t.Errorf("tasks ran on %d nodes (%v), want them spread over the launched nodes", len(ran), ran)
	}
	for id := range ran {
		if id == c.Head.Info.NodeID {
			t.Errorf("a task ran on the 0-CPU head")
		}
	}

	// Idle past the timeout, every worker goes; status totals the head only.
	testcluster.Eventually(t, 60*time.Second, "idle workers terminated", func() bool {
		alive, _ := workerNodes(t, gcs)
		return len(alive) == 0
	})
	st, err := c.Goray("status")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st, "Healthy:\n 1 head\n") || !strings.Contains(st, " 0.0/0.0 CPU\n") {
		t.Errorf("status after scale-down should show only the head:\n%s", st)
	}
	if !strings.Contains(st, "Recent failures:\n (no failures)\n") {
		t.Errorf("nodes scaled down on purpose are not failures:\n%s", st)
	}

	// The head rereads its config when the file changes, as Ray's monitor
	// does: a broken edit is reported and ignored, then min_workers: 1
	// brings a node up with no demand.
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, append(b, []byte("bogus_key: 1\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	testcluster.Eventually(t, 15*time.Second, "the broken config reported", func() bool {
		st, _ = c.Goray("status")
		return strings.Contains(st, "ConfigError") && strings.Contains(st, `unknown key "bogus_key"`)
	})
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(b), "min_workers: 0", "min_workers: 1", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	testcluster.Eventually(t, 30*time.Second, "a node for the new min_workers", func() bool {
		alive, _ := workerNodes(t, gcs)
		return len(alive) == 1
	})
}

func TestAutoscalerKeepsMinWorkers(t *testing.T) {
	c, _ := autoscalingCluster(t, 1, "0.01")
	gcs := c.GCS()
	var first *rpcpb.NodeInfo
	testcluster.Eventually(t, 30*time.Second, "the min_workers node", func() bool {
		alive, _ := workerNodes(t, gcs)
		if len(alive) == 1 {
			first = alive[0]
		}
		return first != nil
	})
	// Idle far past its timeout, it stays: min_workers keeps it.
	testcluster.Eventually(t, 30*time.Second, "the node idle for 3 s", func() bool {
		v, err := gcs.GetClusterView(context.Background(), &rpcpb.Empty{})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range v.Nodes {
			if n.Node.NodeId == first.NodeId {
				return n.IdleDurationMs > 3000
			}
		}
		return false
	})
	if alive, _ := workerNodes(t, gcs); len(alive) != 1 || alive[0].NodeId != first.NodeId {
		t.Fatalf("the min_workers node was not kept: %v", alive)
	}
	st, _ := c.Goray("status")
	if !strings.Contains(st, " 1 worker\n") {
		t.Errorf("status should count the worker by type:\n%s", st)
	}

	// Killed, it is replaced.
	if err := syscall.Kill(nodePID(t, first), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testcluster.Eventually(t, 30*time.Second, "a replacement node", func() bool {
		alive, dead := workerNodes(t, gcs)
		return len(alive) == 1 && alive[0].InstanceId != first.InstanceId && len(dead) == 1
	})
	testcluster.Eventually(t, 10*time.Second, "the death in Recent failures", func() bool {
		st, _ = c.Goray("status")
		return strings.Contains(st, "Recent failures:\n worker: NodeTerminated ("+first.InstanceId)
	})

	// request_resources: two more 2-CPU bundles than the one node holds
	// launch two nodes; a bundle no type can hold is reported; clearing the
	// request lets the extra nodes go idle and leave.
	if _, err := c.Goray("request-resources", "--bundles", `[{"CPU": 2}, {"CPU": 2}, {"CPU": 2}, {"GPU": 1}]`); err != nil {
		t.Fatal(err)
	}
	testcluster.Eventually(t, 30*time.Second, "three nodes for the request", func() bool {
		alive, _ := workerNodes(t, gcs)
		return len(alive) == 3
	})
	testcluster.Eventually(t, 10*time.Second, "the request in goray status", func() bool {
		st, _ = c.Goray("status")
		return strings.Contains(st, " {'CPU': 2.0}: 3+ from request_resources()\n") &&
			strings.Contains(st, " {'GPU': 1.0}: 1+ from request_resources() (infeasible")
	})
	if _, err := c.Goray("request-resources"); err != nil {
		t.Fatal(err)
	}
	testcluster.Eventually(t, 30*time.Second, "back to min_workers", func() bool {
		alive, _ := workerNodes(t, gcs)
		return len(alive) == 1
	})

	// The head takes its process nodes with it when it stops.
	alive, _ := workerNodes(t, gcs)
	pid := nodePID(t, alive[0])
	c.Stop()
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("worker node process %d outlived its head", pid)
	}
}

// nodePID reads a node's process id from its session directory.
func nodePID(t *testing.T, n *rpcpb.NodeInfo) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.SessionDir, node.InfoFile))
	if err != nil {
		t.Fatal(err)
	}
	var info node.Info
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatal(err)
	}
	return info.PID
}
