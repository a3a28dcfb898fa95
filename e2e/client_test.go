package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/goray/goray"
	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/proto/rpcpb"
	"github.com/goray/goray/testcluster"
)

// Ray Client: this test process connects through the head's client server
// (goray://) instead of the GCS, so every call goes through a session.

var (
	makeRefs = goray.Register1("e2e.makeRefs", func(ctx context.Context, n int) ([]goray.ObjectRef[int], error) {
		out := make([]goray.ObjectRef[int], n)
		for i := range out {
			r, err := goray.Put(i * 10)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	})
	sumRefs = goray.Register1("e2e.sumRefs", func(ctx context.Context, refs []goray.ObjectRef[int]) (int, error) {
		s := 0
		for _, r := range refs {
			v, err := goray.Get(ctx, r)
			if err != nil {
				return 0, err
			}
			s += v
		}
		return s, nil
	})
	byteLen = goray.Register1("e2e.byteLen", func(ctx context.Context, b []byte) (int, error) { return len(b), nil })
)

func connectClient(t *testing.T, c *testcluster.Cluster, opts ...goray.InitOption) {
	t.Helper()
	connectClientAt(t, c, "goray://"+c.Head.Info.ClientAddress, opts...)
}

func connectClientAt(t *testing.T, c *testcluster.Cluster, addr string, opts ...goray.InitOption) {
	t.Helper()
	t.Setenv("GORAY_AUTH_TOKEN", c.Token)
	t.Setenv("HOME", c.Home)
	t.Setenv("GORAY_ADDRESS", "")
	if err := goray.Init(append([]goray.InitOption{goray.Address(addr)}, opts...)...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(goray.Shutdown)
}

func TestClientAPI(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Workers: 1, HeadCPUs: 2, WorkerCPUs: 2})
	var logs testcluster.SyncBuffer
	connectClient(t, c, goray.Namespace("clientns"), goray.LogOutput(&logs))
	ctx := context.Background()

	// Worker output comes back to the client.
	node := getT(t, announce.Remote(goray.Val("clientlog"), goray.Val(time.Duration(0))))
	testcluster.Eventually(t, 20*time.Second, "the task's output at the client", func() bool {
		return strings.Contains(logs.String(), "started clientlog on "+node)
	})
	if goray.NodeID() != c.Head.Info.NodeID {
		t.Errorf("NodeID() = %q, want the head's %q (the session runs there)", goray.NodeID(), c.Head.Info.NodeID)
	}

	// Tasks, ref arguments, refs inside values both ways.
	if got := getT(t, sum.Remote(goray.Val(2), goray.Val(3))); got != 5 {
		t.Fatalf("sum = %d", got)
	}
	a := sum.Remote(goray.Val(1), goray.Val(1))
	if got := getT(t, sum.Remote(a, sum.Remote(a, goray.Val(5)))); got != 9 {
		t.Fatalf("sum of refs = %d", got)
	}
	refs := getT(t, makeRefs.Remote(goray.Val(4)))
	if got := getT(t, sumRefs.Remote(goray.Val(refs))); got != 60 {
		t.Fatalf("sum of returned refs = %d", got)
	}
	if got := getT(t, refs[3]); got != 30 {
		t.Fatalf("borrowed ref = %d", got)
	}
	var mine []goray.ObjectRef[int]
	for i := range 3 {
		r, err := goray.Put(i + 1)
		if err != nil {
			t.Fatal(err)
		}
		mine = append(mine, r)
	}
	if got := getT(t, sumRefs.Remote(goray.Val(mine))); got != 6 {
		t.Fatalf("sum of put refs = %d", got)
	}

	// A large value both ways, in chunks.
	big := bytes.Repeat([]byte("0123456789abcdef"), 5<<20) // 80 MiB: more than the server queues ahead
	bigRef, err := goray.Put(big)
	if err != nil {
		t.Fatal(err)
	}
	if n := getT(t, byteLen.Remote(bigRef)); n != len(big) {
		t.Fatalf("task saw %d bytes", n)
	}
	back := getT(t, bigRef)
	if !bytes.Equal(back, big) {
		t.Fatalf("big value came back different (%d bytes)", len(back))
	}

	// Errors keep their kinds.
	_, err = goray.Get(ctx, fail.Remote(goray.Val("x")))
	var te *goray.TaskError
	if !errors.As(err, &te) || !strings.Contains(err.Error(), "bad input: x") {
		t.Fatalf("task error = %v", err)
	}
	_, err = goray.Get(ctx, whereAmI.Remote(goray.Val(time.Minute)), goray.Timeout(200*time.Millisecond))
	if !errors.Is(err, goray.ErrGetTimeout) {
		t.Fatalf("timeout: %v", err)
	}
	_, err = goray.Get(ctx, whereAmI.Options(goray.Resources(map[string]float64{"nope": 1})).Remote(goray.Val(time.Duration(0))), goray.Timeout(time.Second))
	if !errors.Is(err, goray.ErrInfeasible) {
		t.Fatalf("infeasible: %v", err)
	}

	// Wait and Cancel.
	slow := whereAmI.Remote(goray.Val(time.Minute))
	fast := sum.Remote(goray.Val(1), goray.Val(2))
	ready, notReady, err := goray.Wait(ctx, []goray.AnyRef{slow, fast}, 1, 30*time.Second)
	if err != nil || len(ready) != 1 || ready[0].ID() != fast.ID() || len(notReady) != 1 {
		t.Fatalf("wait: %v %v %v", ready, notReady, err)
	}
	if err := goray.Cancel(slow, false); err != nil {
		t.Fatal(err)
	}
	if _, err := goray.Get(ctx, slow, goray.Timeout(30*time.Second)); !errors.Is(err, goray.ErrTaskCancelled) {
		t.Fatalf("cancelled: %v", err)
	}

	// Actors, named actors in the session's namespace, options, Kill.
	h, err := counterClass.Options(goray.ActorName("clientcounter")).Remote(goray.Val(10))
	if err != nil {
		t.Fatal(err)
	}
	var last goray.ObjectRef[int]
	for range 50 {
		last = incr.Remote(h, goray.Val(1))
	}
	if got := getT(t, last); got != 60 {
		t.Fatalf("actor calls in order: %d", got)
	}
	same, err := goray.GetActor[Counter]("clientcounter")
	if err != nil {
		t.Fatal(err)
	}
	if got := getT(t, incr.Remote(same, goray.Val(0))); got != 60 {
		t.Fatalf("named actor: %d", got)
	}
	if err := goray.Kill(h, true); err != nil {
		t.Fatal(err)
	}
	// Kill is asynchronous, as Ray's: a call sent at once may still run,
	// and calls fail once the death is known.
	var killErr error
	testcluster.Eventually(t, 30*time.Second, "calls to the killed actor to fail", func() bool {
		_, killErr = goray.Get(ctx, incr.Remote(h, goray.Val(1)), goray.Timeout(30*time.Second))
		return killErr != nil
	})
	if !errors.Is(killErr, goray.ErrActorDied) {
		t.Fatalf("killed actor: %v", killErr)
	}
	if err := goray.RequestResources(map[string]float64{"CPU": 1}); err != nil {
		t.Fatal(err)
	}

	// The session is a DRIVER job of its own.
	out, err := c.Goray("list", "jobs")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, goray.JobID()) {
		t.Fatalf("job %s not listed:\n%s", goray.JobID(), out)
	}
	// ... also in the Jobs REST API, as a running DRIVER.
	req, _ := http.NewRequest("GET", "http://"+c.Head.Info.DashboardAddress+"/api/jobs/", nil)
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var jobs []struct {
		Type   string `json:"type"`
		JobID  string `json:"job_id"`
		Status string `json:"status"`
	}
	err = json.NewDecoder(resp.Body).Decode(&jobs)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, j := range jobs {
		found = found || (j.JobID == goray.JobID() && j.Type == "DRIVER" && j.Status == "RUNNING")
	}
	if !found {
		t.Fatalf("no running DRIVER job %s in /api/jobs/: %+v", goray.JobID(), jobs)
	}
	// Shutdown ends the session: its job finishes on the cluster.
	job := goray.JobID()
	goray.Shutdown()
	js, err := c.GCS().GetAllJobs(ctx, &rpcpb.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range js.Jobs {
		if j.JobId == job && !j.IsDead {
			t.Fatalf("job %s still running after Shutdown", job)
		}
	}
}

