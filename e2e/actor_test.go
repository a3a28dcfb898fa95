package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/goray/goray"
	"github.com/goray/goray/testcluster"
)

// Counter is the state of a test actor.
type Counter struct {
	n       int
	mu      sync.Mutex
	arrived int
	all     chan struct{}
	inside  int
	overlap bool
}

var (
	counterClass = goray.RegisterActor1("e2e.Counter", func(ctx context.Context, start int) (*Counter, error) {
		if start < 0 {
			return nil, errors.New("negative start")
		}
		return &Counter{n: start, all: make(chan struct{})}, nil
	})
	incr = goray.Method1(counterClass, "incr", func(ctx context.Context, c *Counter, by int) (int, error) {
		c.n += by
		return c.n, nil
	})
	counterPID  = goray.Method0(counterClass, "pid", func(ctx context.Context, c *Counter) (int, error) { return os.Getpid(), nil })
	counterNode = goray.Method0(counterClass, "node", func(ctx context.Context, c *Counter) (string, error) { return goray.NodeID(), nil })
	// rendezvous returns once n calls are inside it at the same time.
	rendezvous = goray.Method1(counterClass, "rendezvous", func(ctx context.Context, c *Counter, n int) (bool, error) {
		c.mu.Lock()
		c.arrived++
		if c.arrived == n {
			close(c.all)
		}
		c.mu.Unlock()
		select {
		case <-c.all:
			return true, nil
		case <-time.After(20 * time.Second):
			return false, nil
		}
	})
	// exclusive notes whether another call ran at the same time.
	exclusive = goray.Method0(counterClass, "exclusive", func(ctx context.Context, c *Counter) (bool, error) {
		c.mu.Lock()
		c.inside++
		c.overlap = c.overlap || c.inside > 1
		c.mu.Unlock()
		time.Sleep(time.Millisecond)
		c.mu.Lock()
		c.inside--
		c.mu.Unlock()
		return c.overlap, nil
	})
	hammer = goray.Register1("e2e.hammer", func(ctx context.Context, h goray.ActorHandle[Counter]) (bool, error) {
		var refs []goray.ObjectRef[bool]
		for i := 0; i < 30; i++ {
			refs = append(refs, exclusive.Remote(h))
		}
		overlap := false
		for _, r := range refs {
			o, err := goray.Get(ctx, r)
			if err != nil {
				return false, err
			}
			overlap = overlap || o
		}
		return overlap, nil
	})
	// useActor calls an actor whose handle it was given.
	useActor = goray.Register1("e2e.useActor", func(ctx context.Context, h goray.ActorHandle[Counter]) (int, error) {
		return goray.Get(ctx, incr.Remote(h, goray.Val(100)))
	})
)

// runDriverRole runs a second driver: E2E_DRIVER_ROLE=create-detached or
// =create-owned creates the actor named $E2E_ACTOR and exits.
func runDriverRole(role string) int {
	if err := goray.Init(goray.Namespace("e2e")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer goray.Shutdown()
	if role == "put" {
		// A large object whose ref escapes into another value: pinned
		// until the job ends.
		ref, err := goray.Put(make([]byte, 2<<20))
		if err == nil {
			_, err = goray.Put(struct{ R goray.ObjectRef[[]byte] }{ref})
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	}
	opts := []goray.Option{goray.ActorName(os.Getenv("E2E_ACTOR"))}
	if role == "create-detached" {
		opts = append(opts, goray.Detached())
	}
	h, err := counterClass.Options(opts...).Remote(goray.Val(10))
	if err == nil {
		_, err = goray.Get(context.Background(), incr.Remote(h, goray.Val(1)), goray.Timeout(30*time.Second))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func secondDriver(t *testing.T, c *testcluster.Cluster, role, actor string) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(c.Env(), "E2E_DRIVER_ROLE="+role, "E2E_ACTOR="+actor)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("second driver (%s): %v\n%s", role, err, out)
	}
}

func TestActorOrderAndHandles(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Workers: 1})
	connect(t, c)
	w := c.Workers[0].Info.NodeID
	h, err := counterClass.Options(goray.NodeAffinity(w, false)).Remote(goray.Val(0))
	if err != nil {
		t.Fatal(err)
	}
	var refs []goray.ObjectRef[int]
	for i := 0; i < 200; i++ {
		refs = append(refs, incr.Remote(h, goray.Val(1)))
	}
	for i, r := range refs {
		if v := getT(t, r); v != i+1 {
			t.Fatalf("call %d returned %d: calls ran out of order", i, v)
		}
	}
	if node := getT(t, counterNode.Remote(h)); node != w {
		t.Fatalf("actor runs on %s, want %s", node, w)
	}
	// A task on the other node calls the actor through a passed handle.
	if v := getT(t, useActor.Options(goray.NodeAffinity(c.Head.Info.NodeID, false)).Remote(goray.Val(h))); v != 300 {
		t.Fatalf("call through a passed handle returned %d, want 300", v)
	}
	// An actor that declares nothing holds no CPU: the 1-CPU head and
	// worker still run tasks while the actor lives.
	getT(t, whereAmI.Options(goray.NodeAffinity(w, false)).Remote(goray.Val(time.Duration(0))))

	// A failing constructor makes the actor dead, and calls say why.
	bad, err := counterClass.Remote(goray.Val(-1))
	if err != nil {
		t.Fatal(err)
	}
	_, err = goray.Get(context.Background(), incr.Remote(bad, goray.Val(1)), goray.Timeout(30*time.Second))
	if !errors.Is(err, goray.ErrActorDied) || !strings.Contains(err.Error(), "negative start") {
		t.Fatalf("call to an actor whose constructor failed: %v", err)
	}
}

