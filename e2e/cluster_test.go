package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/goray/goray"
	"github.com/goray/goray/proto/rpcpb"
	"github.com/goray/goray/testcluster"
)

func nodeIDs(c *testcluster.Cluster) []string {
	ids := []string{c.Head.Info.NodeID}
	for _, w := range c.Workers {
		ids = append(ids, w.Info.NodeID)
	}
	return ids
}

func TestSpreadCustomResourceAndArgs(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Workers: 2})
	special := c.AddNode(testcluster.NodeOptions{Flags: []string{`--resources={"special": 2}`, "--labels=zone=b"}})
	connect(t, c)

	seen := map[string]int{}
	var refs []goray.ObjectRef[string]
	for i := 0; i < 12; i++ {
		refs = append(refs, whereAmI.Options(goray.Spread()).Remote(goray.Val(300*time.Millisecond)))
	}
	for _, r := range refs {
		seen[getT(t, r)]++
	}
	for _, id := range nodeIDs(c) {
		if seen[id] == 0 {
			t.Errorf("SPREAD tasks never ran on node %s: %v", id, seen)
		}
	}

	for i := 0; i < 3; i++ {
		got := getT(t, whereAmI.Options(goray.Resources(map[string]float64{"special": 1})).Remote(goray.Val(time.Duration(0))))
		if got != special.Info.NodeID {
			t.Fatalf("task needing 'special' ran on %s, want %s", got, special.Info.NodeID)
		}
	}

	// Hard node affinity pins to the named node.
	got := getT(t, whereAmI.Options(goray.NodeAffinity(c.Workers[0].Info.NodeID, false)).Remote(goray.Val(time.Duration(0))))
	if got != c.Workers[0].Info.NodeID {
		t.Fatalf("node affinity ran on %s, want %s", got, c.Workers[0].Info.NodeID)
	}

	// Refs as arguments, including a chain of task results.
	a, err := goray.Put(40)
	if err != nil {
		t.Fatal(err)
	}
	b := sum.Remote(a, goray.Val(1))
	if v := getT(t, sum.Remote(b, goray.Val(1))); v != 42 {
		t.Fatalf("sum chain = %d, want 42", v)
	}
	ready, notReady, err := goray.Wait(context.Background(), []goray.AnyRef{a, b}, 2, 10*time.Second)
	if err != nil || len(ready) != 2 || len(notReady) != 0 {
		t.Fatalf("Wait: ready=%d notReady=%d err=%v", len(ready), len(notReady), err)
	}
}

func TestNodeDeathRetriesAndStatus(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Workers: 2})
	var out testcluster.SyncBuffer
	connect(t, c, goray.LogOutput(&out))
	victim := c.Workers[0]

	var refs []goray.ObjectRef[string]
	for i := 0; i < 3; i++ {
		refs = append(refs, announce.Options(goray.Spread()).Remote(goray.Val("t"), goray.Val(1500*time.Millisecond)))
	}
	testcluster.Eventually(t, 20*time.Second, "a task to start on the victim", func() bool {
		return strings.Contains(out.String(), "started t on "+victim.Info.NodeID)
	})
	// Worker output reaches the driver with Ray's prefix.
	if !regexp.MustCompile(`(?m)^\(e2e\.announce pid=\d+, ip=127\.0\.0\.1\) started t on `).MatchString(out.String()) {
		t.Errorf("worker output lacks the (task pid=, ip=) prefix:\n%s", out.String())
	}
	victim.Kill()

	// Every task finishes: the one on the dead node is retried elsewhere.
	for _, r := range refs {
		if id := getT(t, r); id == victim.Info.NodeID {
			t.Errorf("a task reported the killed node %s", id)
		}
	}
	// goray status shows the node dead and its CPU gone from the totals.
	var st string
	testcluster.Eventually(t, 10*time.Second, "status to show the dead node", func() bool {
		st, _ = c.Goray("status")
		return strings.Contains(st, "node_"+victim.Info.NodeID+": NodeTerminated (ip: 127.0.0.1)") &&
			regexp.MustCompile(`(?m)^ [0-9.]+/2\.0 CPU$`).MatchString(st)
	})
	if !strings.Contains(st, "Healthy:\n 1 node_") || strings.Count(st, " 1 node_") != 2 {
		t.Errorf("status should list two healthy nodes:\n%s", st)
	}
}

