package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"time"

	"github.com/spf13/cobra"

	"github.com/goray/goray"
	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/client"
	"github.com/goray/goray/internal/node"
)

// Remote functions and actors of the microbenchmark (this binary is their
// worker), after Ray's python/ray/_private/ray_perf.py.
type benchActor struct{}

var (
	benchNoop   = goray.Register0("microbenchmark.noop", func(context.Context) (int, error) { return 0, nil })
	benchClient = goray.Register1("microbenchmark.client", func(ctx context.Context, n int) (int, error) {
		refs := make([]goray.ObjectRef[int], n)
		for i := range refs {
			refs[i] = benchNoop.Remote()
		}
		return n, getAll(ctx, refs)
	})
	benchActorClass = goray.RegisterActor("microbenchmark.Actor", func(context.Context) (*benchActor, error) { return &benchActor{}, nil })
	benchActorNoop  = goray.Method0(benchActorClass, "noop", func(context.Context, *benchActor) (int, error) { return 0, nil })
	// benchActorClient creates an actor of its own and calls it n times.
	benchActorClient = goray.Register1("microbenchmark.actorClient", func(ctx context.Context, n int) (int, error) {
		h, err := benchActorClass.Remote()
		if err != nil {
			return 0, err
		}
		defer goray.Kill(h, true)
		refs := make([]goray.ObjectRef[int], n)
		for i := range refs {
			refs[i] = benchActorNoop.Remote(h)
		}
		return n, getAll(ctx, refs)
	})
)