func TestActorRestartAndKill(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Workers: 1})
	connect(t, c)
	ctx := context.Background()

	h, err := counterClass.Options(goray.MaxRestarts(1)).Remote(goray.Val(5))
	if err != nil {
		t.Fatal(err)
	}
	getT(t, incr.Remote(h, goray.Val(1)))
	pid := getT(t, counterPID.Remote(h))
	syscall.Kill(pid, syscall.SIGKILL)
	// The constructor runs again: the state starts over at 5.
	var v int
	testcluster.Eventually(t, 30*time.Second, "the restarted actor to answer", func() bool {
		v, err = goray.Get(ctx, incr.Remote(h, goray.Val(1)), goray.Timeout(30*time.Second))
		return err == nil
	})
	if v != 6 {
		t.Fatalf("after restart incr returned %d, want 6 (constructor ran again)", v)
	}
	if p2 := getT(t, counterPID.Remote(h)); p2 == pid {
		t.Fatal("restarted actor has the old pid")
	}
	// Its one restart is spent: killing the process again makes it dead.
	syscall.Kill(getT(t, counterPID.Remote(h)), syscall.SIGKILL)
	testcluster.Eventually(t, 30*time.Second, "calls to fail with the actor-died error", func() bool {
		_, err = goray.Get(ctx, incr.Remote(h, goray.Val(1)), goray.Timeout(30*time.Second))
		return errors.Is(err, goray.ErrActorDied)
	})
	if !strings.Contains(err.Error(), "died") {
		t.Fatalf("actor-died error should say why: %v", err)
	}

	// goray.Kill without restart: dead at once, and it says it was killed.
	k, err := counterClass.Options(goray.MaxRestarts(-1)).Remote(goray.Val(0))
	if err != nil {
		t.Fatal(err)
	}
	getT(t, incr.Remote(k, goray.Val(1)))
	if err := goray.Kill(k, true); err != nil {
		t.Fatal(err)
	}
	testcluster.Eventually(t, 30*time.Second, "the killed actor to refuse calls", func() bool {
		_, err = goray.Get(ctx, incr.Remote(k, goray.Val(1)), goray.Timeout(30*time.Second))
		return errors.Is(err, goray.ErrActorDied)
	})
	if !strings.Contains(err.Error(), "killed") {
		t.Fatalf("killed actor error: %v", err)
	}
}

func TestActorConcurrency(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{HeadCPUs: 4})
	connect(t, c)
	// With max_concurrency 1, calls from several callers never overlap.
	single, err := counterClass.Remote(goray.Val(0))
	if err != nil {
		t.Fatal(err)
	}
	var hammers []goray.ObjectRef[bool]
	for i := 0; i < 3; i++ {
		hammers = append(hammers, hammer.Remote(goray.Val(single)))
	}
	for i := 0; i < 30; i++ {
		exclusive.Remote(single)
	}
	for _, r := range hammers {
		if getT(t, r) {
			t.Fatal("methods of a max_concurrency=1 actor ran at the same time")
		}
	}
	h, err := counterClass.Options(goray.MaxConcurrency(4)).Remote(goray.Val(0))
	if err != nil {
		t.Fatal(err)
	}
	var refs []goray.ObjectRef[bool]
	for i := 0; i < 4; i++ {
		refs = append(refs, rendezvous.Remote(h, goray.Val(4)))
	}
	for _, r := range refs {
		if !getT(t, r) {
			t.Fatal("four calls of a max_concurrency=4 actor did not run at the same time")
		}
	}
}

