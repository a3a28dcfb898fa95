// Package docker is a node provider that runs each goray node as a Docker
// container on one bridge network per cluster, through the Docker Engine
// API (github.com/docker/docker/client, API version negotiated; Engine
// 20.10 speaks 1.41).
//
// The head usually runs on the host: PrepareNetwork creates the cluster's
// network and returns its gateway IP, which the head advertises
// (--node-ip-address) so that the containers reach its GCS. Each node is a
// container of the goray image (deploy/image/build.sh) named
// goray-<cluster>-<kind>-<hex>; the name is the provider node ID and the
// container's main process is `goray start --address=<GCS> --block ...`.
//
// Tags: the tags given at create time are the container's labels. Docker
// cannot change the labels of a container, so SetNodeTags keeps its changes
// in this Provider's memory only: another Provider (a restarted autoscaler)
// sees the create-time tags again.
//
// A container that exited is a terminated node: NonTerminatedNodes removes
// it and records its exit code and the tail of its log in Failures, so a
// node that died (or never came up) does not vanish without a reason.
package docker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-units"

	"github.com/goray/goray/internal/provider"
)

const (
	// DefaultImage is the image nodes run unless Config or node_config
	// names another.
	DefaultImage = "goray:latest"
	// LabelManaged marks the networks and containers this package created.
	LabelManaged = "goray.io/managed"
	// labelPrefix is the prefix of this package's (and the image's) own
	// labels, which are not node tags.
	labelPrefix = "goray.io/"
	// NodeTempDir is GORAY_TEMP inside a node container.
	NodeTempDir = "/tmp/goray"

	stopTimeoutSeconds = 5
	logTailLines       = 20
	pingTimeout        = 10 * time.Second
)

// Config configures a Provider.
type Config struct {
	ClusterName string
	Image       string // default DefaultImage
	Network     string // default "goray_" + ClusterName
	Subnet      string // optional CIDR for the network PrepareNetwork creates
	// Params are the GCS address and token the nodes join with.
	// Params.ClusterName is used when ClusterName is empty.
	Params provider.Params
	Logger *slog.Logger
	// Self is the node this process runs in (a head that `goray up`
	// created as a container of the cluster): Cleanup leaves it and the
	// network alone.
	Self string
}

func (c *Config) defaults() error {
	if c.ClusterName == "" {
		c.ClusterName = c.Params.ClusterName
	}
	if c.ClusterName == "" {
		return errors.New("docker provider: no cluster name")
	}
	if c.Image == "" {
		c.Image = DefaultImage
	}
	if c.Network == "" {
		c.Network = "goray_" + sanitize(c.ClusterName)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Provider is the Docker node provider of one cluster.
type Provider struct {
	cfg Config
	cli *client.Client
	log *slog.Logger

	mu sync.Mutex
	// tags holds SetNodeTags' changes by node ID (labels are immutable).
	tags map[string]map[string]string
	// terminating holds the nodes TerminateNodes is stopping, whose exit
	// is not a failure.
	terminating         map[string]bool
	provider.FailureLog // exited containers NonTerminatedNodes removed, with exit code and log tail
}

var (
	_ provider.NodeProvider    = (*Provider)(nil)
	_ provider.Cleaner         = (*Provider)(nil)
	_ provider.FailureReporter = (*Provider)(nil)
)

// daemonHost names the daemon the client talks to, for errors.
func daemonHost() string {
	if h := os.Getenv(client.EnvOverrideHost); h != "" {
		return h + " (DOCKER_HOST)"
	}
	return client.DefaultDockerHost
}

// connect makes a client from the environment (DOCKER_HOST, ...) and
// checks that the daemon answers.
func connect(ctx context.Context) (*client.Client, error) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker: client for the Docker daemon at %s: %w", daemonHost(), err)
	}
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if _, err := cli.Ping(pctx); err != nil {
		cli.Close()
		return nil, fmt.Errorf("docker: cannot reach the Docker daemon at %s: is it running? %w", daemonHost(), err)
	}
	return cli, nil
}

