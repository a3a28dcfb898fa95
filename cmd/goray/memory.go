package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/proto/rpcpb"
)

// storeStats asks every alive node's raylet for its object store stats.
func storeStats(ctx context.Context, gcs rpcpb.GcsServiceClient) ([]*rpcpb.ObjectStoreStats, error) {
	tok, err := clusterToken()
	if err != nil {
		return nil, err
	}
	nodes, err := gcs.GetAllNodes(ctx, &rpcpb.Empty{})
	if err != nil {
		return nil, err
	}
	var out []*rpcpb.ObjectStoreStats
	for _, n := range nodes.Nodes {
		if n.State != rpcpb.NodeState_ALIVE {
			continue
		}
		conn, err := grpc.NewClient(n.RayletAddress, append(auth.DialOptions(tok), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
		if err != nil {
			return nil, err
		}
		st, err := rpcpb.NewRayletClient(conn).GetObjectStoreStats(ctx, &rpcpb.Empty{})
		conn.Close()
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", n.NodeId, err)
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeId < out[j].NodeId })
	return out, nil
}

func withStats(address, tempDir string, f func([]*rpcpb.ObjectStoreStats) error) error {
	return withGCS(address, tempDir, 20*time.Second, func(ctx context.Context, gcs rpcpb.GcsServiceClient, _ string) error {
		stats, err := storeStats(ctx, gcs)
		if err != nil {
			return err
		}
		return f(stats)
	})
}

func mib(b int64) string { return fmt.Sprintf("%.2f MiB", float64(b)/(1<<20)) }

func memoryCmd() *cobra.Command {
	var address, tempDir string
	var top int
	cmd := &cobra.Command{
		Use:   "memory",
		Short: "Show each node's object store usage, spilling and largest objects (Ray's ray memory)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStats(address, tempDir, func(stats []*rpcpb.ObjectStoreStats) error {
				printMemory(cmd.OutOrStdout(), stats, top)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&address, "address", "", "GCS address of the cluster")
	cmd.Flags().StringVar(&tempDir, "temp-dir", "", "temp root")
	cmd.Flags().IntVar(&top, "num-entries", 10, "largest objects to list per node")
	return cmd
}

func printMemory(w io.Writer, stats []*rpcpb.ObjectStoreStats, top int) {
	fmt.Fprintf(w, "======== Object store status: %s ========\n", time.Now().Format("2006-01-02 15:04:05"))
	for _, st := range stats {
		fmt.Fprintf(w, "Node %s\n", st.NodeId)
		fmt.Fprintf(w, "  Used: %s of %s (%d objects, %d spilled)\n", mib(st.Used), mib(st.Capacity), st.NumObjects, st.NumSpilled)
		fmt.Fprintf(w, "  Created: %s  Pulled: %s  Spilled: %s  Restored: %s  Reads: %d\n",
			mib(st.CreatedBytes), mib(st.PulledBytes), mib(st.SpilledBytes), mib(st.RestoredBytes), st.Reads)
		for i, o := range st.Objects {
			if i == top {
				break
			}
			where := "memory"
			if o.Spilled {
				where = "spilled"
			}
			copyKind := "primary"
			if !o.Primary {
				copyKind = "copy"
			}
			fmt.Fprintf(w, "    %s  %s  %s  %s  reads=%d\n", o.ObjectId, mib(o.Size), where, copyKind, o.Reads)
		}
	}
}

func listCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "list", Short: "List cluster state (Ray's ray list)"}
	var address, tempDir string
	objects := &cobra.Command{
		Use:   "objects",
		Short: "List the objects in the nodes' object stores",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStats(address, tempDir, func(stats []*rpcpb.ObjectStoreStats) error {
				w := cmd.OutOrStdout()
				fmt.Fprintf(w, "%-28s %-12s %12s %-8s %s\n", "OBJECT_ID", "NODE_ID", "SIZE_BYTES", "COPY", "STATE")
				for _, st := range stats {
					for _, o := range st.Objects {
						state, kind := "IN_MEMORY", "PRIMARY"
						if o.Spilled {
							state = "SPILLED"
						}
						if !o.Primary {
							kind = "COPY"
						}
						fmt.Fprintf(w, "%-28s %-12s %12d %-8s %s\n", o.ObjectId, st.NodeId[:12], o.Size, kind, state)
					}
				}
				return nil
			})
		},
	}
	objects.Flags().StringVar(&address, "address", "", "GCS address of the cluster")
	objects.Flags().StringVar(&tempDir, "temp-dir", "", "temp root")
	cmd.AddCommand(objects)
	listGCS(cmd)
	return cmd
}

// listGCS adds `goray list nodes|actors|jobs` (Ray's state CLI) to list.
func listGCS(list *cobra.Command) {
	var address, tempDir string
	run := func(f func(ctx context.Context, gcs rpcpb.GcsServiceClient, w io.Writer) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			return withGCS(address, tempDir, 20*time.Second, func(ctx context.Context, gcs rpcpb.GcsServiceClient, _ string) error {
				return f(ctx, gcs, cmd.OutOrStdout())
			})
		}
	}
	nodes := &cobra.Command{Use: "nodes", Short: "List the cluster's nodes", Args: cobra.NoArgs,
		RunE: run(func(ctx context.Context, gcs rpcpb.GcsServiceClient, w io.Writer) error {
			ns, err := gcs.GetAllNodes(ctx, &rpcpb.Empty{})
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "%-56s %-15s %-5s %-6s %s\n", "NODE_ID", "NODE_IP", "HEAD", "STATE", "RESOURCES_TOTAL")
			for _, n := range ns.Nodes {
				fmt.Fprintf(w, "%-56s %-15s %-5v %-6s %v\n", n.NodeId, n.NodeIp, n.IsHead, n.State, n.Total)
			}
			return nil
		})}
	actors := &cobra.Command{Use: "actors", Short: "List the actors", Args: cobra.NoArgs,
		RunE: run(func(ctx context.Context, gcs rpcpb.GcsServiceClient, w io.Writer) error {
			as, err := gcs.ListActors(ctx, &rpcpb.Empty{})
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "%-32s %-24s %-12s %-20s %-8s %s\n", "ACTOR_ID", "CLASS_NAME", "STATE", "NAME", "PID", "DEATH_CAUSE")
			for _, a := range as.Actors {
				state := strings.TrimPrefix(a.State.String(), "ACTOR_")
				fmt.Fprintf(w, "%-32s %-24s %-12s %-20s %-8d %s\n", a.Spec.ActorId, a.Spec.ClassName, state, a.Spec.Name, a.Pid, a.DeathCause)
			}
			return nil
		})}
	jobs := &cobra.Command{Use: "jobs", Short: "List the jobs (drivers)", Args: cobra.NoArgs,
		RunE: run(func(ctx context.Context, gcs rpcpb.GcsServiceClient, w io.Writer) error {
			js, err := gcs.GetAllJobs(ctx, &rpcpb.Empty{})
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "%-10s %-10s %-8s %s\n", "JOB_ID", "STATUS", "PID", "ENTRYPOINT")
			for _, j := range js.Jobs {
				st := "RUNNING"
				if j.IsDead {
					st = "FINISHED"
				}
				fmt.Fprintf(w, "%-10s %-10s %-8d %s\n", j.JobId, st, j.DriverPid, j.Entrypoint)
			}
			return nil
		})}
	for _, c := range []*cobra.Command{nodes, actors, jobs} {
		c.Flags().StringVar(&address, "address", "", "GCS address of the cluster")
		c.Flags().StringVar(&tempDir, "temp-dir", "", "temp root")
		list.AddCommand(c)
	}
}
