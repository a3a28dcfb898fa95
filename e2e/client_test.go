package e2e

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/goray/goray"
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
	t.Setenv("GORAY_AUTH_TOKEN", c.Token)
	t.Setenv("HOME", c.Home)
	t.Setenv("GORAY_ADDRESS", "")
	if err := goray.Init(append([]goray.InitOption{goray.Address("goray://" + c.Head.Info.ClientAddress)}, opts...)...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(goray.Shutdown)
}

func TestClientAPI(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Workers: 1, HeadCPUs: 2, WorkerCPUs: 2})
	connectClient(t, c, goray.Namespace("clientns"))
	ctx := context.Background()

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
	big := bytes.Repeat([]byte("0123456789abcdef"), 3<<20) // 48 MiB
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
	if _, err := goray.Get(ctx, incr.Remote(h, goray.Val(1)), goray.Timeout(30*time.Second)); !errors.Is(err, goray.ErrActorDied) {
		t.Fatalf("killed actor: %v", err)
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
}
