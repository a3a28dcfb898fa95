package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/autoscaler"
	"github.com/goray/goray/internal/autoscaler/request"
	"github.com/goray/goray/internal/client"
	"github.com/goray/goray/internal/node"
	"github.com/goray/goray/proto/rpcpb"
)

// resolveAddress finds the GCS address: flag, GORAY_ADDRESS, RAY_ADDRESS,
// else the head started on this host.
func resolveAddress(flag, tempDir string) (string, error) {
	for _, a := range []string{flag, os.Getenv("GORAY_ADDRESS"), os.Getenv("RAY_ADDRESS")} {
		if a == "" || a == "auto" {
			continue
		}
		if strings.HasPrefix(a, "http://") || strings.HasPrefix(a, "https://") {
			return "", fmt.Errorf("address %q is a dashboard URL; this command needs the GCS address HOST:PORT (port 6379 by default)", a)
		}
		if _, ok, _ := client.ParseAddress(a); ok {
			return "", fmt.Errorf("address %q names the head's client server (Ray Client); this command needs the GCS address HOST:PORT (port 6379 by default)", a)
		}
		return a, nil
	}
	root := node.TempRoot(tempDir)
	b, err := os.ReadFile(filepath.Join(root, node.CurrentClusterFile))
	if err != nil {
		return "", fmt.Errorf("no cluster address given and none recorded under %s; pass --address or start one with goray start --head", root)
	}
	return strings.TrimSpace(string(b)), nil
}

func gcsClient(addr string) (rpcpb.GcsServiceClient, func(), error) {
	tok, err := clusterToken()
	if err != nil {
		return nil, nil, err
	}
	conn, err := grpc.NewClient(addr, append(auth.DialOptions(tok), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithChainUnaryInterceptor(client.NotGCSInterceptor(addr)))...)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster address %q: %w", addr, err)
	}
	return rpcpb.NewGcsServiceClient(conn), func() { conn.Close() }, nil
}

// withGCS resolves the cluster's address, connects to its GCS and runs f
// under a deadline.
func withGCS(address, tempDir string, timeout time.Duration, f func(ctx context.Context, gcs rpcpb.GcsServiceClient, addr string) error) error {
	addr, err := resolveAddress(address, tempDir)
	if err != nil {
		return err
	}
	gcs, closeConn, err := gcsClient(addr)
	if err != nil {
		return err
	}
	defer closeConn()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return f(ctx, gcs, addr)
}

func statusCmd() *cobra.Command {
	var address, tempDir string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the cluster's nodes, resource usage and pending demand (Ray's layout)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withGCS(address, tempDir, 10*time.Second, func(ctx context.Context, gcs rpcpb.GcsServiceClient, addr string) error {
				view, err := gcs.GetClusterView(ctx, &rpcpb.Empty{})
				if err != nil {
					if status.Code(err) == codes.Unavailable {
						return errors.New("cannot reach the GCS at " + addr + ": " + status.Convert(err).Message())
					}
					return errors.New(status.Convert(err).Message())
				}
				st := statusOf(view)
				if r, err := gcs.KVGet(ctx, &rpcpb.KVRequest{Namespace: request.Namespace, Key: autoscaler.KVStatus}); err == nil && r.Found {
					var rep autoscaler.Report
					if err := json.Unmarshal(r.Value, &rep); err == nil {
						st.AddReport(rep)
					}
				}
				fmt.Fprintln(cmd.OutOrStdout(), autoscaler.FormatStatus(st))
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&address, "address", "", "GCS address of the cluster (default: GORAY_ADDRESS or the head on this host)")
	cmd.Flags().StringVar(&tempDir, "temp-dir", "", "temp root (default $GORAY_TEMP or /tmp/goray)")
	return cmd
}

func statusOf(view *rpcpb.ClusterView) autoscaler.Status {
	st := autoscaler.Status{Time: time.Now()}
	for _, n := range view.Nodes {
		alive := n.Node.State == rpcpb.NodeState_ALIVE
		if !alive && n.Node.DeathExpected {
			continue // stopped or scaled down on purpose: not a failure
		}
		typ := n.Node.NodeType
		if typ == "" {
			typ = "node_" + n.Node.NodeId // as Ray names nodes no autoscaler launched
		}
		st.Nodes = append(st.Nodes, autoscaler.StatusNode{
			ID: n.Node.NodeId, Type: typ, IP: n.Node.NodeIp, InstanceID: n.Node.InstanceId, Alive: alive, Reason: n.Node.DeathReason,
			Total: n.Node.Total, Available: n.Available,
		})
		for _, d := range n.Demands {
			st.Demands = append(st.Demands, autoscaler.StatusDemand{Shape: d.Shape, Count: d.Count, Infeasible: d.Infeasible})
		}
	}
	return st
}
