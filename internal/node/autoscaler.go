package node

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/goray/goray/internal/autoscaler"
	"github.com/goray/goray/internal/clusterconfig"
	"github.com/goray/goray/internal/provider"
	"github.com/goray/goray/proto/rpcpb"
)

// MonitorLog is the autoscaler's log file in the session's logs directory
// (Ray's monitor.log).
const MonitorLog = "monitor.log"

// startAutoscaler starts the head's autoscaler with cfg.Autoscaling; it
// logs to logs/monitor.log.
func (n *Node) startAutoscaler(session string) error {
	c := n.cfg.Autoscaling
	f, err := os.OpenFile(filepath.Join(session, "logs", MonitorLog), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("node: autoscaler log: %w", err)
	}
	n.monitorLog = f
	log := slog.New(slog.NewTextHandler(f, nil))
	if n.cfg.NewProvider == nil {
		return fmt.Errorf("node: this program cannot run an autoscaler (no node providers linked); use goray start --head --autoscaling-config")
	}
	pv, err := n.cfg.NewProvider(c, provider.Params{ClusterName: c.ClusterName, GCSAddress: n.Info.GCSAddress, Token: n.cfg.Token},
		provider.Host{TempRoot: n.cfg.TempRoot, LogDir: filepath.Join(session, "logs"), IP: n.Info.NodeIP, Logger: log})
	if err != nil {
		return err
	}
	n.provider = pv
	conn, err := n.jobsGCS()
	if err != nil {
		return err
	}
	n.autoscaler, err = autoscaler.Start(autoscaler.Options{Config: c, Provider: pv, GCS: rpcpb.NewGcsServiceClient(conn), Logger: log,
		ConfigPath: n.cfg.AutoscalingPath,
		Reloaded: func(c *clusterconfig.Config) error {
			if n.cfg.ValidateProvider != nil {
				if err := n.cfg.ValidateProvider(c); err != nil {
					return err
				}
			}
			return nil
		}})
	return err
}

// stopAutoscaler stops the loop and terminates the nodes it launched: a
// head's process and container nodes do not outlive it.
func (n *Node) stopAutoscaler() {
	if n.autoscaler != nil {
		n.autoscaler.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		if err := n.autoscaler.TerminateWorkers(ctx); err != nil {
			fmt.Fprintf(n.monitorLog, "terminate workers: %v\n", err)
		}
		if c, ok := n.provider.(provider.Cleaner); ok {
			if err := c.Cleanup(ctx); err != nil {
				fmt.Fprintf(n.monitorLog, "provider cleanup: %v\n", err)
			}
		}
		cancel()
	}
	if n.provider != nil {
		n.provider.Close()
	}
	if n.monitorLog != nil {
		n.monitorLog.Close()
	}
}