func TestNamedDetachedActors(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Workers: 1})
	// A detached actor outlives the driver that made it.
	secondDriver(t, c, "create-detached", "keeper")
	// An owned one dies with its driver's job.
	secondDriver(t, c, "create-owned", "mortal")
	connect(t, c, goray.Namespace("e2e"))
	h, err := goray.GetActor[Counter]("keeper")
	if err != nil {
		t.Fatal(err)
	}
	if v := getT(t, incr.Remote(h, goray.Val(1))); v != 12 {
		t.Fatalf("detached actor's state after its driver left: %d, want 12", v)
	}
	testcluster.Eventually(t, 20*time.Second, "the owned actor to die with its job", func() bool {
		_, err := goray.GetActor[Counter]("mortal")
		return err != nil
	})
	// Another namespace does not see the name.
	if _, err := goray.GetActor[Counter]("keeper", goray.ActorNamespace("other")); err == nil {
		t.Fatal("named actor visible from another namespace")
	}
	// A name is unique in its namespace.
	if _, err := counterClass.Options(goray.ActorName("keeper")).Remote(goray.Val(0)); err == nil || !strings.Contains(err.Error(), "already taken") {
		t.Fatalf("duplicate actor name: %v", err)
	}
	out, err := c.Goray("list", "actors")
	if err != nil || !regexp.MustCompile(`(?m)^`+h.ID()+` +e2e\.Counter +ALIVE +keeper`).MatchString(out) {
		t.Fatalf("goray list actors: %v\n%s", err, out)
	}
	if out, err := c.Goray("list", "nodes"); err != nil || strings.Count(out, "ALIVE") != 2 {
		t.Fatalf("goray list nodes: %v\n%s", err, out)
	}
	if err := goray.Kill(h, true); err != nil {
		t.Fatal(err)
	}
}

type madeActor struct {
	H   goray.ActorHandle[Counter]
	PID int
}

// makeActor creates an actor from a task: the task's worker owns it.
var makeActor = goray.Register0("e2e.makeActor", func(ctx context.Context) (madeActor, error) {
	h, err := counterClass.Remote(goray.Val(0))
	if err == nil {
		// Wait for the actor while this worker is busy, so the actor gets
		// a process of its own rather than this one once it is idle.
		_, err = goray.Get(ctx, incr.Remote(h, goray.Val(0)))
	}
	return madeActor{H: h, PID: os.Getpid()}, err
})

func TestActorDiesWithItsOwnerWorker(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{HeadCPUs: 2})
	connect(t, c)
	m := getT(t, makeActor.Remote())
	if v := getT(t, incr.Remote(m.H, goray.Val(1))); v != 1 {
		t.Fatalf("actor made by a task: %d", v)
	}
	syscall.Kill(m.PID, syscall.SIGKILL)
	var err error
	testcluster.Eventually(t, 30*time.Second, "the actor to die with its owner", func() bool {
		_, err = goray.Get(context.Background(), incr.Remote(m.H, goray.Val(1)), goray.Timeout(30*time.Second))
		return errors.Is(err, goray.ErrActorDied)
	})
	if !strings.Contains(err.Error(), "owner") {
		t.Fatalf("death cause should name the owner: %v", err)
	}
}

// slowStart returns its argument after a while: a late actor argument.
var slowStart = goray.Register1("e2e.slowStart", func(ctx context.Context, v int) (int, error) {
	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
	}
	return v, nil
})

func TestActorWaitsForItsArguments(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{HeadCPUs: 2})
	connect(t, c)
	arg := slowStart.Remote(goray.Val(40))
	h, err := counterClass.Remote(arg)
	if err != nil {
		t.Fatal(err)
	}
	// Registered at once, in DEPENDENCIES_UNREADY while its argument runs.
	out, err := c.Goray("list", "actors")
	if err != nil || !strings.Contains(out, "DEPENDENCIES_UNREADY") {
		t.Fatalf("actor waiting for its argument: %v\\n%s", err, out)
	}
	if v := getT(t, incr.Remote(h, goray.Val(2))); v != 42 {
		t.Fatalf("actor built from a ref argument: %d, want 42", v)
	}
	// A failed argument makes the actor dead, saying why.
	bad, err := counterClass.Remote(fail.Remote(goray.Val("ctor")))
	if err != nil {
		t.Fatal(err)
	}
	_, err = goray.Get(context.Background(), incr.Remote(bad, goray.Val(1)), goray.Timeout(30*time.Second))
	if !errors.Is(err, goray.ErrActorDied) || !strings.Contains(err.Error(), "bad input: ctor") {
		t.Fatalf("actor with a failed argument: %v", err)
	}
}

var slowPID = goray.Method0(counterClass, "slowPID", func(ctx context.Context, c *Counter) (int, error) {
	time.Sleep(500 * time.Millisecond)
	return os.Getpid(), nil
})

func TestActorTaskRetries(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{HeadCPUs: 2})
	connect(t, c)
	h, err := counterClass.Options(goray.MaxRestarts(1), goray.MaxTaskRetries(1)).Remote(goray.Val(0))
	if err != nil {
		t.Fatal(err)
	}
	old := getT(t, counterPID.Remote(h))
	inFlight := slowPID.Remote(h)
	syscall.Kill(old, syscall.SIGKILL)
	// The call that was running when the actor died runs again on its
	// restarted incarnation.
	if pid := getT(t, inFlight); pid == old {
		t.Fatalf("retried call reports the dead process %d", pid)
	}
}