// New connects to the Docker daemon named by the environment (DOCKER_HOST,
// default unix:///var/run/docker.sock).
func New(ctx context.Context, cfg Config) (*Provider, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	cli, err := connect(ctx)
	if err != nil {
		return nil, err
	}
	return &Provider{cfg: cfg, cli: cli, log: cfg.Logger,
		tags: map[string]map[string]string{}, terminating: map[string]bool{}}, nil
}

// Close closes the client; the containers keep running.
func (p *Provider) Close() error { return p.cli.Close() }

// Cleanup removes the cluster's containers and network
// (provider.Cleaner).
func (p *Provider) Cleanup(ctx context.Context) error {
	if p.cfg.Self == "" {
		return RemoveCluster(ctx, p.cfg.ClusterName)
	}
	nodes, err := p.NonTerminatedNodes(ctx, nil)
	if err != nil {
		return err
	}
	var ids []string
	for _, n := range nodes {
		if n.ID != p.cfg.Self {
			ids = append(ids, n.ID)
		}
	}
	return p.TerminateNodes(ctx, ids)
}

// Network is the name of the cluster's network.
func (p *Provider) Network() string { return p.cfg.Network }

// PrepareNetwork creates the cluster's bridge network unless it exists and
// returns its gateway IP, the host's address on it: a head on the host
// advertises it so that the containers reach the GCS.
func PrepareNetwork(ctx context.Context, cfg Config) (gatewayIP string, err error) {
	if err := cfg.defaults(); err != nil {
		return "", err
	}
	cli, err := connect(ctx)
	if err != nil {
		return "", err
	}
	defer cli.Close()
	nw, err := cli.NetworkInspect(ctx, cfg.Network, network.InspectOptions{})
	switch {
	case err == nil && nw.Name != cfg.Network:
		return "", fmt.Errorf("docker: network %q: the daemon found %q instead", cfg.Network, nw.Name)
	case err == nil && nw.Labels[provider.TagClusterName] != cfg.ClusterName:
		return "", fmt.Errorf("docker: network %q exists but does not belong to cluster %q (label %s=%q)",
			cfg.Network, cfg.ClusterName, provider.TagClusterName, nw.Labels[provider.TagClusterName])
	case err != nil && !cerrdefs.IsNotFound(err):
		return "", fmt.Errorf("docker: inspect network %q: %w", cfg.Network, err)
	case err != nil:
		opts := network.CreateOptions{
			Driver: "bridge",
			Labels: map[string]string{provider.TagClusterName: cfg.ClusterName, LabelManaged: "true"},
		}
		if cfg.Subnet != "" {
			opts.IPAM = &network.IPAM{Config: []network.IPAMConfig{{Subnet: cfg.Subnet}}}
		}
		_, cerr := cli.NetworkCreate(ctx, cfg.Network, opts)
		if cerr != nil && !cerrdefs.IsConflict(cerr) { // a conflict: created meanwhile
			return "", fmt.Errorf("docker: create network %q for cluster %q: %w", cfg.Network, cfg.ClusterName, cerr)
		}
		if nw, err = cli.NetworkInspect(ctx, cfg.Network, network.InspectOptions{}); err != nil {
			return "", fmt.Errorf("docker: inspect network %q: %w", cfg.Network, err)
		}
		cfg.Logger.Info("docker: created network", "network", cfg.Network, "cluster", cfg.ClusterName)
	}
	for _, c := range nw.IPAM.Config {
		if gw := strings.Split(c.Gateway, "/")[0]; gw != "" && net.ParseIP(gw).To4() != nil {
			return gw, nil
		}
	}
	for _, c := range nw.IPAM.Config { // no gateway recorded: the subnet's first address
		if _, ipn, err := net.ParseCIDR(c.Subnet); err == nil && ipn.IP.To4() != nil {
			ip := ipn.IP.To4()
			ip[3]++
			return ip.String(), nil
		}
	}
	return "", fmt.Errorf("docker: network %q has no IPv4 gateway", cfg.Network)
}

