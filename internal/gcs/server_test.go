package gcs

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/version"
	"github.com/goray/goray/proto/rpcpb"
)

// fakeRaylet answers health checks until stopped.
type fakeRaylet struct {
	rpcpb.UnimplementedRayletServer
}

func (fakeRaylet) HealthCheck(context.Context, *rpcpb.Empty) (*rpcpb.Empty, error) {
	return &rpcpb.Empty{}, nil
}

func startRaylet(t *testing.T, token string) (addr string, stop func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(auth.ServerOptions(token)...)
	rpcpb.RegisterRayletServer(s, fakeRaylet{})
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return ln.Addr().String(), s.Stop
}

func startGCS(t *testing.T, storage string) (*Server, rpcpb.GcsServiceClient) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Start(Config{
		Listener: ln, StoragePath: storage, BinaryDir: filepath.Join(t.TempDir(), "bin"), Token: "tok",
		HealthCheckPeriod: 50 * time.Millisecond, HealthCheckTimeout: 50 * time.Millisecond, FailureThreshold: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(ln.Addr().String(), append(auth.DialOptions("tok"), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return s, rpcpb.NewGcsServiceClient(conn)
}

func TestConfigValidate(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	for _, c := range []Config{
		{},
		{Listener: ln},
		{Listener: ln, BinaryDir: "x", HealthCheckTimeout: time.Second, FailureThreshold: 1},
		{Listener: ln, BinaryDir: "x", HealthCheckPeriod: time.Second, FailureThreshold: 1},
		{Listener: ln, BinaryDir: "x", HealthCheckPeriod: time.Second, HealthCheckTimeout: time.Second},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("config %+v accepted", c)
		}
	}
}

func TestNodeDeathLeavesViewInSameStep(t *testing.T) {
	s, gcs := startGCS(t, "")
	defer s.Stop()
	ctx := context.Background()
	addr, stopRaylet := startRaylet(t, "tok")
	sub, err := gcs.Subscribe(ctx, &rpcpb.SubscribeRequest{Channels: []string{"node"}})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := sub.Recv(); err != nil || m.Channel != "subscribed" {
		t.Fatalf("subscribe: %v %v", m, err)
	}
	node := &rpcpb.NodeInfo{NodeId: "n1", RayletAddress: addr, Total: map[string]float64{"CPU": 4}, Version: version.Version}
	if _, err := gcs.RegisterNode(ctx, node); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.Recv(); err != nil || m.Node.NodeId != "n1" || m.Node.State != rpcpb.NodeState_ALIVE {
		t.Fatalf("alive event: %v %v", m, err)
	}
	v, err := gcs.ReportResources(ctx, &rpcpb.ResourceReport{NodeId: "n1", Available: map[string]float64{"CPU": 1},
		Demands: []*rpcpb.ResourceDemand{{Shape: map[string]float64{"CPU": 2}, Count: 3}}})
	if err != nil || v.Nodes[0].Available["CPU"] != 1 || v.Nodes[0].Demands[0].Count != 3 {
		t.Fatalf("report: %v %v", v, err)
	}
	stopRaylet()
	m, err := sub.Recv()
	if err != nil || m.Node.State != rpcpb.NodeState_DEAD || m.Node.DeathReason == "" {
		t.Fatalf("dead event: %v %v", m, err)
	}
	// The view read right after the DEAD event no longer counts the node.
	v, err = gcs.GetClusterView(ctx, &rpcpb.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	if n := v.Nodes[0]; n.Node.State != rpcpb.NodeState_DEAD || len(n.Available) != 0 || len(n.Demands) != 0 {
		t.Fatalf("dead node still in the view: %v", n)
	}
	// A dead node's reports are refused, so its raylet learns it is dead.
	_, err = gcs.ReportResources(ctx, &rpcpb.ResourceReport{NodeId: "n1"})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("report from a dead node: %v", err)
	}
}

func TestRegisterRefusesOtherVersion(t *testing.T) {
	s, gcs := startGCS(t, "")
	defer s.Stop()
	_, err := gcs.RegisterNode(context.Background(), &rpcpb.NodeInfo{NodeId: "n", RayletAddress: "127.0.0.1:1", Version: "9.9.9"})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("register of another version: %v", err)
	}
}

func TestKVNamespaces(t *testing.T) {
	s, gcs := startGCS(t, "")
	defer s.Stop()
	ctx := context.Background()
	put := func(ns, k, v string, overwrite bool) bool {
		r, err := gcs.KVPut(ctx, &rpcpb.KVRequest{Namespace: ns, Key: k, Value: []byte(v), Overwrite: overwrite})
		if err != nil {
			t.Fatal(err)
		}
		return r.Added
	}
	get := func(ns, k string) string {
		r, err := gcs.KVGet(ctx, &rpcpb.KVRequest{Namespace: ns, Key: k})
		if err != nil {
			t.Fatal(err)
		}
		return string(r.Value)
	}
	if !put("a", "k", "1", false) || !put("b", "k", "2", false) {
		t.Fatal("first puts should add")
	}
	if put("a", "k", "3", false) || get("a", "k") != "1" {
		t.Fatal("put without overwrite must keep the old value")
	}
	put("a", "k", "3", true)
	put("a", "k2", "x", false)
	if get("a", "k") != "3" || get("b", "k") != "2" {
		t.Fatal("namespaces are not separate")
	}
	keys, _ := gcs.KVKeys(ctx, &rpcpb.KVRequest{Namespace: "a", Key: "k"})
	if len(keys.Keys) != 2 {
		t.Fatalf("keys: %v", keys.Keys)
	}
	if d, _ := gcs.KVDel(ctx, &rpcpb.KVRequest{Namespace: "a", Key: "k"}); !d.Found {
		t.Fatal("delete should find the key")
	}
	if r, _ := gcs.KVGet(ctx, &rpcpb.KVRequest{Namespace: "a", Key: "k"}); r.Found {
		t.Fatal("deleted key still found")
	}
	if _, err := gcs.KVPut(ctx, &rpcpb.KVRequest{Namespace: "a"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("empty key: %v", err)
	}
}

func TestTablesSurviveRestartWithStoragePath(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, gcs := startGCS(t, dir)
	addr, _ := startRaylet(t, "tok")
	gcs.RegisterNode(ctx, &rpcpb.NodeInfo{NodeId: "n1", RayletAddress: addr, Total: map[string]float64{"CPU": 2}, Version: version.Version})
	j1, err := gcs.AddJob(ctx, &rpcpb.JobInfo{Version: version.Version, DriverPid: 7})
	if err != nil {
		t.Fatal(err)
	}
	if j1.JobId != "01000000" {
		t.Fatalf("first job id %q, want Ray's little-endian 01000000", j1.JobId)
	}
	gcs.MarkJobFinished(ctx, &rpcpb.JobID{JobId: j1.JobId})
	gcs.KVPut(ctx, &rpcpb.KVRequest{Namespace: "ns", Key: "k", Value: []byte("v")})
	s.Stop()

	s2, gcs2 := startGCS(t, dir)
	defer s2.Stop()
	jobs, err := gcs2.GetAllJobs(ctx, &rpcpb.Empty{})
	if err != nil || len(jobs.Jobs) != 1 || !jobs.Jobs[0].IsDead || jobs.Jobs[0].DriverPid != 7 {
		t.Fatalf("jobs after restart: %v %v", jobs, err)
	}
	if r, _ := gcs2.KVGet(ctx, &rpcpb.KVRequest{Namespace: "ns", Key: "k"}); string(r.Value) != "v" {
		t.Fatalf("kv after restart: %q", r.Value)
	}
	nodes, _ := gcs2.GetAllNodes(ctx, &rpcpb.Empty{})
	if len(nodes.Nodes) != 1 || nodes.Nodes[0].NodeId != "n1" || nodes.Nodes[0].State != rpcpb.NodeState_ALIVE {
		t.Fatalf("nodes after restart: %v", nodes)
	}
	j2, _ := gcs2.AddJob(ctx, &rpcpb.JobInfo{Version: version.Version})
	if j2.JobId != "02000000" {
		t.Fatalf("job counter not persisted: %q", j2.JobId)
	}
}

func TestBinaryStoreChecksContent(t *testing.T) {
	s, gcs := startGCS(t, "")
	defer s.Stop()
	ctx := context.Background()
	const hash = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824" // sha256("hello")
	up, _ := gcs.PutBinary(ctx)
	up.Send(&rpcpb.Chunk{Hash: hash, Data: []byte("hel")})
	up.Send(&rpcpb.Chunk{Data: []byte("lo")})
	if _, err := up.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	if r, _ := gcs.HasBinary(ctx, &rpcpb.BinaryRef{Hash: hash}); !r.Found {
		t.Fatal("uploaded binary not found")
	}
	down, _ := gcs.GetBinary(ctx, &rpcpb.BinaryRef{Hash: hash})
	c, err := down.Recv()
	if err != nil || string(c.Data) != "hello" {
		t.Fatalf("download: %q %v", c.GetData(), err)
	}
	bad, _ := gcs.PutBinary(ctx)
	bad.Send(&rpcpb.Chunk{Hash: hash, Data: []byte("evil")})
	if _, err := bad.CloseAndRecv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("mismatching upload: %v", err)
	}
	if _, err := gcs.HasBinary(ctx, &rpcpb.BinaryRef{Hash: "../etc/passwd"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad hash: %v", err)
	}
}

type fakeDriver struct {
	rpcpb.UnimplementedCoreWorkerServer
	pings chan struct{}
}

func (d fakeDriver) Ping(context.Context, *rpcpb.Empty) (*rpcpb.Empty, error) {
	select {
	case d.pings <- struct{}{}:
	default:
	}
	return &rpcpb.Empty{}, nil
}

func TestJobFinishesWhenItsDriverDies(t *testing.T) {
	s, gcs := startGCS(t, "")
	defer s.Stop()
	ctx := context.Background()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	drv := grpc.NewServer(auth.ServerOptions("tok")...)
	pings := make(chan struct{}, 16)
	rpcpb.RegisterCoreWorkerServer(drv, fakeDriver{pings: pings})
	go drv.Serve(ln)
	sub, _ := gcs.Subscribe(ctx, &rpcpb.SubscribeRequest{Channels: []string{"job"}})
	sub.Recv()
	j, err := gcs.AddJob(ctx, &rpcpb.JobInfo{Version: version.Version, DriverAddress: ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := sub.Recv(); m.Job.IsDead {
		t.Fatal("new job is dead")
	}
	// Pings answered for more than the failure threshold: the job lives.
	for i := 0; i < 4; i++ {
		<-pings
	}
	jobs, _ := gcs.GetAllJobs(ctx, &rpcpb.Empty{})
	if jobs.Jobs[0].IsDead {
		t.Fatal("job of a live driver was finished")
	}
	drv.Stop()
	m, err := sub.Recv()
	if err != nil || m.Job.JobId != j.JobId || !m.Job.IsDead || m.Job.EndTimeMs == 0 {
		t.Fatalf("job of a dead driver: %v %v", m, err)
	}
}

func TestStoreAndFetchFiles(t *testing.T) {
	s, client := startGCS(t, "")
	defer s.Stop()
	ctx := context.Background()
	dir := t.TempDir()
	for name, content := range map[string]string{"empty": "", "data": strings.Repeat("goray ", 400000)} {
		src := filepath.Join(dir, name)
		if err := os.WriteFile(src, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		hash, err := StoreFile(ctx, client, src)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if again, err := StoreFile(ctx, client, src); err != nil || again != hash {
			t.Fatalf("%s stored twice: %s %v", name, again, err)
		}
		got, err := FetchFile(ctx, client, hash, filepath.Join(dir, "out"), name, 0o755)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(got)
		fi, _ := os.Stat(got)
		if string(b) != content || fi.Mode().Perm() != 0o755 {
			t.Fatalf("%s fetched back: %d bytes, mode %v", name, len(b), fi.Mode())
		}
	}
	if _, err := FetchFile(ctx, client, strings.Repeat("0", 64), dir, "missing", 0o644); err == nil {
		t.Fatal("fetching an unknown hash succeeded")
	}
}

// TestSetLaunchableShapes: the shapes reach the cluster view, setting the
// same ones again leaves the view's version alone (raylets are not woken
// for nothing), and a bad amount is refused without changing anything.
func TestSetLaunchableShapes(t *testing.T) {
	_, c := startGCS(t, "")
	ctx := context.Background()
	shapes := &rpcpb.LaunchableShapes{Shapes: []*rpcpb.ResourceShape{{Resources: map[string]float64{"CPU": 4}}, {Resources: map[string]float64{"CPU": 8, "GPU": 1}}}}
	if _, err := c.SetLaunchableShapes(ctx, shapes); err != nil {
		t.Fatal(err)
	}
	v1, err := c.GetClusterView(ctx, &rpcpb.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	if len(v1.Launchable) != 2 || v1.Launchable[1].Resources["GPU"] != 1 {
		t.Fatalf("view's launchable shapes %v, want the two set", v1.Launchable)
	}
	if _, err := c.SetLaunchableShapes(ctx, shapes); err != nil {
		t.Fatal(err)
	}
	if v2, _ := c.GetClusterView(ctx, &rpcpb.Empty{}); v2.Version != v1.Version {
		t.Errorf("setting the same shapes moved the view from version %d to %d", v1.Version, v2.Version)
	}
	_, err = c.SetLaunchableShapes(ctx, &rpcpb.LaunchableShapes{Shapes: []*rpcpb.ResourceShape{{Resources: map[string]float64{"CPU": -1}}}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `"CPU"`) {
		t.Fatalf("negative amount: %v, want InvalidArgument naming CPU", err)
	}
	if v3, _ := c.GetClusterView(ctx, &rpcpb.Empty{}); len(v3.Launchable) != 2 || v3.Version != v1.Version {
		t.Errorf("a refused call changed the view: %v (version %d, was %d)", v3.Launchable, v3.Version, v1.Version)
	}
	if _, err := c.SetLaunchableShapes(ctx, &rpcpb.LaunchableShapes{}); err != nil {
		t.Fatal(err)
	}
	if v4, _ := c.GetClusterView(ctx, &rpcpb.Empty{}); len(v4.Launchable) != 0 {
		t.Errorf("clearing left %v", v4.Launchable)
	}
}
