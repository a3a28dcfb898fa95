package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/node"
	"github.com/goray/goray/internal/provider/kuberay"
)

// kuberayAutoscalerCmd is what the autoscaler container beside a
// RayCluster's head runs (KubeRay renders `ray kuberay-autoscaler
// --cluster-name $(RAY_CLUSTER_NAME) --cluster-namespace
// $(RAY_CLUSTER_NAMESPACE)`): the head's autoscaler with the Kubernetes node
// provider, which scales by patching the RayCluster.
func kuberayAutoscalerCmd() *cobra.Command {
	var name, namespace, address, kubeconfig string
	cmd := &cobra.Command{
		Use:   "kuberay-autoscaler --cluster-name NAME --cluster-namespace NS",
		Short: "Run the autoscaler of a RayCluster on Kubernetes (scales by patching the RayCluster)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if name == "" || namespace == "" {
				return errors.New("--cluster-name and --cluster-namespace are required")
			}
			var kube *kuberay.Kube
			var err error
			if kubeconfig != "" {
				kube, err = kuberay.FromKubeconfig(kubeconfig)
			} else {
				kube, err = kuberay.InCluster()
			}
			if err != nil {
				return err
			}
			if address == "" {
				// Beside the head in its pod: goray's GCS listens on the pod's
				// IP (the node IP), not on loopback as Ray's does.
				port := os.Getenv("RAY_PORT")
				if port == "" {
					port = "6379"
				}
				address = net.JoinHostPort(node.DetectNodeIP(""), port)
				for _, a := range []string{os.Getenv("GORAY_ADDRESS"), os.Getenv("RAY_ADDRESS")} {
					if a != "" && a != "auto" {
						address = a
						break
					}
				}
			}
			tok, err := clusterToken()
			if err != nil {
				return err
			}
			conn, err := grpc.NewClient(address, append(auth.DialOptions(tok), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
			if err != nil {
				return err
			}
			defer conn.Close()
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil)).With("component", "kuberay-autoscaler", "cluster", namespace+"/"+name)
			return kuberay.Run(ctx, kuberay.RunOptions{Kube: kube, Namespace: namespace, Cluster: name, GCS: conn, Logger: log})
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "cluster-name", "", "the RayCluster's name")
	f.StringVar(&namespace, "cluster-namespace", "", "the RayCluster's namespace")
	f.StringVar(&address, "address", "", "the head's GCS address (default GORAY_ADDRESS, RAY_ADDRESS, else this pod's IP and $RAY_PORT or 6379)")
	f.StringVar(&kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file (default: $KUBECONFIG, else the pod's service account)")
	return cmd
}