// RemoveCluster removes every container and network labelled with the
// cluster's name.
func RemoveCluster(ctx context.Context, clusterName string) error {
	if clusterName == "" {
		return errors.New("docker: RemoveCluster needs a cluster name")
	}
	cli, err := connect(ctx)
	if err != nil {
		return err
	}
	defer cli.Close()
	f := filters.NewArgs(filters.Arg("label", provider.TagClusterName+"="+clusterName))
	cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return fmt.Errorf("docker: list containers of cluster %q: %w", clusterName, err)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
				mu.Lock()
				errs = append(errs, fmt.Errorf("docker: remove container %s: %w", containerName(c), err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	nf := filters.NewArgs(filters.Arg("label", provider.TagClusterName+"="+clusterName), filters.Arg("label", LabelManaged+"=true"))
	nws, err := cli.NetworkList(ctx, network.ListOptions{Filters: nf})
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("docker: list networks of cluster %q: %w", clusterName, err))...)
	}
	for _, nw := range nws {
		if err := cli.NetworkRemove(ctx, nw.ID); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("docker: remove network %s: %w", nw.Name, err))
		}
	}
	return errors.Join(errs...)
}

// nodeSpec is a node type's node_config, parsed.
type nodeSpec struct {
	image  string
	env    map[string]string
	shm    int64
	memory int64
}

// CheckNodeConfig reports a node type's node_config this provider cannot
// run (unknown keys, bad sizes or env), before anything starts.
func CheckNodeConfig(nodeType string, nc map[string]any, resources map[string]float64) error {
	_, err := parseNodeConfig(nodeType, nc, DefaultImage, resources)
	return err
}

func parseNodeConfig(nodeType string, nc map[string]any, defImage string, resources map[string]float64) (nodeSpec, error) {
	s := nodeSpec{image: defImage, env: map[string]string{}}
	keys := make([]string, 0, len(nc))
	for k := range nc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := nc[k]
		var err error
		switch k {
		case "image":
			str, ok := v.(string)
			if !ok || str == "" {
				err = fmt.Errorf("want an image name, got %v", v)
			}
			s.image = str
		case "env":
			s.env, err = parseEnv(v)
		case "shm_size":
			s.shm, err = parseBytes(v)
		case "memory":
			s.memory, err = parseBytes(v)
		default:
			return s, fmt.Errorf("docker: node type %q: unknown node_config key %q (known: env, image, memory, shm_size)", nodeType, k)
		}
		if err != nil {
			return s, fmt.Errorf("docker: node type %q: node_config %s: %w", nodeType, k, err)
		}
	}
	if s.shm == 0 {
		if osm := resources["object_store_memory"]; osm > 0 {
			s.shm = int64(osm) + 256<<20
		} else {
			s.shm = 1 << 30
		}
	}
	return s, nil
}

// parseBytes reads a size: a number of bytes or a string like "1g", "512m".
func parseBytes(v any) (int64, error) {
	var n int64
	switch x := v.(type) {
	case int:
		n = int64(x)
	case int64:
		n = x
	case uint64:
		n = int64(x)
	case float64:
		n = int64(x)
	case json.Number:
		f, err := x.Float64()
		if err != nil {
			return 0, err
		}
		n = int64(f)
	case string:
		b, err := units.RAMInBytes(x)
		if err != nil {
			return 0, err
		}
		n = b
	default:
		return 0, fmt.Errorf("want bytes or a size like \"1g\", got %T %v", v, v)
	}
	if n <= 0 {
		return 0, fmt.Errorf("size %v must be positive", v)
	}
	return n, nil
}

