// Package e2e runs goray programs against real multi-node clusters. The
// test binary is itself the goray program: raylets start it in worker
// mode, where TestMain serves tasks instead of running tests.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/goray/goray"
	"github.com/goray/goray/testcluster"
)

func TestMain(m *testing.M) {
	if goray.IsWorker() {
		goray.Init() // never returns
	}
	if role := os.Getenv("E2E_DRIVER_ROLE"); role != "" {
		os.Exit(runDriverRole(role)) // a second driver process of a test
	}
	os.Exit(m.Run())
}

// Remote functions used by the tests.
var (
	whereAmI = goray.Register1("e2e.whereAmI", func(ctx context.Context, sleep time.Duration) (string, error) {
		select {
		case <-time.After(sleep):
		case <-ctx.Done():
			return "", ctx.Err()
		}
		return goray.NodeID(), nil
	})
	announce = goray.Register2("e2e.announce", func(ctx context.Context, tag string, sleep time.Duration) (string, error) {
		fmt.Printf("started %s on %s\n", tag, goray.NodeID())
		time.Sleep(sleep)
		return goray.NodeID(), nil
	})
	fail = goray.Register1("e2e.fail", func(ctx context.Context, mode string) (int, error) {
		if mode == "panic" {
			var m map[string]int
			m["boom"] = 1 // nil map write: a real runtime panic
		}
		return 0, errors.New("bad input: " + mode)
	})
	gpuIDs = goray.Register1("e2e.gpuIDs", func(ctx context.Context, sleep time.Duration) (string, error) {
		time.Sleep(sleep)
		return os.Getenv("CUDA_VISIBLE_DEVICES"), nil
	})
	ignoreCancel = goray.Register0("e2e.ignoreCancel", func(ctx context.Context) (int, error) {
		time.Sleep(time.Hour)
		return 0, nil
	})
	sum = goray.Register2("e2e.sum", func(ctx context.Context, a, b int) (int, error) { return a + b, nil })
)

// fib computes Fibonacci numbers with nested tasks: each level blocks in
// Get on its children, which needs Ray's CPU release while blocked.
var fib goray.Func1[int, int]

func init() {
	fib = goray.Register1("e2e.fib", func(ctx context.Context, n int) (int, error) {
		if n < 2 {
			return n, nil
		}
		a, b := fib.Remote(goray.Val(n-1)), fib.Remote(goray.Val(n-2))
		x, err := goray.Get(ctx, a)
		if err != nil {
			return 0, err
		}
		y, err := goray.Get(ctx, b)
		return x + y, err
	})
}

// connect makes this test process a driver of c until the test ends.
func connect(t *testing.T, c *testcluster.Cluster, opts ...goray.InitOption) {
	t.Helper()
	t.Setenv("GORAY_AUTH_TOKEN", c.Token)
	t.Setenv("HOME", c.Home)
	if err := goray.Init(append([]goray.InitOption{goray.Address(c.Address)}, opts...)...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(goray.Shutdown)
}

func getT[T any](t *testing.T, ref goray.ObjectRef[T]) T {
	t.Helper()
	v, err := goray.Get(context.Background(), ref, goray.Timeout(60*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return v
}