// headStoreObjects is how many objects the head's object store holds.
func headStoreObjects(t *testing.T, c *testcluster.Cluster) int64 {
	t.Helper()
	conn, err := grpc.NewClient(c.Head.Info.RayletAddress, append(auth.DialOptions(c.Token), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	st, err := rpcpb.NewRayletClient(conn).GetObjectStoreStats(context.Background(), &rpcpb.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	return st.NumObjects
}

func actorState(t *testing.T, c *testcluster.Cluster, id string) string {
	t.Helper()
	as, err := c.GCS().ListActors(context.Background(), &rpcpb.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as.Actors {
		if a.Spec.ActorId == id {
			return a.State.String()
		}
	}
	return "unknown"
}

// TestClientReconnect cuts the client's connection mid-run and restores it
// within the grace period: every call made before, during and after the
// cut takes effect exactly once, refs and actors survive, and a Get with
// its own timeout during the cut honours it.
func TestClientReconnect(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Workers: 1, HeadCPUs: 2, WorkerCPUs: 2})
	p := startProxy(t, c.Head.Info.ClientAddress, 0)
	t.Setenv("GORAY_CLIENT_RECONNECT_GRACE_PERIOD", "30")
	connectClientAt(t, c, "goray://"+p.Addr())
	ctx := context.Background()

	h, err := counterClass.Remote(goray.Val(0))
	if err != nil {
		t.Fatal(err)
	}
	kept, err := goray.Put("kept across the cut")
	if err != nil {
		t.Fatal(err)
	}
	var sums []goray.ObjectRef[int]
	var last goray.ObjectRef[int]
	for i := range 300 {
		last = incr.Remote(h, goray.Val(1))
		sums = append(sums, sum.Remote(goray.Val(i), goray.Val(1)))
		switch i {
		case 100:
			if got := getT(t, last); got != 101 {
				t.Fatalf("before the cut: %d", got)
			}
			p.Cut()
		case 150:
			// Disconnected: a Get honours its own timeout.
			start := time.Now()
			if _, err := goray.Get(ctx, last, goray.Timeout(500*time.Millisecond)); !errors.Is(err, goray.ErrGetTimeout) {
				t.Fatalf("Get during the cut: %v", err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("Get with a 500ms timeout took %s while disconnected", d)
			}
		case 200:
			time.Sleep(2 * time.Second)
			p.Restore()
		}
	}
	if got := getT(t, last); got != 300 {
		t.Fatalf("counter after 300 calls across a cut: %d (each call must run exactly once)", got)
	}
	for i, r := range sums {
		if got := getT(t, r); got != i+1 {
			t.Fatalf("task %d = %d", i, got)
		}
	}
	if got := getT(t, kept); got != "kept across the cut" {
		t.Fatalf("put before the cut: %q", got)
	}
	if p.Accepted() < 2 {
		t.Fatalf("the client connected %d times; the cut did not happen", p.Accepted())
	}
}

// TestClientSessionLost keeps the connection cut past the grace period:
// the client's calls fail with ErrClientSessionLost and the head releases
// the session's actors (detached ones live on).
func TestClientSessionLost(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Workers: 1})
	p := startProxy(t, c.Head.Info.ClientAddress, 0)
	connectClientAt(t, c, "goray://"+p.Addr(), goray.ClientReconnectGracePeriod(2*time.Second))
	ctx := context.Background()

	h, err := counterClass.Remote(goray.Val(0))
	if err != nil {
		t.Fatal(err)
	}
	d, err := counterClass.Options(goray.Detached(), goray.ActorName("survivor"), goray.NumCPUs(0)).Remote(goray.Val(0))
	if err != nil {
		t.Fatal(err)
	}
	getT(t, incr.Remote(h, goray.Val(1)))
	getT(t, incr.Remote(d, goray.Val(1)))
	// An object of the session in the head's object store.
	held, err := goray.Put(bytes.Repeat([]byte("x"), 4<<20))
	if err != nil {
		t.Fatal(err)
	}
	if n := headStoreObjects(t, c); n != 1 {
		t.Fatalf("head object store holds %d objects after a 4 MiB put", n)
	}
	t.Cleanup(func() { // the detached actor outlives the test's job
		c.GCS().KillActor(context.Background(), &rpcpb.KillActorRequest{ActorId: d.ID(), NoRestart: true})
	})
	if s := actorState(t, c, h.ID()); s != "ACTOR_ALIVE" {
		t.Fatalf("actor %s before the cut", s)
	}
	p.Cut()
	start := time.Now()
	_, err = goray.Get(ctx, incr.Remote(h, goray.Val(1)), goray.Timeout(30*time.Second))
	if !errors.Is(err, goray.ErrClientSessionLost) {
		t.Fatalf("Get after the grace period: %v", err)
	}
	if el := time.Since(start); el > 15*time.Second {
		t.Fatalf("session loss took %s with a 2s grace period", el)
	}
	t.Logf("session lost after %s: %v", time.Since(start).Round(time.Millisecond), err)
	if _, err := goray.Put(1); !errors.Is(err, goray.ErrClientSessionLost) {
		t.Fatalf("Put after the loss: %v", err)
	}
	if _, err := counterClass.Remote(goray.Val(0)); !errors.Is(err, goray.ErrClientSessionLost) {
		t.Fatalf("actor creation after the loss: %v", err)
	}
	testcluster.Eventually(t, 30*time.Second, "the session's actor to be released", func() bool {
		return actorState(t, c, h.ID()) == "ACTOR_DEAD"
	})
	if s := actorState(t, c, d.ID()); s != "ACTOR_ALIVE" {
		t.Fatalf("detached actor %s after the session ended", s)
	}
	testcluster.Eventually(t, 30*time.Second, "the session's object to be freed", func() bool {
		return headStoreObjects(t, c) == 0
	})
	_ = held
	out, err := c.Goray("list", "actors")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, h.ID()) && !strings.Contains(l, "DEAD") {
			t.Fatalf("goray list actors shows the session's actor alive: %q", l)
		}
	}
	// Reconnecting later does not bring the session back.
	p.Restore()
	if _, err := goray.Put(1); !errors.Is(err, goray.ErrClientSessionLost) {
		t.Fatalf("Put after restoring: %v", err)
	}
}