func parseEnv(v any) (map[string]string, error) {
	env := map[string]string{}
	add := func(k string, val any) error {
		if k == "" || strings.Contains(k, "=") {
			return fmt.Errorf("bad variable name %q", k)
		}
		switch x := val.(type) {
		case string:
			env[k] = x
		case bool, int, int64, uint64, float64, json.Number:
			env[k] = fmt.Sprint(x)
		default:
			return fmt.Errorf("%s: want a string, got %T", k, val)
		}
		return nil
	}
	switch m := v.(type) {
	case map[string]string:
		for k, val := range m {
			if err := add(k, val); err != nil {
				return nil, err
			}
		}
	case map[string]any:
		for k, val := range m {
			if err := add(k, val); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("want a map of variables, got %T", v)
	}
	return env, nil
}

// sanitize makes s usable in container and network names.
func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			b[i] = '-'
		}
	}
	return string(b)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func containerName(c container.Summary) string {
	if len(c.Names) > 0 {
		return strings.TrimPrefix(c.Names[0], "/")
	}
	return c.ID[:12]
}

// CreateNodes creates and starts req.Count containers; it returns once
// they are started (goray in them may still be joining).
func (p *Provider) CreateNodes(ctx context.Context, req provider.CreateRequest) error {
	if req.Count <= 0 {
		return nil
	}
	spec, err := parseNodeConfig(req.NodeType, req.NodeConfig, p.cfg.Image, req.Resources)
	if err != nil {
		return err
	}
	if _, err := p.cli.ImageInspect(ctx, spec.image); err != nil {
		if cerrdefs.IsNotFound(err) {
			return fmt.Errorf("docker: image %q not found: build it with bash deploy/image/build.sh", spec.image)
		}
		return fmt.Errorf("docker: inspect image %q at %s: %w", spec.image, daemonHost(), err)
	}
	tags := map[string]string{}
	for k, v := range req.Tags {
		tags[k] = v
	}
	tags[provider.TagClusterName] = p.cfg.ClusterName
	if tags[provider.TagNodeKind] == "" {
		tags[provider.TagNodeKind] = provider.KindWorker
	}
	labels := map[string]string{LabelManaged: "true"}
	for k, v := range tags {
		labels[k] = v
	}
	cmd := append([]string{"goray", "start"}, provider.StartArgs(p.cfg.Params.GCSAddress, req.Resources, req.Labels)...)
	var binds []string
	if tags[provider.TagNodeKind] == provider.KindHead {
		// A head node (goray up) idles until the launcher's commands
		// start goray in it; its autoscaler reaches this daemon.
		cmd = []string{"sleep", "2147483647"}
		binds = daemonBinds()
	}

	errs := make([]error, req.Count)
	var wg sync.WaitGroup
	for i := range req.Count {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("goray-%s-%s-%s", sanitize(p.cfg.ClusterName), sanitize(tags[provider.TagNodeKind]), randomHex(4))
			errs[i] = p.createOne(ctx, name, req.NodeType, spec, labels, cmd, binds)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// daemonBinds mounts the Docker daemon's socket into a head container.
func daemonBinds() []string {
	sock := "/var/run/docker.sock"
	if h := os.Getenv(client.EnvOverrideHost); strings.HasPrefix(h, "unix://") {
		sock = strings.TrimPrefix(h, "unix://")
	}
	return []string{sock + ":/var/run/docker.sock"}
}

func (p *Provider) createOne(ctx context.Context, name, nodeType string, spec nodeSpec, labels map[string]string, cmd, binds []string) error {
	env := map[string]string{}
	for k, v := range spec.env {
		env[k] = v
	}
	// The provider's own variables win over node_config's.
	env[provider.EnvInstanceID] = name
	env[provider.EnvNodeTypeName] = nodeType
	env["GORAY_TEMP"] = NodeTempDir
	if p.cfg.Params.Token != "" {
		env["GORAY_AUTH_TOKEN"] = p.cfg.Params.Token
	}
	envList := make([]string, 0, len(env))
	for k, v := range env {
		envList = append(envList, k+"="+v)
	}
	sort.Strings(envList)
	hostname := name
	if len(hostname) > 63 {
		hostname = hostname[:63]
	}
	init := true
	cc := &container.Config{Image: spec.image, Cmd: cmd, Env: envList, Labels: labels, Hostname: hostname}
	hc := &container.HostConfig{
		NetworkMode: container.NetworkMode(p.cfg.Network),
		Binds:       binds,
		ShmSize:     spec.shm,
		Resources:   container.Resources{Memory: spec.memory},
		// docker-init (tini) as PID 1 reaps the workers' orphans and
		// forwards SIGTERM to goray.
		Init: &init,
	}
	nc := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{p.cfg.Network: {}}}
	if _, err := p.cli.ContainerCreate(ctx, cc, hc, nc, nil, name); err != nil {
		if cerrdefs.IsNotFound(err) {
			return fmt.Errorf("docker: create container %s: %w (PrepareNetwork creates network %q)", name, err, p.cfg.Network)
		}
		return fmt.Errorf("docker: create container %s: %w", name, err)
	}
	if err := p.cli.ContainerStart(ctx, name, container.StartOptions{}); err != nil {
		p.cli.ContainerRemove(context.WithoutCancel(ctx), name, container.RemoveOptions{Force: true})
		return fmt.Errorf("docker: start container %s: %w", name, err)
	}
	p.log.Info("docker: started node", "node", name, "type", nodeType, "image", spec.image)
	return nil
}

// tagsOf returns a container's tags: its labels but this package's own,
// with SetNodeTags' changes.
func (p *Provider) tagsOf(id string, labels map[string]string) map[string]string {
	tags := map[string]string{}
	for k, v := range labels {
		if !strings.HasPrefix(k, labelPrefix) {
			tags[k] = v
		}
	}
	p.mu.Lock()
	for k, v := range p.tags[id] {
		tags[k] = v
	}
	p.mu.Unlock()
	return tags
}

func (p *Provider) ipOf(nets map[string]*network.EndpointSettings) string {
	if ep := nets[p.cfg.Network]; ep != nil && ep.IPAddress != "" {
		return ep.IPAddress
	}
	names := make([]string, 0, len(nets))
	for n := range nets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if ep := nets[n]; ep != nil && ep.IPAddress != "" {
			return ep.IPAddress
		}
	}
	return ""
}

