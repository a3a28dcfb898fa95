package docker

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/goray/goray"
	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/provider"
	"github.com/goray/goray/proto/rpcpb"
	"github.com/goray/goray/testcluster"
)

// The test binary is the driver of the task test: the raylets in the
// containers fetch it from the GCS and start it in worker mode, so it must
// run there (a dynamically linked binary: the image carries glibc).
func TestMain(m *testing.M) {
	if goray.IsWorker() {
		goray.Init() // serves tasks; never returns
	}
	os.Exit(m.Run())
}

// whereAmI reports the node and the hostname (the container's name) a task
// ran on.
var whereAmI = goray.Register0("dockertest.whereAmI", func(ctx context.Context) (string, error) {
	h, err := os.Hostname()
	return goray.NodeID() + " " + h, err
})

// testClusterPrefix starts the names of the clusters these tests create:
// goraytest-<pid>, so that leftovers of dead test processes can be found.
const testClusterPrefix = "goraytest-"

func TestParseNodeConfig(t *testing.T) {
	res := map[string]float64{"CPU": 1, "object_store_memory": 100 << 20}
	s, err := parseNodeConfig("small", nil, "img", res)
	if err != nil || s.image != "img" || s.shm != 356<<20 || s.memory != 0 {
		t.Fatalf("defaults: %+v %v", s, err)
	}
	if s, _ := parseNodeConfig("small", nil, "img", nil); s.shm != 1<<30 {
		t.Fatalf("shm without an object store: %d", s.shm)
	}
	s, err = parseNodeConfig("big", map[string]any{
		"image": "other:1", "shm_size": "1g", "memory": 2147483648.0,
		"env": map[string]any{"A": "x", "N": 3},
	}, "img", res)
	if err != nil || s.image != "other:1" || s.shm != 1<<30 || s.memory != 2<<30 || s.env["A"] != "x" || s.env["N"] != "3" {
		t.Fatalf("explicit: %+v %v", s, err)
	}
	if s, err := parseNodeConfig("x", map[string]any{"shm_size": 512 << 20, "memory": "512m"}, "img", res); err != nil || s.shm != 512<<20 || s.memory != 512<<20 {
		t.Fatalf("int and string sizes: %+v %v", s, err)
	}
	for nc, want := range map[string]map[string]any{
		`unknown node_config key "InstanceType"`: {"InstanceType": "m5.large"},
		`node_config shm_size`:                   {"shm_size": "lots"},
		`node_config memory`:                     {"memory": -1},
		`node_config env`:                        {"env": []string{"A=b"}},
		`node_config image`:                      {"image": ""},
	} {
		if _, err := parseNodeConfig("t", want, "img", res); err == nil || !strings.Contains(err.Error(), nc) || !strings.Contains(err.Error(), `"t"`) {
			t.Errorf("node_config %v: got %v, want an error naming %s and the node type", want, err, nc)
		}
	}
}

func TestBadDockerHost(t *testing.T) {
	for _, host := range []string{"unix:///nonexistent/goray-test/docker.sock", "tcp://127.0.0.1:1"} {
		t.Setenv("DOCKER_HOST", host)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := New(ctx, Config{ClusterName: "goraytest-badhost"})
		if err == nil || !strings.Contains(err.Error(), host) {
			t.Errorf("New with DOCKER_HOST=%s: got %v, want an error naming it", host, err)
		}
		_, err = PrepareNetwork(ctx, Config{ClusterName: "goraytest-badhost"})
		if err == nil || !strings.Contains(err.Error(), host) {
			t.Errorf("PrepareNetwork with DOCKER_HOST=%s: got %v, want an error naming it", host, err)
		}
		if err := RemoveCluster(ctx, "goraytest-badhost"); err == nil || !strings.Contains(err.Error(), host) {
			t.Errorf("RemoveCluster with DOCKER_HOST=%s: got %v, want an error naming it", host, err)
		}
		cancel()
	}
}

