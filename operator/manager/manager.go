// Package manager assembles the goray operator: a controller-runtime
// manager running the RayCluster and RayJob controllers.
package manager

import (
	"fmt"
	"os"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/goray/goray/operator/raycluster"
	"github.com/goray/goray/operator/rayjob"
	"github.com/goray/goray/operator/scheme"
)

// Config holds the operator's settings.
type Config struct {
	// MetricsAddr is where the manager serves metrics ("0": nowhere).
	MetricsAddr string
	// ProbeAddr serves /healthz and /readyz ("" or "0": nowhere).
	ProbeAddr string
	// LeaderElection makes replicas elect one active operator.
	LeaderElection   bool
	LeaderElectionNS string
	// Namespace limits the operator to one namespace ("" = all).
	Namespace string
	// Pods shapes the pods of every cluster.
	Pods raycluster.Options
	// Requeue is the resync period of a quiet cluster.
	Requeue time.Duration
	// SkipNameValidation lets one process build several managers (tests).
	SkipNameValidation bool
}

// ConfigFromEnv reads KubeRay's operator environment knobs:
// CLUSTER_DOMAIN, ENABLE_INIT_CONTAINER_INJECTION, ENABLE_PROBES_INJECTION,
// ENABLE_DETERMINISTIC_HEAD_POD_NAME, RAYCLUSTER_DEFAULT_REQUEUE_SECONDS_ENV.
func ConfigFromEnv() Config {
	c := Config{MetricsAddr: ":8080", ProbeAddr: ":8082"}
	c.Pods.ClusterDomain = os.Getenv("CLUSTER_DOMAIN")
	c.Pods.NoInitContainer = os.Getenv("ENABLE_INIT_CONTAINER_INJECTION") == "false"
	c.Pods.NoProbes = os.Getenv("ENABLE_PROBES_INJECTION") == "false"
	c.Pods.DeterministicHeadName = os.Getenv("ENABLE_DETERMINISTIC_HEAD_POD_NAME") == "true"
	if s, err := strconv.Atoi(os.Getenv("RAYCLUSTER_DEFAULT_REQUEUE_SECONDS_ENV")); err == nil && s > 0 {
		c.Requeue = time.Duration(s) * time.Second
	}
	return c
}

// New returns a manager with the controllers registered; run it with Start.
func New(cfg *rest.Config, c Config) (ctrl.Manager, error) {
	opts := ctrl.Options{
		Scheme:                  scheme.New(),
		Metrics:                 metricsserver.Options{BindAddress: c.MetricsAddr},
		HealthProbeBindAddress:  c.ProbeAddr,
		LeaderElection:          c.LeaderElection,
		LeaderElectionID:        "goray-operator.ray.io",
		LeaderElectionNamespace: c.LeaderElectionNS,
		Controller:              config.Controller{SkipNameValidation: &c.SkipNameValidation},
	}
	if opts.Metrics.BindAddress == "" {
		opts.Metrics.BindAddress = "0"
	}
	if opts.HealthProbeBindAddress == "0" {
		opts.HealthProbeBindAddress = ""
	}
	if c.Namespace != "" {
		opts.Cache.DefaultNamespaces = map[string]cache.Config{c.Namespace: {}}
	}
	// Cache only the pods, services and token Secrets of goray clusters
	// (every one the operator makes carries ray.io/cluster), not the whole
	// cluster's: the RayCluster controller watches its <cluster>-auth
	// Secret, and the informer behind that watch holds only labelled
	// Secrets. Reads of Secrets (a user's own token Secret has no label)
	// go straight to the API server.
	ours, err := labels.Parse(raycluster.LabelCluster)
	if err != nil {
		return nil, err
	}
	opts.Cache.ByObject = map[client.Object]cache.ByObject{
		&corev1.Pod{}:     {Label: ours},
		&corev1.Service{}: {Label: ours},
		&corev1.Secret{}:  {Label: ours},
	}
	opts.Client.Cache = &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}
	mgr, err := ctrl.NewManager(cfg, opts)
	if err != nil {
		return nil, fmt.Errorf("operator: %w", err)
	}
	rc := &raycluster.Reconciler{
		Client:   mgr.GetClient(),
		Recorder: raycluster.NewRecorder(mgr.GetEventRecorder("raycluster-controller")),
		Options:  c.Pods,
		Requeue:  c.Requeue,
	}
	if err := rc.SetupWithManager(mgr); err != nil {
		return nil, err
	}
	rj := &rayjob.Reconciler{
		Client:   mgr.GetClient(),
		Recorder: raycluster.NewRecorder(mgr.GetEventRecorder("rayjob-controller")),
		Options:  c.Pods,
	}
	if err := rj.SetupWithManager(mgr); err != nil {
		return nil, err
	}
	if opts.HealthProbeBindAddress != "" {
		mgr.AddHealthzCheck("healthz", healthz.Ping)
		mgr.AddReadyzCheck("readyz", healthz.Ping)
	}
	return mgr, nil
}
