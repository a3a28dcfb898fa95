// Command goray-operator runs the goray Kubernetes operator: it reconciles
// ray.io/v1 RayClusters and RayJobs (KubeRay's resources) into goray pods.
// Its settings are flags plus KubeRay's environment knobs (CLUSTER_DOMAIN,
// ENABLE_INIT_CONTAINER_INJECTION, ENABLE_PROBES_INJECTION,
// RAYCLUSTER_DEFAULT_REQUEUE_SECONDS_ENV).
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/go-logr/logr"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/goray/goray/operator/manager"
)

func main() {
	c := manager.ConfigFromEnv()
	flag.StringVar(&c.MetricsAddr, "metrics-bind-address", c.MetricsAddr, "address of the metrics endpoint (0 turns it off)")
	flag.StringVar(&c.ProbeAddr, "health-probe-bind-address", c.ProbeAddr, "address of /healthz and /readyz (0 turns them off)")
	flag.BoolVar(&c.LeaderElection, "leader-elect", false, "elect one active operator among replicas")
	flag.StringVar(&c.LeaderElectionNS, "leader-election-namespace", "", "namespace of the leader election lease (default: the pod's)")
	flag.StringVar(&c.Namespace, "watch-namespace", os.Getenv("WATCH_NAMESPACE"), "reconcile only this namespace (default: all)")
	flag.Parse()
	ctrl.SetLogger(logr.FromSlogHandler(slog.NewJSONHandler(os.Stderr, nil)))
	cfg, err := ctrl.GetConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, "goray-operator:", err)
		os.Exit(1)
	}
	mgr, err := manager.New(cfg, c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "goray-operator:", err)
		os.Exit(1)
	}
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		fmt.Fprintln(os.Stderr, "goray-operator:", err)
		os.Exit(1)
	}
}