// NonTerminatedNodes lists the cluster's created and running containers
// whose tags match. Exited containers are removed and recorded in
// Failures.
func (p *Provider) NonTerminatedNodes(ctx context.Context, tagFilters map[string]string) ([]provider.Node, error) {
	f := filters.NewArgs(filters.Arg("label", provider.TagClusterName+"="+p.cfg.ClusterName))
	cs, err := p.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("docker: list containers of cluster %q at %s: %w", p.cfg.ClusterName, daemonHost(), err)
	}
	var nodes []provider.Node
	for _, c := range cs {
		id := containerName(c)
		switch c.State {
		case container.StateExited, container.StateDead:
			p.mu.Lock()
			stopping := p.terminating[id]
			p.mu.Unlock()
			if !stopping {
				p.reap(ctx, id)
			}
			continue
		case container.StateRemoving:
			continue
		}
		n := provider.Node{ID: id, Tags: p.tagsOf(id, c.Labels), Running: c.State == container.StateRunning}
		if c.NetworkSettings != nil {
			n.InternalIP = p.ipOf(c.NetworkSettings.Networks)
			n.ExternalIP = n.InternalIP
		}
		if provider.Matches(n.Tags, tagFilters) {
			nodes = append(nodes, n)
		}
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].ID < nodes[j].ID })
	return nodes, nil
}

