package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/proto/rpcpb"
)

// rayCompatFlags adds, hidden, the `ray start` flags that KubeRay renders
// or that KubeRay manifests commonly set in rayStartParams and that mean
// nothing to goray, so such command lines start a node unchanged.
// --no-monitor: goray's head runs an autoscaler only with
// --autoscaling-config, and on Kubernetes `goray kuberay-autoscaler` runs
// beside it instead.
func rayCompatFlags(f *pflag.FlagSet) {
	for _, name := range []string{"no-monitor", "disable-usage-stats", "include-dashboard", "include-log-monitor", "enable-object-reconstruction"} {
		f.Bool(name, false, "accepted for `ray start` compatibility; no effect")
		f.MarkHidden(name)
	}
	for _, name := range []string{"dashboard-agent-grpc-port", "dashboard-grpc-port", "object-manager-port", "node-manager-port",
		"runtime-env-agent-port", "min-worker-port", "max-worker-port", "num-redis-shards"} {
		f.Int(name, 0, "accepted for `ray start` compatibility; no effect")
		f.MarkHidden(name)
	}
	for _, name := range []string{"log-color", "redis-password", "plasma-directory", "system-config", "storage", "worker-port-list", "node-name", "dashboard-agent-listen-host"} {
		f.String(name, "", "accepted for `ray start` compatibility; no effect")
		f.MarkHidden(name)
	}
}

// unquoteFlag drops one pair of single or double quotes around a flag's
// value. A shell removes them from KubeRay's `--resources='{"TPU":4}'`;
// this covers command lines that reach goray without a shell (exec form).
func unquoteFlag(v string) string {
	if len(v) >= 2 && (v[0] == '\'' || v[0] == '"') && v[len(v)-1] == v[0] {
		return v[1 : len(v)-1]
	}
	return v
}

// healthCheckCmd is `ray health-check`: exit status 0 when the GCS at
// --address answers, 1 when it does not. KubeRay's worker init container
// runs it until the head is up. A GCS that refuses the call for want of a
// token has answered, so no token is needed.
func healthCheckCmd() *cobra.Command {
	var address, tempDir string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "health-check",
		Short: "Exit 0 when the cluster's GCS answers at --address (HOST:PORT), 1 otherwise",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := resolveAddress(address, tempDir)
			if err != nil {
				return err
			}
			return checkGCS(addr, timeout)
		},
	}
	cmd.Flags().StringVar(&address, "address", "", "GCS address HOST:PORT (default: GORAY_ADDRESS, RAY_ADDRESS, else the head on this host)")
	cmd.Flags().StringVar(&tempDir, "temp-dir", "", "temp root where the local head is recorded")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for an answer")
	cmd.Flags().String("component", "", "accepted for compatibility with ray health-check; only the GCS is checked")
	cmd.Flags().Bool("skip-version-check", false, "accepted for compatibility with ray health-check; no effect")
	cmd.Flags().MarkHidden("skip-version-check")
	return cmd
}

// errGCSUnhealthy is returned when no GCS answers.
var errGCSUnhealthy = errors.New("health-check: the GCS did not answer")

func checkGCS(addr string, timeout time.Duration) error {
	if !validHostPort(addr) {
		return fmt.Errorf("health-check: address %q: want HOST:PORT of the GCS", addr)
	}
	tok, _, _, _ := auth.LookupToken() // optional: an Unauthenticated answer is an answer
	conn, err := grpc.NewClient(addr, append(auth.DialOptions(tok), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		return fmt.Errorf("health-check: %w", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err = rpcpb.NewGcsServiceClient(conn).GetClusterView(ctx, &rpcpb.Empty{})
	switch status.Code(err) {
	case codes.OK, codes.Unauthenticated, codes.PermissionDenied:
		return nil
	}
	return fmt.Errorf("%w at %s: %v", errGCSUnhealthy, addr, err)
}