// removeStale removes the test clusters of test processes that are gone,
// found by their labels, and returns a client for the test.
func removeStale(t *testing.T, ctx context.Context) {
	t.Helper()
	cli, err := connect(ctx)
	if err != nil {
		t.Fatalf("these tests need a running Docker daemon: %v", err)
	}
	defer cli.Close()
	clusters := map[string]bool{}
	cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", provider.TagClusterName))})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		clusters[c.Labels[provider.TagClusterName]] = true
	}
	nws, err := cli.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("label", LabelManaged+"=true"))})
	if err != nil {
		t.Fatal(err)
	}
	for _, nw := range nws {
		clusters[nw.Labels[provider.TagClusterName]] = true
	}
	for name := range clusters {
		rest, ok := strings.CutPrefix(name, testClusterPrefix)
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(strings.SplitN(rest, "-", 2)[0])
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == syscall.ESRCH {
			t.Logf("removing cluster %s left by an earlier run", name)
			if err := RemoveCluster(ctx, name); err != nil {
				t.Errorf("remove stale cluster %s: %v", name, err)
			}
		}
	}
}

func gcsNodes(t *testing.T, ctx context.Context, gcs rpcpb.GcsServiceClient) []*rpcpb.NodeInfo {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ns, err := gcs.GetAllNodes(cctx, &rpcpb.Empty{})
	if err != nil {
		t.Fatalf("GetAllNodes: %v", err)
	}
	return ns.Nodes
}

func TestDockerCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	removeStale(t, ctx)
	image := testcluster.DockerImage(t)

	cluster := fmt.Sprintf("%s%d", testClusterPrefix, os.Getpid())
	cfg := Config{ClusterName: cluster, Image: image}
	gw, err := PrepareNetwork(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := PrepareNetwork(ctx, cfg); err != nil || again != gw {
		t.Fatalf("PrepareNetwork again: %s %v, want %s", again, err, gw)
	}
	t.Logf("network goray_%s, gateway %s", cluster, gw)

	// The head runs on the host, on the bridge's gateway, with no CPUs of
	// its own so that tasks run in the containers.
	c := testcluster.Start(t, testcluster.Options{HeadFlags: []string{"--node-ip-address=" + gw, "--num-cpus=0"}})
	t.Cleanup(func() { // before the head stops
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		for _, name := range []string{cluster, cluster + "-bad"} {
			if err := RemoveCluster(cctx, name); err != nil {
				t.Errorf("RemoveCluster %s: %v", name, err)
			}
		}
		cli, err := connect(cctx)
		if err != nil {
			t.Error(err)
			return
		}
		defer cli.Close()
		for _, name := range []string{cluster, cluster + "-bad"} {
			f := filters.NewArgs(filters.Arg("label", provider.TagClusterName+"="+name))
			cs, err := cli.ContainerList(cctx, container.ListOptions{All: true, Filters: f})
			if err != nil || len(cs) != 0 {
				t.Errorf("after RemoveCluster %s: containers %v (%v)", name, cs, err)
			}
			nws, err := cli.NetworkList(cctx, network.ListOptions{Filters: f})
			if err != nil || len(nws) != 0 {
				t.Errorf("after RemoveCluster %s: networks %v (%v)", name, nws, err)
			}
		}
	})
	conn, err := grpc.NewClient(c.Address, append(auth.DialOptions(c.Token), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	gcs := rpcpb.NewGcsServiceClient(conn)

	cfg.Params = provider.Params{GCSAddress: c.Address, Token: c.Token}
	p, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	// A node of another provider whose token is wrong: its goray exits
	// during start-up, which its provider must report. It runs meanwhile.
	bad, err := New(ctx, Config{ClusterName: cluster + "-bad", Network: p.Network(), Image: image,
		Params: provider.Params{GCSAddress: c.Address, Token: "not-the-token"}})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if err := bad.CreateNodes(ctx, provider.CreateRequest{NodeType: "broken", Count: 1,
		Tags:      map[string]string{provider.TagNodeKind: provider.KindWorker, provider.TagUserNodeType: "broken"},
		Resources: map[string]float64{"CPU": 1}}); err != nil {
		t.Fatal(err)
	}

	tags := map[string]string{provider.TagNodeKind: provider.KindWorker, provider.TagUserNodeType: "small",
		provider.TagNodeStatus: provider.StatusUninitialized, provider.TagLaunchConfig: "abc123"}
	req := provider.CreateRequest{NodeType: "small", Count: 2, Tags: tags,
		Resources: map[string]float64{"CPU": 1, "object_store_memory": 100 << 20},
		Labels:    map[string]string{"zone": "docker"}}

	// Refused before any container exists.
	bogus := req
	bogus.NodeConfig = map[string]any{"InstanceType": "m5.large"}
	if err := p.CreateNodes(ctx, bogus); err == nil || !strings.Contains(err.Error(), `"InstanceType"`) {
		t.Errorf("unknown node_config key: %v", err)
	}
	bogus.NodeConfig = map[string]any{"image": "goray-test-missing:latest"}
	if err := p.CreateNodes(ctx, bogus); err == nil || !strings.Contains(err.Error(), `image "goray-test-missing:latest" not found: build it with bash deploy/image/build.sh`) {
		t.Errorf("missing image: %v", err)
	}

	start := time.Now()
	if err := p.CreateNodes(ctx, req); err != nil {
		t.Fatal(err)
	}
	var nodes []provider.Node
	testcluster.Eventually(t, 90*time.Second, "2 running containers registered as alive GCS nodes", func() bool {
		nodes, err = p.NonTerminatedNodes(ctx, map[string]string{provider.TagUserNodeType: "small"})
		if err != nil {
			t.Fatal(err)
		}
		if len(nodes) != 2 || !nodes[0].Running || !nodes[1].Running {
			return false
		}
		alive := map[string]bool{}
		for _, n := range gcsNodes(t, ctx, gcs) {
			if n.State == rpcpb.NodeState_ALIVE && !n.IsHead {
				alive[n.NodeIp] = true
			}
		}
		return len(alive) == 2 && alive[nodes[0].InternalIP] && alive[nodes[1].InternalIP]
	})
	t.Logf("2 nodes up in %s", time.Since(start).Round(time.Millisecond))
	if f := p.Failures(); len(f) != 0 {
		t.Errorf("failures of healthy nodes: %q", f)
	}

	// The provider's view: names, tags, addresses.
	gcsByIP := map[string]*rpcpb.NodeInfo{}
	for _, n := range gcsNodes(t, ctx, gcs) {
		if n.State == rpcpb.NodeState_ALIVE {
			gcsByIP[n.NodeIp] = n
		}
	}
	ips := map[string]bool{gw: true}
	for _, n := range nodes {
		if !strings.HasPrefix(n.ID, "goray-"+cluster+"-worker-") {
			t.Errorf("node ID %q, want goray-%s-worker-<hex>", n.ID, cluster)
		}
		for k, v := range tags {
			if n.Tags[k] != v {
				t.Errorf("node %s tag %s = %q, want %q (tags %v)", n.ID, k, n.Tags[k], v, n.Tags)
			}
		}
		if n.Tags[provider.TagClusterName] != cluster || len(n.Tags) != len(tags)+1 {
			t.Errorf("node %s tags %v: want the request's tags and the cluster name only", n.ID, n.Tags)
		}
		if ips[n.InternalIP] || n.ExternalIP != n.InternalIP {
			t.Errorf("node %s IPs %s/%s: want distinct from each other and the head (%s)", n.ID, n.InternalIP, n.ExternalIP, gw)
		}
		ips[n.InternalIP] = true
		if ip, err := p.InternalIP(ctx, n.ID); err != nil || ip != n.InternalIP {
			t.Errorf("InternalIP(%s) = %s, %v; want %s", n.ID, ip, err, n.InternalIP)
		}
		if ip, err := p.ExternalIP(ctx, n.ID); err != nil || ip != n.InternalIP {
			t.Errorf("ExternalIP(%s) = %s, %v; want %s", n.ID, ip, err, n.InternalIP)
		}
		g := gcsByIP[n.InternalIP]
		if g.Total["CPU"] != 1 || g.Total["object_store_memory"] != 100<<20 || g.Labels["zone"] != "docker" {
			t.Errorf("GCS node at %s: resources %v labels %v", n.InternalIP, g.Total, g.Labels)
		}
	}
	if _, err := p.InternalIP(ctx, "goray-no-such-node"); err == nil {
		t.Error("InternalIP of an unknown node: no error")
	}

	// SetNodeTags: kept in memory, merged into the labels.
	if err := p.SetNodeTags(ctx, nodes[0].ID, map[string]string{provider.TagNodeStatus: provider.StatusUpToDate}); err != nil {
		t.Fatal(err)
	}
	if err := p.SetNodeTags(ctx, "goray-no-such-node", map[string]string{"a": "b"}); err == nil {
		t.Error("SetNodeTags of an unknown node: no error")
	}
	upToDate, err := p.NonTerminatedNodes(ctx, map[string]string{provider.TagNodeStatus: provider.StatusUpToDate})
	if err != nil || len(upToDate) != 1 || upToDate[0].ID != nodes[0].ID || upToDate[0].Tags[provider.TagLaunchConfig] != "abc123" {
		t.Fatalf("nodes up-to-date after SetNodeTags: %+v %v", upToDate, err)
	}

	// A real task on each container node, run by this test binary fetched
	// from the GCS (dynamically linked: glibc in the image).
	t.Run("tasks", func(t *testing.T) {
		t.Setenv("GORAY_AUTH_TOKEN", c.Token)
		t.Setenv("HOME", c.Home)
		if err := goray.Init(goray.Address(c.Address)); err != nil {
			t.Fatal(err)
		}
		defer goray.Shutdown()
		for _, n := range nodes {
			id := gcsByIP[n.InternalIP].NodeId
			got, err := goray.Get(ctx, whereAmI.Options(goray.NodeAffinity(id, false)).Remote(), goray.Timeout(90*time.Second))
			if err != nil {
				t.Fatalf("task on node %s (%s): %v", n.ID, id, err)
			}
			if want := id + " " + n.ID; got != want {
				t.Errorf("task pinned to %s ran at %q, want %q", n.ID, got, want)
			}
		}
	})

	// TerminateNodes: gone from the provider, dead in the GCS, not a failure.
	gone := nodes[0]
	if err := p.TerminateNodes(ctx, []string{gone.ID, "goray-no-such-node"}); err != nil {
		t.Fatal(err)
	}
	left, err := p.NonTerminatedNodes(ctx, nil)
	if err != nil || len(left) != 1 || left[0].ID != nodes[1].ID {
		t.Fatalf("after terminating %s: %+v %v", gone.ID, left, err)
	}
	testcluster.Eventually(t, 30*time.Second, "the GCS to mark the terminated node dead", func() bool {
		for _, n := range gcsNodes(t, ctx, gcs) {
			if n.NodeIp == gone.InternalIP {
				return n.State == rpcpb.NodeState_DEAD
			}
		}
		return false
	})
	if f := p.Failures(); len(f) != 0 {
		t.Errorf("a terminated node was reported as a failure: %q", f)
	}

	// The node with the wrong token exited during start-up: removed, and
	// reported with its exit code and log.
	testcluster.Eventually(t, 60*time.Second, "the broken node to exit and be reaped", func() bool {
		ns, err := bad.NonTerminatedNodes(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		return len(ns) == 0
	})
	f := bad.Failures()
	if len(f) != 1 || !strings.HasPrefix(f[0].NodeID, "goray-"+cluster+"-bad-worker-") || f[0].NodeType != "broken" ||
		!strings.Contains(f[0].Detail, "exited with code 1") || !strings.Contains(f[0].Detail, "invalid token") {
		t.Errorf("failures of the broken node: %q", f)
	} else {
		t.Logf("reported: %s", f[0])
	}
}