func TestInfeasibleTaskIsReported(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Workers: 1})
	connect(t, c)
	ref := whereAmI.Options(goray.NumGPUs(8)).Remote(goray.Val(time.Duration(0)))
	testcluster.Eventually(t, 10*time.Second, "the infeasible demand in goray status", func() bool {
		st, _ := c.Goray("status")
		return strings.Contains(st, "Demands:\n {'CPU': 1.0, 'GPU': 8.0}: 1+ pending tasks/actors")
	})
	_, err := goray.Get(context.Background(), ref, goray.Timeout(500*time.Millisecond))
	if !errors.Is(err, goray.ErrInfeasible) || !strings.Contains(err.Error(), "GPU") {
		t.Fatalf("Get of an infeasible task: %v, want ErrInfeasible naming GPU", err)
	}
	// A feasible task still runs meanwhile.
	getT(t, whereAmI.Remote(goray.Val(time.Duration(0))))
}

func TestNestedTasksOnOneCPUNodes(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Workers: 1})
	connect(t, c)
	if v := getT(t, fib.Remote(goray.Val(6))); v != 8 {
		t.Fatalf("fib(6) = %d, want 8", v)
	}
}

func TestTaskErrorsAndCancel(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{HeadCPUs: 2})
	connect(t, c)
	ctx := context.Background()

	_, err := goray.Get(ctx, fail.Remote(goray.Val("x")))
	var te *goray.TaskError
	if !errors.As(err, &te) || te.Message != "bad input: x" || te.Panic {
		t.Fatalf("task error: %v", err)
	}
	_, err = goray.Get(ctx, fail.Remote(goray.Val("panic")))
	if !errors.As(err, &te) || !te.Panic || !strings.Contains(te.Message, "nil map") || !strings.Contains(te.Stack, "e2e.init") {
		t.Fatalf("task panic should carry message and stack: %v", err)
	}
	// Bad options and empty refs are refused before anything runs.
	if _, err := goray.Get(ctx, whereAmI.Options(goray.NumCPUs(-1)).Remote(goray.Val(time.Duration(0)))); err == nil || !strings.Contains(err.Error(), "CPU") {
		t.Fatalf("negative CPUs: %v", err)
	}
	var empty goray.ObjectRef[int]
	if _, err := goray.Get(ctx, empty); err == nil || !strings.Contains(err.Error(), "empty ObjectRef") {
		t.Fatalf("Get of an empty ref: %v", err)
	}
	// A large by-value argument travels through the object store.
	big := make([]byte, 5<<20)
	big[12345] = 7
	if n := getT(t, byteSum.Remote(goray.Val(big))); n != 7 {
		t.Fatalf("large by-value argument: sum %d, want 7", n)
	}
	// An error propagates through a dependent task.
	_, err = goray.Get(ctx, sum.Remote(fail.Remote(goray.Val("dep")), goray.Val(1)))
	if !errors.As(err, &te) || te.Message != "bad input: dep" {
		t.Fatalf("dependency error: %v", err)
	}

	// Cancel a running task (its context ends) and a stubborn one (force).
	slow := whereAmI.Remote(goray.Val(time.Hour))
	stubborn := ignoreCancel.Remote()
	testcluster.Eventually(t, 20*time.Second, "both tasks to run", func() bool {
		st, _ := c.Goray("status")
		return strings.Contains(st, " 2.0/2.0 CPU")
	})
	if err := goray.Cancel(slow, false); err != nil {
		t.Fatal(err)
	}
	if err := goray.Cancel(stubborn, true); err != nil {
		t.Fatal(err)
	}
	if _, err := goray.Get(ctx, slow, goray.Timeout(20*time.Second)); !errors.Is(err, goray.ErrTaskCancelled) {
		t.Fatalf("cancelled task: %v", err)
	}
	if _, err := goray.Get(ctx, stubborn, goray.Timeout(20*time.Second)); !errors.Is(err, goray.ErrTaskCancelled) {
		t.Fatalf("force-cancelled task: %v", err)
	}
}

