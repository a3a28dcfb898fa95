package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/spf13/cobra"

	"github.com/goray/goray"
)

// Remote functions of the microbenchmark (this binary is their worker).
var (
	benchNoop   = goray.Register0("microbenchmark.noop", func(context.Context) (int, error) { return 0, nil })
	benchClient = goray.Register1("microbenchmark.client", func(ctx context.Context, n int) (int, error) {
		refs := make([]goray.ObjectRef[int], n)
		for i := range refs {
			refs[i] = benchNoop.Remote()
		}
		for _, r := range refs {
			if _, err := goray.Get(ctx, r); err != nil {
				return 0, err
			}
		}
		return n, nil
	})
)

func microbenchmarkCmd() *cobra.Command {
	var (
		trials   int
		duration time.Duration
		cpus     float64
	)
	cmd := &cobra.Command{
		Use:   "microbenchmark",
		Short: "Measure task and object throughput on a fresh local cluster (Ray's ray microbenchmark)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if trials < 2 || duration <= 0 {
				return fmt.Errorf("need --trials >= 2 and a positive --duration")
			}
			opts := []goray.InitOption{goray.NewLocalCluster(), goray.LogOutput(io.Discard)}
			if cmd.Flags().Changed("num-cpus") {
				opts = append(opts, goray.LocalCPUs(cpus))
			}
			if err := goray.Init(opts...); err != nil {
				return err
			}
			defer goray.Shutdown()
			ctx := context.Background()
			out := cmd.OutOrStdout()
			run := func(name string, batch func() (int, error)) error {
				// Warm up (leases, workers), then time trials.
				if _, err := batch(); err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
				var rates []float64
				for i := 0; i < trials; i++ {
					n, start := 0, time.Now()
					for time.Since(start) < duration {
						k, err := batch()
						if err != nil {
							return fmt.Errorf("%s: %w", name, err)
						}
						n += k
					}
					rates = append(rates, float64(n)/time.Since(start).Seconds())
				}
				mean, sd := meanStd(rates)
				fmt.Fprintf(out, "%s per second %.2f +- %.2f\n", name, mean, sd)
				return nil
			}
			steps := []struct {
				name  string
				batch func() (int, error)
			}{
				{"single_client_tasks_sync", func() (int, error) {
					_, err := goray.Get(ctx, benchNoop.Remote())
					return 1, err
				}},
				{"single_client_tasks_async", func() (int, error) {
					const n = 1000
					refs := make([]goray.ObjectRef[int], n)
					for i := range refs {
						refs[i] = benchNoop.Remote()
					}
					for _, r := range refs {
						if _, err := goray.Get(ctx, r); err != nil {
							return 0, err
						}
					}
					return n, nil
				}},
				{"multi_client_tasks_async", func() (int, error) {
					const clients, n = 4, 500
					refs := make([]goray.ObjectRef[int], clients)
					for i := range refs {
						refs[i] = benchClient.Options(goray.NumCPUs(0)).Remote(goray.Val(n))
					}
					total := 0
					for _, r := range refs {
						k, err := goray.Get(ctx, r)
						if err != nil {
							return 0, err
						}
						total += k
					}
					return total, nil
				}},
				{"single_client_put_calls", func() (int, error) {
					const n = 1000
					for i := 0; i < n; i++ {
						if _, err := goray.Put(i); err != nil {
							return 0, err
						}
					}
					return n, nil
				}},
			}
			for _, s := range steps {
				if err := run(s.name, s.batch); err != nil {
					return err
				}
			}
			ref, err := goray.Put(42)
			if err != nil {
				return err
			}
			return run("single_client_get_calls", func() (int, error) {
				const n = 1000
				for i := 0; i < n; i++ {
					if _, err := goray.Get(ctx, ref); err != nil {
						return 0, err
					}
				}
				return n, nil
			})
		},
	}
	cmd.Flags().IntVar(&trials, "trials", 5, "timed trials per metric")
	cmd.Flags().DurationVar(&duration, "duration", 2*time.Second, "length of one trial")
	cmd.Flags().Float64Var(&cpus, "num-cpus", 0, "CPUs of the local cluster (default: detected)")
	return cmd
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