// reap records why an exited container exited and removes it.
func (p *Provider) reap(ctx context.Context, id string) {
	msg, nodeType := "", ""
	if info, err := p.cli.ContainerInspect(ctx, id); err == nil && info.State != nil {
		if info.Config != nil {
			nodeType = info.Config.Labels[provider.TagUserNodeType]
		}
		msg += "exited with code " + strconv.Itoa(info.State.ExitCode)
		if info.State.OOMKilled {
			msg += " (killed: out of memory)"
		}
		if info.State.Error != "" {
			msg += ": " + info.State.Error
		}
	} else {
		msg += "exited"
	}
	if rc, err := p.cli.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: strconv.Itoa(logTailLines)}); err == nil {
		var buf bytes.Buffer
		stdcopy.StdCopy(&buf, &buf, rc)
		rc.Close()
		if tail := strings.TrimSpace(buf.String()); tail != "" {
			msg += "; last log lines:\n" + tail
		} else {
			msg += "; its log is empty"
		}
	}
	if err := p.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		p.log.Warn("docker: remove exited node", "node", id, "err", err)
		return // recorded when a later listing removes it
	}
	p.log.Warn("docker: node exited", "node", id, "failure", msg)
	p.mu.Lock()
	delete(p.tags, id)
	p.mu.Unlock()
	p.Record(provider.Failure{NodeID: id, NodeType: nodeType, Detail: msg})
}

// inspect returns the container of one of this cluster's nodes.
func (p *Provider) inspect(ctx context.Context, id string) (container.InspectResponse, error) {
	info, err := p.cli.ContainerInspect(ctx, id)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return info, fmt.Errorf("docker: node %s not found", id)
		}
		return info, fmt.Errorf("docker: inspect node %s at %s: %w", id, daemonHost(), err)
	}
	if info.Config == nil || info.Config.Labels[provider.TagClusterName] != p.cfg.ClusterName {
		return info, fmt.Errorf("docker: container %s is not a node of cluster %q", id, p.cfg.ClusterName)
	}
	return info, nil
}

// SetNodeTags merges tags into the node's tags, in this Provider's memory
// (a container's labels cannot change).
func (p *Provider) SetNodeTags(ctx context.Context, id string, tags map[string]string) error {
	if _, err := p.inspect(ctx, id); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tags[id] == nil {
		p.tags[id] = map[string]string{}
	}
	for k, v := range tags {
		p.tags[id][k] = v
	}
	return nil
}

// TerminateNodes stops the nodes' containers (SIGTERM, so goray leaves the
// cluster, then SIGKILL after a few seconds) and removes them.
func (p *Provider) TerminateNodes(ctx context.Context, ids []string) error {
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.terminate(ctx, id)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (p *Provider) terminate(ctx context.Context, id string) error {
	info, err := p.cli.ContainerInspect(ctx, id)
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("docker: inspect node %s at %s: %w", id, daemonHost(), err)
	}
	if info.Config == nil || info.Config.Labels[provider.TagClusterName] != p.cfg.ClusterName {
		return nil // not this cluster's: unknown here
	}
	p.mu.Lock()
	p.terminating[id] = true
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.terminating, id)
		delete(p.tags, id)
		p.mu.Unlock()
	}()
	timeout := stopTimeoutSeconds
	if err := p.cli.ContainerStop(ctx, id, container.StopOptions{Timeout: &timeout}); err != nil && !cerrdefs.IsNotFound(err) {
		p.log.Warn("docker: stop node", "node", id, "err", err)
	}
	if err := p.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("docker: remove node %s: %w", id, err)
	}
	p.log.Info("docker: terminated node", "node", id)
	return nil
}

// InternalIP is the node's IP on the cluster's network.
func (p *Provider) InternalIP(ctx context.Context, id string) (string, error) {
	info, err := p.inspect(ctx, id)
	if err != nil {
		return "", err
	}
	var ip string
	if info.NetworkSettings != nil {
		ip = p.ipOf(info.NetworkSettings.Networks)
	}
	if ip == "" {
		state := "unknown"
		if info.State != nil {
			state = info.State.Status
		}
		return "", fmt.Errorf("docker: node %s has no IP on network %s (state %s)", id, p.cfg.Network, state)
	}
	return ip, nil
}

// ExternalIP is the InternalIP: the containers are reached through the
// host's bridge.
func (p *Provider) ExternalIP(ctx context.Context, id string) (string, error) {
	return p.InternalIP(ctx, id)
}
