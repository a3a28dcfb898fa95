package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goray/goray"
	"github.com/goray/goray/internal/provider/docker"
	"github.com/goray/goray/testcluster"
)

// The docker provider: the head on the host scales up containers with
// their own addresses on the cluster's network, tasks run in them, idle
// ones are removed, and once the head is gone and goray stop ran nothing
// of the cluster is left.
func TestAutoscalerDockerProvider(t *testing.T) {
	image := testcluster.DockerImage(t)
	cluster := fmt.Sprintf("e2e-docker-%d", os.Getpid())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := docker.RemoveCluster(ctx, cluster); err != nil { // a run killed midway
		t.Fatal(err)
	}
	t.Cleanup(func() { docker.RemoveCluster(context.Background(), cluster) })

	cfg := filepath.Join(t.TempDir(), "cluster.yaml")
	os.WriteFile(cfg, []byte(`cluster_name: `+cluster+`
max_workers: 2
idle_timeout_minutes: 0.05
provider:
  type: docker
  image: `+image+`
head_node_type: head
available_node_types:
  head:
    resources: {CPU: 0}
    node_config: {}
  worker:
    resources: {CPU: 2, memory: 536870912, object_store_memory: 67108864}
    node_config: {}
    max_workers: 2
`), 0o644)
	// --node-ip-address= (empty) overrides the test default of 127.0.0.1:
	// the head then advertises the network's gateway, which containers reach.
	c := testcluster.Start(t, testcluster.Options{
		HeadFlags: []string{"--num-cpus=0", "--node-ip-address=", "--autoscaling-config=" + cfg},
		Env:       []string{"AUTOSCALER_UPDATE_INTERVAL_S=0.3"},
	})
	if strings.HasPrefix(c.Address, "127.") {
		t.Fatalf("the head advertises %s; want the docker network's gateway", c.Address)
	}
	gcs := c.GCS()
	connect(t, c)

	var refs []goray.ObjectRef[string]
	for i := 0; i < 4; i++ {
		refs = append(refs, whereAmI.Remote(goray.Val(3*time.Second)))
	}
	ran := map[string]bool{}
	for _, r := range refs {
		ran[getT(t, r)] = true
	}
	alive, _ := workerNodes(t, gcs)
	if len(alive) != 2 {
		t.Fatalf("%d container nodes after four 1-CPU tasks, want 2", len(alive))
	}
	ips := map[string]bool{}
	headIP := c.Head.Info.NodeIP
	for _, n := range alive {
		if n.NodeIp == headIP || ips[n.NodeIp] {
			t.Errorf("container node %s has address %s; want one of its own (head %s, others %v)", n.NodeId, n.NodeIp, headIP, ips)
		}
		ips[n.NodeIp] = true
		if !strings.HasPrefix(n.InstanceId, "goray-"+cluster+"-worker-") {
			t.Errorf("node %s has provider id %q, want its container's name", n.NodeId, n.InstanceId)
		}
	}
	for id := range ran {
		if id == c.Head.Info.NodeID {
			t.Errorf("a task ran on the 0-CPU head")
		}
	}

	testcluster.Eventually(t, 60*time.Second, "idle containers removed", func() bool {
		alive, _ := workerNodes(t, gcs)
		return len(alive) == 0 && len(containers(t, ctx, cluster)) == 0
	})

	// Scale up again, then kill the head with a node running: goray stop
	// on its host still removes the cluster's containers and network.
	getT(t, whereAmI.Remote(goray.Val(time.Duration(0))))
	if len(containers(t, ctx, cluster)) != 1 {
		t.Fatalf("want one container for the new task")
	}
	goray.Shutdown()
	c.Head.Kill()
	if out, err := c.Goray("stop"); err != nil {
		t.Fatalf("goray stop: %v\n%s", err, out)
	}
	if cs := containers(t, ctx, cluster); len(cs) != 0 {
		t.Fatalf("containers left after the head died and goray stop ran: %v", cs)
	}
	out, err := exec.Command("docker", "network", "ls", "-q", "--filter", "label=ray-cluster-name="+cluster).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		mon, _ := os.ReadFile(filepath.Join(c.Head.Info.SessionDir, "logs", "monitor.log"))
		t.Fatalf("the cluster's network is left after goray stop (%v): %s\nmonitor.log:\n%s", err, out, mon)
	}
}

// containers lists the cluster's worker containers through a provider.
func containers(t *testing.T, ctx context.Context, cluster string) []string {
	t.Helper()
	p, err := docker.New(ctx, docker.Config{ClusterName: cluster})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ns, err := p.NonTerminatedNodes(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, n := range ns {
		ids = append(ids, n.ID)
	}
	return ids
}