func TestGPUIDsAssigned(t *testing.T) {
	bin := t.TempDir()
	fake := "#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-0)'\necho 'GPU 1: NVIDIA H200 (UUID: GPU-1)'\n"
	if err := os.WriteFile(filepath.Join(bin, "nvidia-smi"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	c := testcluster.Start(t, testcluster.Options{})
	gpuNode := c.AddNode(testcluster.NodeOptions{CPUs: 2, Env: []string{"PATH=" + bin + ":" + os.Getenv("PATH")}})
	connect(t, c)
	st, err := c.Goray("status")
	if err != nil || !strings.Contains(st, " 0.0/2.0 GPU") {
		t.Fatalf("fake nvidia-smi GPUs not detected: %v\n%s", err, st)
	}
	a := gpuIDs.Options(goray.NumGPUs(1)).Remote(goray.Val(time.Second))
	b := gpuIDs.Options(goray.NumGPUs(1)).Remote(goray.Val(time.Second))
	ga, gb := getT(t, a), getT(t, b)
	if !((ga == "0" && gb == "1") || (ga == "1" && gb == "0")) {
		t.Fatalf("CUDA_VISIBLE_DEVICES of two concurrent 1-GPU tasks: %q and %q", ga, gb)
	}
	if both := getT(t, gpuIDs.Options(goray.NumGPUs(2)).Remote(goray.Val(time.Duration(0)))); both != "0,1" && both != "1,0" {
		t.Fatalf("2-GPU task got %q", both)
	}
	if none := getT(t, gpuIDs.Options(goray.NodeAffinity(gpuNode.Info.NodeID, false)).Remote(goray.Val(time.Duration(0)))); none != "" {
		t.Fatalf("task without GPUs sees CUDA_VISIBLE_DEVICES=%q", none)
	}
}

func TestCallsWithoutTokenAreRefused(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	conn, err := grpc.NewClient(c.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	gcs := rpcpb.NewGcsServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := gcs.GetAllNodes(ctx, &rpcpb.Empty{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("GCS call without token: %v, want Unauthenticated", err)
	}
	bad := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer wrong")
	if _, err := gcs.GetAllNodes(bad, &rpcpb.Empty{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("GCS call with a wrong token: %v, want PermissionDenied", err)
	}
	raylet := rpcpb.NewRayletClient(mustConn(t, c.Head.Info.RayletAddress))
	if _, err := raylet.HealthCheck(ctx, &rpcpb.Empty{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("raylet call without token: %v, want Unauthenticated", err)
	}
	good := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.Token)
	if _, err := gcs.GetAllNodes(good, &rpcpb.Empty{}); err != nil {
		t.Fatalf("GCS call with the token: %v", err)
	}
	// A driver built with another goray version is refused, naming both.
	_, err = gcs.AddJob(good, &rpcpb.JobInfo{Version: "0.0.1-other"})
	if err == nil || !strings.Contains(err.Error(), "0.0.1-other") || !strings.Contains(err.Error(), goray.Version()) {
		t.Fatalf("version mismatch: %v", err)
	}
	// The CLI with a wrong token fails clearly.
	c.Token = "wrong"
	if _, err := c.Goray("status"); err == nil || !strings.Contains(err.Error(), "invalid token") {
		t.Fatalf("goray status with a wrong token: %v", err)
	}
}

func mustConn(t *testing.T, addr string) *grpc.ClientConn {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