func getAll[T any](ctx context.Context, refs []goray.ObjectRef[T]) error {
	for _, r := range refs {
		if _, err := goray.Get(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

func microbenchmarkCmd() *cobra.Command {
	var (
		trials   int
		duration time.Duration
		cpus     float64
		filter   string
		viaCli   bool
		address  string
	)
	cmd := &cobra.Command{
		Use:   "microbenchmark",
		Short: "Measure task, actor and object throughput on a fresh local cluster (Ray's ray microbenchmark)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if trials < 2 || duration <= 0 {
				return fmt.Errorf("need --trials >= 2 and a positive --duration")
			}
			if cmd.Flags().Changed("address") && !viaCli {
				return fmt.Errorf("--address works only with --client (the client server goray://HOST:PORT of a running cluster); without --client microbenchmark always measures a fresh local cluster")
			}
			if viaCli && address != "" {
				if _, ok, err := client.ParseAddress(address); err != nil {
					return err
				} else if !ok {
					return fmt.Errorf("--client --address %q: want the client server goray://HOST:PORT (port %d by default), not a GCS or dashboard address", address, client.DefaultPort)
				}
			}
			if viaCli {
				n := -1.0
				if cmd.Flags().Changed("num-cpus") {
					n = cpus
				}
				return runClientMicrobenchmarks(cmd.OutOrStdout(), address, n, trials, duration, filter)
			}
			opts := []goray.InitOption{goray.NewLocalCluster(), goray.LogOutput(io.Discard)}
			if cmd.Flags().Changed("num-cpus") {
				opts = append(opts, goray.LocalCPUs(cpus))
			}
			if err := goray.Init(opts...); err != nil {
				return err
			}
			defer goray.Shutdown()
			return runMicrobenchmarks(cmd.OutOrStdout(), trials, duration, filter)
		},
	}
	cmd.Flags().IntVar(&trials, "trials", 5, "timed trials per metric")
	cmd.Flags().DurationVar(&duration, "duration", 2*time.Second, "length of one trial")
	cmd.Flags().Float64Var(&cpus, "num-cpus", 0, "CPUs of the local cluster (default: detected)")
	cmd.Flags().StringVar(&filter, "filter", "", "run only the metrics whose name matches this regular expression")
	cmd.Flags().BoolVar(&viaCli, "client", false, "run Ray's client__* set through a Ray Client session (goray://) with the local cluster's client server")
	cmd.Flags().StringVar(&address, "address", "", "with --client: the client server of a running cluster (goray://HOST:PORT) instead of a local one")
	return cmd
}

type benchStep struct {
	name  string
	batch func() (float64, error) // units done by one batch
}

// runSteps times the steps whose names match filter.
func runSteps(out io.Writer, steps []benchStep, trials int, duration time.Duration, filter string) error {
	re, err := regexp.Compile(filter)
	if err != nil {
		return fmt.Errorf("--filter: %w", err)
	}
	for _, s := range steps {
		if !re.MatchString(s.name) {
			continue
		}
		if err := runStep(out, s, trials, duration); err != nil {
			return err
		}
	}
	return nil
}

func runStep(out io.Writer, s benchStep, trials int, duration time.Duration) error {
	{
		// Warm up (leases, workers, actors), then time trials.
		if _, err := s.batch(); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		var rates []float64
		for i := 0; i < trials; i++ {
			var n float64
			start := time.Now()
			for time.Since(start) < duration {
				k, err := s.batch()
				if err != nil {
					return fmt.Errorf("%s: %w", s.name, err)
				}
				n += k
			}
			rates = append(rates, n/time.Since(start).Seconds())
		}
		mean, sd := meanStd(rates)
		fmt.Fprintf(out, "%s per second %.2f +- %.2f\n", s.name, mean, sd)
		return nil
	}
}

func runMicrobenchmarks(out io.Writer, trials int, duration time.Duration, filter string) error {
	ctx := context.Background()
	asyncTasks := func(n int) (float64, error) {
		refs := make([]goray.ObjectRef[int], n)
		for i := range refs {
			refs[i] = benchNoop.Remote()
		}
		return float64(n), getAll(ctx, refs)
	}
	small, err := goray.Put(42)
	if err != nil {
		return err
	}
	actor, err := benchActorClass.Remote()
	if err != nil {
		return err
	}
	concurrent, err := benchActorClass.Options(goray.MaxConcurrency(16)).Remote()
	if err != nil {
		return err
	}
	const nActors = 4
	var actors []goray.ActorHandle[benchActor]
	for i := 0; i < nActors; i++ {
		h, err := benchActorClass.Remote()
		if err != nil {
			return err
		}
		actors = append(actors, h)
	}
	big := benchPayload()
	refs10k := make([]goray.ObjectRef[int], 10000)
	for i := range refs10k {
		if refs10k[i], err = goray.Put(i); err != nil {
			return err
		}
	}
	holder, err := goray.Put(refs10k)
	if err != nil {
		return err
	}
	wait1k := make([]goray.AnyRef, 1000)
	for i := range wait1k {
		wait1k[i] = refs10k[i]
	}
	memcpyDst := make([]byte, len(big))

	steps := []benchStep{
		{"single_client_tasks_sync", func() (float64, error) {
			_, err := goray.Get(ctx, benchNoop.Remote())
			return 1, err
		}},
		{"single_client_tasks_async", func() (float64, error) { return asyncTasks(1000) }},
		{"multi_client_tasks_async", func() (float64, error) {
			const clients, n = 4, 500
			refs := make([]goray.ObjectRef[int], clients)
			for i := range refs {
				refs[i] = benchClient.Options(goray.NumCPUs(0)).Remote(goray.Val(n))
			}
			return clients * n, getAll(ctx, refs)
		}},
		{"single_client_put_calls", putCalls},
		{"single_client_get_calls", getCalls(ctx, small)},
		{"single_client_put_gigabytes", putGigabytes(big)},
		{"memcpy_gigabytes", func() (float64, error) {
			copy(memcpyDst, big)
			return float64(len(big)) / 1e9, nil
		}},
		{"single_client_get_object_containing_10k_refs", func() (float64, error) {
			_, err := goray.Get(ctx, holder)
			return 1, err
		}},
		{"single_client_wait_1k_refs", func() (float64, error) {
			_, _, err := goray.Wait(ctx, wait1k, len(wait1k), 0)
			return 1, err
		}},
		{"1_1_actor_calls_sync", actorCallsSync(ctx, actor)},
		{"1_1_actor_calls_async", actorCallsAsync(ctx, actor)},
		{"1_1_actor_calls_concurrent", func() (float64, error) {
			refs := make([]goray.ObjectRef[int], 1000)
			for i := range refs {
				refs[i] = benchActorNoop.Remote(concurrent)
			}
			return 1000, getAll(ctx, refs)
		}},
		{"1_n_actor_calls_async", func() (float64, error) {
			refs := make([]goray.ObjectRef[int], 1000*nActors)
			for i := range refs {
				refs[i] = benchActorNoop.Remote(actors[i%nActors])
			}
			return float64(len(refs)), getAll(ctx, refs)
		}},
		{"n_n_actor_calls_async", func() (float64, error) {
			const clients, n = nActors, 1000
			refs := make([]goray.ObjectRef[int], clients)
			for i := range refs {
				refs[i] = benchActorClient.Options(goray.NumCPUs(0)).Remote(goray.Val(n))
			}
			return clients * n, getAll(ctx, refs)
		}},
	}
	return runSteps(out, steps, trials, duration, filter)
}

// runClientMicrobenchmarks runs Ray's client__* set through a Ray Client
// session with the client server at address, or with that of a local
// cluster it starts in this process.
func runClientMicrobenchmarks(out io.Writer, address string, cpus float64, trials int, duration time.Duration, filter string) error {
	if address != "" {
		if err := goray.Init(goray.Address(address), goray.LogOutput(io.Discard)); err != nil {
			return err
		}
		defer goray.Shutdown()
		return clientSteps(out, trials, duration, filter)
	}
	var token string
	if !auth.Disabled() {
		t, err := auth.Generate()
		if err != nil {
			return err
		}
		token = t
		os.Setenv("GORAY_AUTH_TOKEN", token) // for Init
	}
	n, err := node.Start(node.Config{Head: true, Private: true, NodeIP: "127.0.0.1", NumCPUs: cpus, NumGPUs: -1, Token: token})
	if err != nil {
		return fmt.Errorf("start local cluster: %w", err)
	}
	defer n.Stop()
	if err := goray.Init(goray.Address("goray://"+n.Info.ClientAddress), goray.LogOutput(io.Discard)); err != nil {
		return err
	}
	defer goray.Shutdown()
	return clientSteps(out, trials, duration, filter)
}

func clientSteps(out io.Writer, trials int, duration time.Duration, filter string) error {
	ctx := context.Background()
	small, err := goray.Put(42)
	if err != nil {
		return err
	}
	actor, err := benchActorClass.Remote()
	if err != nil {
		return err
	}
	big := benchPayload()
	steps := []benchStep{
		{"client__get_calls", getCalls(ctx, small)},
		{"client__put_calls", putCalls},
		{"client__put_gigabytes", putGigabytes(big)},
		{"client__tasks_and_get_batch", func() (float64, error) {
			refs := make([]goray.ObjectRef[int], 1000)
			for i := range refs {
				refs[i] = benchNoop.Remote()
			}
			return 1, getAll(ctx, refs)
		}},
		{"client__1_1_actor_calls_sync", actorCallsSync(ctx, actor)},
		{"client__1_1_actor_calls_async", actorCallsAsync(ctx, actor)},
	}
	return runSteps(out, steps, trials, duration, filter)
}

// The bodies of the steps the local and client sets share, as Ray's
// microbenchmark shares them between its single_client_* and client__*.

func putCalls() (float64, error) {
	for i := 0; i < 1000; i++ {
		if _, err := goray.Put(i); err != nil {
			return 0, err
		}
	}
	return 1000, nil
}

func getCalls(ctx context.Context, ref goray.ObjectRef[int]) func() (float64, error) {
	return func() (float64, error) {
		for i := 0; i < 1000; i++ {
			if _, err := goray.Get(ctx, ref); err != nil {
				return 0, err
			}
		}
		return 1000, nil
	}
}

// benchPayload is the 100 MiB value of the *_put_gigabytes steps.
func benchPayload() []byte {
	big := make([]byte, 100<<20)
	for i := range big {
		big[i] = byte(i)
	}
	return big
}

func putGigabytes(big []byte) func() (float64, error) {
	return func() (float64, error) {
		_, err := goray.Put(big)
		return float64(len(big)) / 1e9, err
	}
}

func actorCallsSync(ctx context.Context, h goray.ActorHandle[benchActor]) func() (float64, error) {
	return func() (float64, error) {
		_, err := goray.Get(ctx, benchActorNoop.Remote(h))
		return 1, err
	}
}

func actorCallsAsync(ctx context.Context, h goray.ActorHandle[benchActor]) func() (float64, error) {
	return func() (float64, error) {
		refs := make([]goray.ObjectRef[int], 1000)
		for i := range refs {
			refs[i] = benchActorNoop.Remote(h)
		}
		return 1000, getAll(ctx, refs)
	}
}

func meanStd(xs []float64) (float64, float64) {
	var sum float64
	for _, x := range xs {
		sum += x
	}
	mean := sum / float64(len(xs))
	var ss float64
	for _, x := range xs {
		ss += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(ss / float64(len(xs)))
}
