package kuberay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	"google.golang.org/grpc"

	"github.com/goray/goray/internal/autoscaler"
	"github.com/goray/goray/proto/rpcpb"
)

// RunOptions configure Run.
type RunOptions struct {
	Kube               *Kube
	Namespace, Cluster string
	GCS                *grpc.ClientConn
	Logger             *slog.Logger
	Interval           time.Duration // autoscaler rounds (default: the autoscaler's)
	ConfigRefresh      time.Duration // how often the RayCluster is read again (default 10 s)
}

// Run is `goray kuberay-autoscaler`: it runs the autoscaler of the
// RayCluster with this provider until ctx ends, restarting it with a new
// config when the RayCluster's groups change.
func Run(ctx context.Context, o RunOptions) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.ConfigRefresh <= 0 {
		o.ConfigRefresh = 10 * time.Second
	}
	pv := New(o.Kube, o.Namespace, o.Cluster, log)
	var running *autoscaler.Autoscaler
	var current any
	defer func() {
		if running != nil {
			running.Stop()
		}
	}()
	t := time.NewTicker(o.ConfigRefresh)
	defer t.Stop()
	for {
		rc, err := o.Kube.GetRayCluster(ctx, o.Namespace, o.Cluster)
		switch {
		case errors.Is(err, ErrNotFound) && running == nil:
			return fmt.Errorf("kuberay: RayCluster %s/%s not found", o.Namespace, o.Cluster)
		case err != nil:
			log.Warn("read RayCluster", "err", err)
		default:
			cfg, err := AutoscalingConfig(rc)
			if err != nil {
				log.Warn("RayCluster cannot be autoscaled", "err", err)
				break
			}
			if !reflect.DeepEqual(cfg, current) {
				if running != nil {
					log.Info("RayCluster changed: restarting the autoscaler")
					running.Stop()
				}
				running, err = autoscaler.Start(autoscaler.Options{Config: cfg, Provider: pv, GCS: rpcpb.NewGcsServiceClient(o.GCS), Logger: log, Interval: o.Interval})
				if err != nil {
					return err
				}
				current = cfg
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
