// Package registry builds a node provider from a cluster config's provider
// section. It links the Docker SDK, so the head's CLI uses it and the
// goray library (in every user program) does not.
package registry

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"time"

	"github.com/goray/goray/internal/clusterconfig"
	"github.com/goray/goray/internal/provider"
	"github.com/goray/goray/internal/provider/docker"
	"github.com/goray/goray/internal/provider/process"
)

// Validate reports what the head's autoscaler cannot run in a config that
// clusterconfig accepted: a provider type it has no provider for, and
// node_config entries the provider does not know. `goray start --head
// --autoscaling-config` calls it before anything starts.
func Validate(c *clusterconfig.Config) error {
	for _, name := range slices.Sorted(maps.Keys(c.AvailableNodeTypes)) {
		t := c.AvailableNodeTypes[name]
		var err error
		switch c.Provider.Type {
		case "process":
			_, err = process.NodeEnv(name, t.NodeConfig)
		case "docker":
			err = docker.CheckNodeConfig(name, t.NodeConfig, t.Resources)
		case "local":
			return nil // node_config is free-form for SSH hosts
		default:
			return fmt.Errorf("provider.type %q: the head's autoscaler has no such node provider (have: process, docker, local)", c.Provider.Type)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// New builds the provider c.Provider.Type names, for nodes that join the
// cluster at params.GCSAddress.
func New(c *clusterconfig.Config, params provider.Params, host provider.Host) (provider.NodeProvider, error) {
	switch c.Provider.Type {
	case "process":
		return process.New(process.Config{
			ClusterName: c.ClusterName, Params: params, TempRoot: host.TempRoot,
			LogDir: host.LogDir, IP: host.IP, Logger: host.Logger,
		})
	case "docker":
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cfg := dockerConfig(c, params, host.Logger)
		// A head that `goray up` started in a container of the cluster
		// keeps that container (and the network) when it stops.
		cfg.Self = os.Getenv(provider.EnvInstanceID)
		return docker.New(ctx, cfg)
	case "local":
		return newLocal(c, params, host)
	}
	return nil, fmt.Errorf("provider.type %q: the head's autoscaler has no such node provider (have: process, docker, local)", c.Provider.Type)
}

func dockerConfig(c *clusterconfig.Config, params provider.Params, log *slog.Logger) docker.Config {
	return docker.Config{ClusterName: c.ClusterName, Image: c.Provider.Image, Network: c.Provider.Network,
		Subnet: c.Provider.Subnet, Params: params, Logger: log}
}

// Cleanup removes what a head's provider of this type made for the
// cluster and may have left behind (for docker, the cluster's containers
// and network); other providers have nothing to remove.
func Cleanup(ctx context.Context, providerType, clusterName string) error {
	if providerType == "docker" && clusterName != "" {
		return docker.RemoveCluster(ctx, clusterName)
	}
	return nil
}

// HeadIP returns the address a head with this config should advertise when
// --node-ip-address is not given: for the docker provider, the gateway of
// the cluster's network (created here if needed), so the containers reach
// the GCS, or, for a head that runs in a container on that network (goray
// up), its own address there; "" otherwise.
func HeadIP(c *clusterconfig.Config) (string, error) {
	if c.Provider.Type != "docker" {
		return "", nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	gw, err := docker.PrepareNetwork(ctx, dockerConfig(c, provider.Params{ClusterName: c.ClusterName}, nil))
	if err != nil {
		return "", err
	}
	return ownAddressBeside(gw), nil
}

// ownAddressBeside returns an address of this host in the same /16..../30
// network as gw but not gw itself (this host is a container on the
// network), else gw (this host is the network's gateway).
func ownAddressBeside(gw string) string {
	g := net.ParseIP(gw)
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if ok && ipn.IP.To4() != nil && ipn.Contains(g) && !ipn.IP.Equal(g) {
			return ipn.IP.String()
		}
	}
	return gw
}