// TestClientIdleKeepalive leaves a session idle behind a proxy that drops
// connections idle for 12s: keepalive pings hold the connection open.
func TestClientIdleKeepalive(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	p := startProxy(t, c.Head.Info.ClientAddress, 12*time.Second)
	connectClientAt(t, c, "goray://"+p.Addr(), goray.ClientKeepalive(10*time.Second))
	ref, err := goray.Put(7)
	if err != nil {
		t.Fatal(err)
	}
	if got := getT(t, sum.Remote(ref, goray.Val(1))); got != 8 {
		t.Fatalf("before idling: %d", got)
	}
	time.Sleep(25 * time.Second)
	if got := getT(t, sum.Remote(ref, goray.Val(2))); got != 9 {
		t.Fatalf("after idling: %d", got)
	}
	if n := p.Accepted(); n != 1 {
		t.Fatalf("the client connected %d times: the idle connection was dropped", n)
	}
}

// TestClientBadInput: wrong token, nothing listening, malformed address.
func TestClientBadInput(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	t.Setenv("HOME", c.Home)
	t.Setenv("GORAY_ADDRESS", "")
	t.Setenv("GORAY_AUTH_TOKEN", "wrong")
	err := goray.Init(goray.Address("goray://" + c.Head.Info.ClientAddress))
	if err == nil {
		goray.Shutdown()
		t.Fatal("Init with a wrong token succeeded")
	}
	if !strings.Contains(err.Error(), "refused this program's token") {
		t.Fatalf("wrong token: %v", err)
	}
	t.Setenv("GORAY_AUTH_TOKEN", c.Token)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free := ln.Addr().String()
	ln.Close()
	start := time.Now()
	err = goray.Init(goray.Address("ray://" + free))
	if err == nil || !strings.Contains(err.Error(), "cannot reach a goray client server at "+free) {
		t.Fatalf("nothing listening: %v", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Fatalf("Init against a closed port took %s", d)
	}
	// The GCS port is no client server.
	if err := goray.Init(goray.Address("goray://" + c.Address)); err == nil || !strings.Contains(err.Error(), "not a goray client server") {
		t.Fatalf("GCS address as client server: %v", err)
	}
	for _, bad := range []string{"goray://127.0.0.1:", "goray://", "GORAY://:", "ray://h:port"} {
		err := goray.Init(goray.Address(bad))
		if err == nil || !strings.Contains(err.Error(), "want goray://HOST[:PORT] (port 10001 by default)") || strings.Contains(err.Error(), "resolver") {
			t.Fatalf("malformed address %q: %v", bad, err)
		}
	}
	// No port means 10001, as in Ray; the scheme's case does not matter.
	if err := goray.Init(goray.Address("GORAY://127.0.0.1")); err == nil || !strings.Contains(err.Error(), "127.0.0.1:10001") {
		t.Fatalf("address without a port: %v", err)
	}
	// Negative options are refused before dialing.
	if err := goray.Init(goray.Address("goray://"+c.Head.Info.ClientAddress), goray.ClientKeepalive(-time.Second)); err == nil || !strings.Contains(err.Error(), "ClientKeepalive(-1s)") {
		t.Fatalf("negative keepalive: %v", err)
	}
	if err := goray.Init(goray.Address("goray://"+c.Head.Info.ClientAddress), goray.ClientReconnectGracePeriod(-time.Second)); err == nil || !strings.Contains(err.Error(), "ClientReconnectGracePeriod(-1s)") {
		t.Fatalf("negative grace: %v", err)
	}
	// The client port without goray:// suggests it.
	if err := goray.Init(goray.Address(c.Head.Info.ClientAddress)); err == nil || !strings.Contains(err.Error(), "use the address goray://"+c.Head.Info.ClientAddress) {
		t.Fatalf("client port as GCS address: %v", err)
	}
	// Auth disabled on the client against a cluster with auth: no token
	// was sent, and the advice comes once.
	t.Setenv("GORAY_AUTH_MODE", "disabled")
	err = goray.Init(goray.Address("goray://" + c.Head.Info.ClientAddress))
	if err == nil || !strings.Contains(err.Error(), "this program sent none") || strings.Contains(err.Error(), "refused this program's token") ||
		strings.Count(err.Error(), "GORAY_AUTH_TOKEN") != 1 {
		t.Fatalf("auth disabled on the client: %v", err)
	}
}
