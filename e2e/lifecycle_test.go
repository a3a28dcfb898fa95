package e2e

import (
	"context"
	"errors"
	"os"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/goray/goray"
	"github.com/goray/goray/testcluster"
)

var myPID = goray.Register0("e2e.myPID", func(context.Context) (int, error) { return os.Getpid(), nil })

func processGone(pid int) func() bool {
	return func() bool { return syscall.Kill(pid, 0) != nil }
}

func TestIdleWorkersEnd(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Env: []string{"GORAY_worker_idle_timeout_ms=300"}})
	connect(t, c)
	pid := getT(t, myPID.Remote())
	if pid == os.Getpid() {
		t.Fatal("task ran in the driver process")
	}
	testcluster.Eventually(t, 10*time.Second, "the idle worker to exit", processGone(pid))
	// The pool starts a new worker for the next task.
	if again := getT(t, myPID.Remote()); again == pid {
		t.Fatalf("task ran in worker %d, which should have exited", pid)
	}
}

func TestWorkersEndWithTheirJob(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{HeadCPUs: 2})
	connect(t, c)
	a := getT(t, myPID.Remote())
	// An idle worker is reused rather than a new one started.
	if b := getT(t, myPID.Remote()); b != a {
		t.Fatalf("second task ran in worker %d, want the idle worker %d", b, a)
	}
	goray.Shutdown()
	testcluster.Eventually(t, 10*time.Second, "the job's worker to exit after the driver finished", processGone(a))
}

func TestWorkersExitWhenRayletIsKilled(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Workers: 1})
	var out testcluster.SyncBuffer
	connect(t, c, goray.LogOutput(&out))
	victim := c.Workers[0]
	ref := announce.Options(goray.NodeAffinity(victim.Info.NodeID, false), goray.MaxRetries(0)).Remote(goray.Val("k"), goray.Val(time.Minute))
	re := regexp.MustCompile(`pid=(\d+), ip=127\.0\.0\.1\) started k on ` + victim.Info.NodeID)
	var m []string
	testcluster.Eventually(t, 20*time.Second, "the task to start on the victim", func() bool {
		m = re.FindStringSubmatch(out.String())
		return m != nil
	})
	pid, _ := strconv.Atoi(m[1])
	victim.Kill()
	testcluster.Eventually(t, 10*time.Second, "the worker of the killed raylet to exit", processGone(pid))
	// With no retries left the caller gets ErrWorkerDied, not a hang.
	_, err := goray.Get(context.Background(), ref, goray.Timeout(30*time.Second))
	if !errors.Is(err, goray.ErrWorkerDied) {
		t.Fatalf("Get of a task whose node died with max_retries=0: %v", err)
	}
	// Hard affinity to the dead node fails clearly; soft affinity runs elsewhere.
	testcluster.Eventually(t, 10*time.Second, "the GCS to mark the node dead", func() bool {
		st, _ := c.Goray("status")
		return regexp.MustCompile(`NodeTerminated`).MatchString(st)
	})
	_, err = goray.Get(context.Background(), whereAmI.Options(goray.NodeAffinity(victim.Info.NodeID, false)).Remote(goray.Val(time.Duration(0))), goray.Timeout(30*time.Second))
	if err == nil || !regexp.MustCompile(victim.Info.NodeID).MatchString(err.Error()) {
		t.Fatalf("hard affinity to a dead node: %v", err)
	}
	if got := getT(t, whereAmI.Options(goray.NodeAffinity(victim.Info.NodeID, true)).Remote(goray.Val(time.Duration(0)))); got != c.Head.Info.NodeID {
		t.Fatalf("soft affinity to a dead node ran on %s", got)
	}
}

type envelope struct {
	Inner goray.ObjectRef[string]
	Note  string
}

var unwrap = goray.Register1("e2e.unwrap", func(ctx context.Context, e envelope) (string, error) {
	s, err := goray.Get(ctx, e.Inner)
	return e.Note + s, err
})

func TestRefsInsideValuesAndBytes(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Workers: 1})
	connect(t, c)
	inner, err := goray.Put("world")
	if err != nil {
		t.Fatal(err)
	}
	// The worker borrows the ref from inside a value and fetches it from its owner.
	if got := getT(t, unwrap.Options(goray.Spread()).Remote(goray.Val(envelope{Inner: inner, Note: "hello "}))); got != "hello world" {
		t.Fatalf("nested ref: %q", got)
	}
	blob := make([]byte, 3<<20)
	for i := range blob {
		blob[i] = byte(i * 7)
	}
	ref, err := goray.Put(blob)
	if err != nil {
		t.Fatal(err)
	}
	if n := getT(t, byteSum.Remote(ref)); n != sumBytes(blob) {
		t.Fatalf("byte sum %d, want %d", n, sumBytes(blob))
	}
}

var byteSum = goray.Register1("e2e.byteSum", func(ctx context.Context, b []byte) (int, error) { return sumBytes(b), nil })

func sumBytes(b []byte) int {
	s := 0
	for _, x := range b {
		s += int(x)
	}
	return s
}

func TestWorkerNodeExitsWhenGCSIsGone(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Workers: 1, Env: []string{"GORAY_gcs_rpc_server_reconnect_timeout_ms=1000"}})
	c.Head.Kill()
	select {
	case <-c.Workers[0].Exited():
	case <-time.After(15 * time.Second):
		t.Fatal("worker node still runs 15s after its head died")
	}
	if log := c.Workers[0].Log(); !regexp.MustCompile(`GCS at .* unreachable`).MatchString(log) {
		t.Fatalf("worker node should say why it exited:\n%s", log)
	}
}
