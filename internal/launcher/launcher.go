// Package launcher is goray's cluster launcher, Ray's `ray up` and
// friends: from a cluster YAML it creates or updates the head node
// through the node provider, brings it up with the updater (file mounts,
// initialization, setup and start commands), and the head's autoscaler
// then launches the workers. Down stops goray on every node and
// terminates them; Exec, Submit, Attach, RsyncUp/Down, HeadIP, WorkerIPs
// and Monitor act on the head.
//
// Providers: local (SSH hosts; node state on the head), docker (the head
// is a container of the cluster, commands run through docker exec and it
// launches worker containers itself) and process (the head is this
// machine, commands run in a local shell, workers are processes the
// head's provider starts).
package launcher

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/docker/docker/client"

	"github.com/goray/goray/internal/clusterconfig"
	"github.com/goray/goray/internal/launcher/runner"
	"github.com/goray/goray/internal/launcher/updater"
	"github.com/goray/goray/internal/node"
	"github.com/goray/goray/internal/provider"
	"github.com/goray/goray/internal/provider/docker"
	"github.com/goray/goray/internal/provider/local"
	"github.com/goray/goray/internal/provider/registry"
)

// Options are common to every command.
type Options struct {
	ConfigPath string
	Overrides  Overrides
	// NoConfigCache reads the config anew instead of a cached copy.
	NoConfigCache bool
	// Yes answers every prompt with yes.
	Yes bool
	// Out receives progress; In answers prompts.
	Out io.Writer
	In  io.Reader
}

// Cluster is a loaded config and its provider, seen from the machine that
// runs the launcher.
type Cluster struct {
	Config *clusterconfig.Config
	opts   Options
	out    io.Writer
	prov   provider.NodeProvider
	docker *client.Client
	// headRunner is the local provider's runner on head_ip (its state file
	// lives there).
	headRunner runner.Runner
	tempRoot   string // process provider: this machine's temp root
}

// Open loads the config and connects to its provider. Nothing is changed.
func Open(ctx context.Context, opts Options) (*Cluster, error) {
	c, cached, err := LoadConfig(opts.ConfigPath, opts.Overrides, !opts.NoConfigCache)
	if err != nil {
		return nil, err
	}
	out := opts.Out
	if out == nil {
		out = io.Discard
	}
	if cached != "" {
		fmt.Fprintf(out, "Loaded cached provider configuration from %s (--no-config-cache to reread the file)\n", cached)
	}
	cl := &Cluster{Config: c, opts: opts, out: out}
	switch c.Provider.Type {
	case "local":
		// A key that cannot be read fails the commands that need SSH
		// (all of this provider's: its state is on the head), naming the
		// file, but not Open.
		var r runner.Runner
		r, err := registry.SSHRunner(c, c.Provider.HeadIP)
		if err != nil {
			r = &failedRunner{host: c.Provider.HeadIP, err: err}
		}
		cl.headRunner = r
		cl.prov, err = local.New(local.Config{ClusterName: c.ClusterName, HeadIP: c.Provider.HeadIP, WorkerIPs: c.Provider.WorkerIPs,
			ExternalHeadIP: c.Provider.ExternalHeadIP, Store: local.RemoteStore{Runner: r, Cluster: c.ClusterName}})
		if err != nil {
			return nil, err
		}
	case "docker":
		cl.prov, err = docker.New(ctx, docker.Config{ClusterName: c.ClusterName, Image: c.Provider.Image,
			Network: c.Provider.Network, Subnet: c.Provider.Subnet, Params: provider.Params{ClusterName: c.ClusterName}})
		if err != nil {
			return nil, err
		}
		cl.docker, err = client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
		if err != nil {
			return nil, fmt.Errorf("docker: %w", err)
		}
	case "process":
		cl.tempRoot = ProcessTempRoot(c.ClusterName)
		cl.prov, err = local.New(local.Config{ClusterName: c.ClusterName, HeadIP: node.DetectNodeIP(""),
			Store: local.FileStore{Path: statePathLocal(cl.tempRoot, c.ClusterName)}})
		if err != nil {
			return nil, err
		}
	}
	return cl, nil
}

// ProcessTempRoot is the temp root of a process-provider cluster on this
// machine: $GORAY_TEMP (default /tmp/goray)/<cluster_name>. Every command
// the launcher runs for the cluster gets it as GORAY_TEMP, so its `goray
// stop` and `goray status` see only this cluster's nodes.
func ProcessTempRoot(cluster string) string {
	return filepath.Join(node.TempRoot(""), cluster)
}

// failedRunner stands for a host that cannot be reached because its
// runner could not be made (an unreadable key): every call returns why.
type failedRunner struct {
	host string
	err  error
}

func (f *failedRunner) Host() string                    { return f.host }
func (f *failedRunner) Ready(ctx context.Context) error { return f.err }
func (f *failedRunner) Run(ctx context.Context, cmd string, env map[string]string, out io.Writer) error {
	return f.err
}
func (f *failedRunner) Upload(ctx context.Context, local, remote string, opt runner.SyncOptions) error {
	return f.err
}
func (f *failedRunner) Download(ctx context.Context, remote, local string) error { return f.err }
func (f *failedRunner) Interactive(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	return f.err
}
func (f *failedRunner) Close() error { return nil }

// Close releases the provider's connections.
func (cl *Cluster) Close() error {
	if cl.headRunner != nil {
		cl.headRunner.Close()
	}
	if cl.docker != nil {
		cl.docker.Close()
	}
	return cl.prov.Close()
}

func (cl *Cluster) printf(format string, args ...any) { fmt.Fprintf(cl.out, format, args...) }

// confirm asks a yes/no question unless -y; no answer is no.
func (cl *Cluster) confirm(question string) error {
	if cl.opts.Yes {
		return nil
	}
	cl.printf("%s [y/N]: ", question)
	in := cl.opts.In
	if in == nil {
		in = os.Stdin
	}
	line, _ := bufio.NewReader(in).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return errors.New("aborted (pass -y to answer yes)")
}

// runnerFor returns the command runner of a node.
func (cl *Cluster) runnerFor(n provider.Node) (runner.Runner, error) {
	switch cl.Config.Provider.Type {
	case "local":
		if n.ID == cl.Config.Provider.HeadIP {
			return cl.headRunner, nil
		}
		return registry.SSHRunner(cl.Config, n.ExternalIP)
	case "docker":
		return &runner.Docker{Client: cl.docker, Container: n.ID}, nil
	}
	return &runner.Local{Env: []string{"GORAY_TEMP=" + cl.tempRoot}}, nil
}

// release closes a runner from runnerFor unless it is the shared head one.
func (cl *Cluster) release(r runner.Runner) {
	if r != cl.headRunner {
		r.Close()
	}
}

// ErrNoHead is returned by commands that need a running head.
var ErrNoHead = errors.New("launcher: the cluster has no head node; start it with goray up")

// Head returns the head node.
func (cl *Cluster) Head(ctx context.Context) (provider.Node, error) {
	heads, err := cl.prov.NonTerminatedNodes(ctx, map[string]string{provider.TagNodeKind: provider.KindHead})
	if err != nil {
		return provider.Node{}, err
	}
	if len(heads) == 0 {
		return provider.Node{}, fmt.Errorf("cluster %q: %w", cl.Config.ClusterName, ErrNoHead)
	}
	return heads[0], nil
}

// HeadRunner returns the head and its runner; Close it after use.
func (cl *Cluster) HeadRunner(ctx context.Context) (provider.Node, runner.Runner, error) {
	h, err := cl.Head(ctx)
	if err != nil {
		return h, nil, err
	}
	r, err := cl.runnerFor(h)
	return h, r, err
}

// UpOptions are goray up's flags.
type UpOptions struct {
	NoRestart, RestartOnly bool
	// HealthTimeout bounds the wait for the head to answer goray status
	// (default 120s).
	HealthTimeout time.Duration
}

// Up creates or updates the cluster's head and starts goray on it (Ray's
// create_or_update_cluster).
func (cl *Cluster) Up(ctx context.Context, o UpOptions) error {
	if o.NoRestart && o.RestartOnly {
		return errors.New("--no-restart and --restart-only exclude each other")
	}
	c := cl.Config
	if err := CheckLocalFiles(c); err != nil {
		return fmt.Errorf("%s: %w", cl.opts.ConfigPath, err)
	}
	start := time.Now()
	cl.printf("Cluster: %s (provider %s)\n", c.ClusterName, c.Provider.Type)
	if cl.headRunner != nil {
		// The local provider's state lives on the head: reach it first.
		cl.printf("Checking that the head %s is reachable\n", c.Provider.HeadIP)
		w := &updater.Updater{Runner: cl.headRunner, WaitTimeout: registry.SSHWaitTimeout(), Out: cl.out}
		if err := w.Wait(ctx); err != nil {
			return &updater.StepError{Host: cl.headRunner.Host(), Step: updater.StepWait, Err: err}
		}
	}
	if c.Provider.Type == "docker" {
		if _, err := registry.HeadIP(c); err != nil { // creates the cluster's network
			return err
		}
	}
	launchHash := c.LaunchHash(c.HeadNodeType)
	heads, err := cl.prov.NonTerminatedNodes(ctx, map[string]string{provider.TagNodeKind: provider.KindHead})
	if err != nil {
		return err
	}
	var head *provider.Node
	created := false
	if len(heads) > 0 {
		h := heads[0]
		head = &h
		outdated := h.Tags[provider.TagLaunchConfig] != launchHash || h.Tags[provider.TagUserNodeType] != c.HeadNodeType
		if outdated && !c.Provider.DisableLaunchConfigCheck {
			cl.printf("The head node %s is outdated (its node_config, auth or head_node_type changed)\n", h.ID)
			if err := cl.confirm("Relaunch the head node?"); err != nil {
				return err
			}
			if err := cl.stopAndTerminate(ctx, []provider.Node{h}); err != nil {
				return err
			}
			head = nil
		} else if !o.NoRestart {
			if err := cl.confirm("This restarts goray on the cluster's head node. Continue?"); err != nil {
				return err
			}
		}
	}
	if head == nil {
		cl.printf("Creating the head node (type %s)\n", c.HeadNodeType)
		err := cl.prov.CreateNodes(ctx, provider.CreateRequest{
			NodeType: c.HeadNodeType, NodeConfig: c.AvailableNodeTypes[c.HeadNodeType].NodeConfig, Count: 1,
			Resources: c.AvailableNodeTypes[c.HeadNodeType].Resources, Labels: c.AvailableNodeTypes[c.HeadNodeType].Labels,
			Tags: map[string]string{
				provider.TagNodeKind: provider.KindHead, provider.TagUserNodeType: c.HeadNodeType,
				provider.TagLaunchConfig: launchHash, provider.TagNodeName: "ray-" + c.ClusterName + "-head",
				provider.TagNodeStatus: provider.StatusUninitialized,
			},
		})
		if err != nil {
			cl.cleanupFailedCreate(ctx)
			return fmt.Errorf("create the head node: %w", err)
		}
		created = true
		deadline := time.Now().Add(50 * time.Second)
		for head == nil {
			hs, err := cl.prov.NonTerminatedNodes(ctx, map[string]string{provider.TagNodeKind: provider.KindHead})
			if err != nil {
				return err
			}
			if len(hs) > 0 && hs[0].Running {
				head = &hs[0]
				break
			}
			if time.Now().After(deadline) {
				return errors.New("the head node did not come up within 50s")
			}
			time.Sleep(time.Second)
		}
	}
	r, err := cl.runnerFor(*head)
	if err != nil {
		return err
	}
	defer cl.release(r)
	cl.printf("Head node %s (%s)\n", head.ID, head.InternalIP)

	mounts, cleanup, err := cl.headMounts()
	if err != nil {
		return err
	}
	defer cleanup()
	// A node created now starts with the tags it was created with:
	// uninitialized, no runtime hash, so it is set up in full. An
	// existing docker head keeps its setup hashes in a file (container
	// labels cannot change).
	tags := head.Tags
	if !created && c.Provider.Type == "docker" && tags[provider.TagRuntimeConfig] == "" {
		tags = cl.savedTags(ctx, r, tags)
	}
	u := &updater.Updater{
		Provider: cl.prov, NodeID: head.ID, Runner: r, Tags: tags,
		FileMounts: mounts, Sync: runner.SyncOptions{Exclude: c.RsyncExclude, FilterFiles: c.RsyncFilter},
		Plan: updater.HeadPlan(c),
		Env: map[string]string{
			"RAY_HEAD_IP": head.InternalIP, "GORAY_HEAD_IP": head.InternalIP,
			provider.EnvInstanceID: head.ID, provider.EnvNodeTypeName: c.HeadNodeType,
		},
		RuntimeHash: c.RuntimeHash(), FileMountsHash: updater.ContentsHash(c.FileMounts),
		RestartOnly: o.RestartOnly, NoRestart: o.NoRestart,
		WaitTimeout: registry.SSHWaitTimeout(), Out: cl.out,
	}
	if err := u.Run(ctx); err != nil {
		return err
	}
	cl.saveTags(ctx, r, u)
	if !o.NoRestart {
		if err := cl.waitHealthy(ctx, r, o.HealthTimeout); err != nil {
			return err
		}
	}
	cl.printf("\nCluster %s is up (%.1fs). Useful commands:\n%s", c.ClusterName, time.Since(start).Seconds(),
		UsefulCommands(cl.opts.ConfigPath, cl.opts.Overrides.ClusterName))
	return nil
}

// UsefulCommands are the hints printed after up: the config and, when -n
// overrode the cluster name, -n NAME, so they act on the same cluster.
func UsefulCommands(configPath, nameOverride string) string {
	arg := runner.Quote(configPath)
	if nameOverride != "" {
		arg += " -n " + runner.Quote(nameOverride)
	}
	return fmt.Sprintf("  goray exec %s 'goray status'\n  goray attach %s\n  goray monitor %s\n  goray down %s\n", arg, arg, arg, arg)
}

// cleanupFailedCreate removes what up made before creating the head
// failed (the docker provider's network), when the cluster has no node.
func (cl *Cluster) cleanupFailedCreate(ctx context.Context) {
	cleaner, ok := cl.prov.(provider.Cleaner)
	if !ok {
		return
	}
	ctx = context.WithoutCancel(ctx)
	if nodes, err := cl.prov.NonTerminatedNodes(ctx, nil); err != nil || len(nodes) > 0 {
		return
	}
	if err := cleaner.Cleanup(ctx); err != nil {
		cl.printf("Removing what goray up created for the cluster: %v\n", err)
	}
}

// headMounts returns the head's file mounts: the config's plus the
// bootstrapped config and key, written to temporary files.
func (cl *Cluster) headMounts() (map[string]string, func(), error) {
	c := cl.Config
	b, err := HeadConfig(c).YAML()
	if err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp("", "goray-bootstrap-")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	cfgFile := filepath.Join(dir, "goray_bootstrap_config.yaml")
	if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
		cleanup()
		return nil, nil, err
	}
	mounts := map[string]string{BootstrapConfig: cfgFile}
	for k, v := range c.FileMounts {
		mounts[k] = v
	}
	if c.Auth.SSHPrivateKey != "" {
		key, err := os.ReadFile(runner.HomePath(c.Auth.SSHPrivateKey, homeDir()))
		if err != nil {
			cleanup()
			return nil, nil, fmt.Errorf("auth.ssh_private_key: %w", err)
		}
		keyFile := filepath.Join(dir, "goray_bootstrap_key.pem")
		if err := os.WriteFile(keyFile, key, 0o600); err != nil {
			cleanup()
			return nil, nil, err
		}
		mounts[BootstrapKey] = keyFile
	}
	return mounts, cleanup, nil
}

// tagsFile keeps the head's setup hashes on the head for providers whose
// tags do not persist (docker labels cannot change).
const tagsFile = "~/.goray_launcher_tags"

func (cl *Cluster) savedTags(ctx context.Context, r runner.Runner, tags map[string]string) map[string]string {
	var b bytes.Buffer
	if r.Run(ctx, "cat "+tagsFile+" 2>/dev/null || true", nil, &b) != nil {
		return tags
	}
	out := map[string]string{}
	for k, v := range tags {
		out[k] = v
	}
	for _, line := range strings.Split(b.String(), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && (k == provider.TagRuntimeConfig || k == updater.TagFileMountsContents) {
			out[k] = v
		}
	}
	return out
}

func (cl *Cluster) saveTags(ctx context.Context, r runner.Runner, u *updater.Updater) {
	if u.RestartOnly || cl.Config.Provider.Type != "docker" {
		return
	}
	content := provider.TagRuntimeConfig + "=" + u.RuntimeHash + "\n" + updater.TagFileMountsContents + "=" + u.FileMountsHash + "\n"
	r.Run(ctx, "printf %s "+runner.Quote(content)+" > "+tagsFile, nil, nil)
}

// waitHealthy polls `goray status` on the head.
func (cl *Cluster) waitHealthy(ctx context.Context, r runner.Runner, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = 120 * time.Second
	}
	cl.printf("Waiting for the head to be healthy (goray status)\n")
	deadline := time.Now().Add(timeout)
	for {
		var out bytes.Buffer
		err := r.Run(ctx, "goray status", nil, &out)
		if err == nil {
			cl.printf("%s\n", strings.TrimRight(out.String(), "\n"))
			return nil
		}
		if time.Now().After(deadline) {
			return &updater.StepError{Host: r.Host(), Step: "health check", Cmd: "goray status", Output: strings.TrimSpace(out.String()), Err: err}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// DownOptions are goray down's flags.
type DownOptions struct {
	WorkersOnly, KeepMinWorkers bool
}

// Down stops goray on the nodes and terminates them (Ray's
// teardown_cluster). It does what it can: a host it cannot reach or a
// node list it cannot read does not stop it from cleaning the rest. What
// it could not do is listed at the end and makes it fail, since nodes of
// the cluster may then still run.
func (cl *Cluster) Down(ctx context.Context, o DownOptions) error {
	c := cl.Config
	what := "the cluster " + c.ClusterName
	if o.WorkersOnly {
		what = "the worker nodes of " + c.ClusterName
	}
	if err := cl.confirm("This destroys " + what + ". Continue?"); err != nil {
		return err
	}
	if o.WorkersOnly && c.Provider.Type == "process" {
		return errors.New("--workers-only: the process provider's workers are processes of the head's autoscaler, which the launcher " +
			"cannot terminate on their own; goray down without --workers-only stops them with the head")
	}
	var problems []string
	problem := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	stopped := map[string]bool{} // nodes goray was stopped on, or tried
	head, herr := cl.Head(ctx)
	listed := herr == nil || errors.Is(herr, ErrNoHead)
	if !listed {
		cl.printf("Cannot read the cluster's nodes: %v\n", herr)
		problem("the cluster's node list could not be read, so no node was marked terminated: %v", herr)
	}
	headDown := false
	workerKind := map[string]string{provider.TagNodeKind: provider.KindWorker}
	// The workers as they are before the head stops (its provider may
	// remove them as it stops, as docker's does), listed again after.
	var before []provider.Node
	if listed && !o.WorkersOnly {
		before, _ = cl.prov.NonTerminatedNodes(ctx, workerKind)
	}
	if !o.WorkersOnly && herr == nil {
		cl.printf("Stopping goray on the head %s\n", head.ID)
		if err := cl.stopGoray(ctx, head); err != nil {
			problem("goray could not be stopped on the head %s, so it may still run there (and relaunch workers): %v", head.ID, err)
		}
		stopped[head.ID] = true
	}
	var workers []provider.Node
	kept := 0
	if listed {
		all, err := cl.prov.NonTerminatedNodes(ctx, workerKind)
		if err != nil {
			problem("the worker nodes could not be listed: %v", err)
		}
		for _, b := range before {
			if !slices.ContainsFunc(all, func(n provider.Node) bool { return n.ID == b.ID }) {
				all = append(all, b)
			}
		}
		workers = all
		if o.KeepMinWorkers {
			workers = dropMinWorkers(c, all)
			kept = len(all) - len(workers)
		}
	}
	if len(workers) > 0 {
		cl.printf("Terminating %d worker node(s)\n", len(workers))
		var ids []string
		for _, w := range workers {
			if c.Provider.Type != "docker" { // the provider stops containers
				if err := cl.stopGoray(ctx, w); err != nil {
					problem("goray could not be stopped on the worker %s, so it may still run there: %v", w.ID, err)
				}
			}
			stopped[w.ID] = true
			ids = append(ids, w.ID)
		}
		if err := cl.prov.TerminateNodes(ctx, ids); err != nil {
			problem("the worker nodes %v could not be terminated: %v", ids, err)
		}
	}
	if !o.WorkersOnly && herr == nil {
		cl.printf("Terminating the head node %s\n", head.ID)
		if err := cl.prov.TerminateNodes(ctx, []string{head.ID}); err != nil {
			problem("the head node %s could not be terminated: %v", head.ID, err)
		} else {
			headDown = true
		}
	}
	// Wait until the provider lists none of them.
	deadline := time.Now().Add(60 * time.Second)
	for listed && len(problems) == 0 && !o.WorkersOnly && !o.KeepMinWorkers {
		// (with --workers-only the head's autoscaler may launch workers
		// again, as in Ray)
		left, err := cl.prov.NonTerminatedNodes(ctx, nil)
		if err != nil {
			problem("the cluster's nodes could not be listed after terminating them: %v", err)
			break
		}
		var ids []string
		for _, n := range left {
			ids = append(ids, n.ID)
		}
		if len(ids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			problem("nodes still listed 60s after terminating them: %v", ids)
			break
		}
		cl.prov.TerminateNodes(ctx, ids)
		time.Sleep(time.Second)
	}
	switch c.Provider.Type {
	case "local":
		// Hosts the node list did not show (or that could not be read):
		// stop goray there too, so nothing of the cluster runs afterwards.
		ips := append([]string{}, c.Provider.WorkerIPs...)
		if !o.WorkersOnly {
			ips = append([]string{c.Provider.HeadIP}, ips...)
		}
		for _, ip := range ips {
			if stopped[ip] || o.KeepMinWorkers {
				continue
			}
			err := cl.stopGoray(ctx, provider.Node{ID: ip, InternalIP: ip, ExternalIP: ip})
			if err != nil && !listed {
				problem("goray could not be stopped on %s, so it may still run there: %v", ip, err)
			}
		}
	case "docker":
		if !o.WorkersOnly {
			if cleaner, ok := cl.prov.(provider.Cleaner); ok {
				if err := cleaner.Cleanup(ctx); err != nil {
					problem("the cluster's containers and network could not be removed: %v", err)
				}
			}
		}
	}
	if len(problems) > 0 {
		cl.printf("\nCluster %s was NOT fully torn down:\n", c.ClusterName)
		for _, p := range problems {
			cl.printf("  - %s\n", p)
		}
		return fmt.Errorf("goray down: cluster %s: %d thing(s) could not be done (listed above); nodes of the cluster may still run: fix what is listed and run goray down again", c.ClusterName, len(problems))
	}
	var done []string
	if headDown {
		done = append(done, "the head node")
	}
	if len(workers) > 0 || !o.WorkersOnly && headDown {
		done = append(done, fmt.Sprintf("%d worker node(s)", len(workers)))
	}
	msg := "terminated " + strings.Join(done, " and ")
	if len(done) == 0 {
		msg = "no node was running, nothing to terminate"
		if o.WorkersOnly {
			msg = "no worker node was running, nothing to terminate"
		}
		if kept > 0 {
			msg = "terminated no worker node"
		}
	}
	if kept > 0 {
		msg += fmt.Sprintf(", kept %d worker node(s) (--keep-min-workers: min_workers)", kept)
	}
	cl.printf("Cluster %s: %s.\n", c.ClusterName, msg)
	return nil
}

// dropMinWorkers removes from workers min_workers random nodes per type,
// which --keep-min-workers keeps.
func dropMinWorkers(c *clusterconfig.Config, workers []provider.Node) []provider.Node {
	byType := map[string][]provider.Node{}
	for _, w := range workers {
		t := w.Tags[provider.TagUserNodeType]
		byType[t] = append(byType[t], w)
	}
	var out []provider.Node
	for t, ns := range byType {
		rand.Shuffle(len(ns), func(i, j int) { ns[i], ns[j] = ns[j], ns[i] })
		keep := 0
		if nt := c.AvailableNodeTypes[t]; nt != nil {
			keep = min(nt.MinWorkers, len(ns))
		}
		out = append(out, ns[keep:]...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// stopGoray runs `goray stop` on a node, printing the outcome; the error
// says why goray could not be stopped there.
func (cl *Cluster) stopGoray(ctx context.Context, n provider.Node) error {
	r, err := cl.runnerFor(n)
	if err != nil {
		cl.printf("  [%s] cannot stop goray: %v\n", n.ID, err)
		return err
	}
	defer cl.release(r)
	sctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := r.Run(sctx, "goray stop", nil, &out); err != nil {
		cl.printf("  [%s] goray stop: %v %s\n", n.ID, err, strings.TrimSpace(out.String()))
		return err
	}
	cl.printf("  [%s] %s\n", n.ID, strings.TrimSpace(out.String()))
	return nil
}

// stopAndTerminate stops goray on nodes (not needed for containers, which
// the provider stops) and terminates them.
func (cl *Cluster) stopAndTerminate(ctx context.Context, nodes []provider.Node) error {
	var ids []string
	var errs []error
	for _, n := range nodes {
		if cl.Config.Provider.Type != "docker" {
			if err := cl.stopGoray(ctx, n); err != nil {
				errs = append(errs, fmt.Errorf("stop goray on %s: %w", n.ID, err))
			}
		}
		ids = append(ids, n.ID)
	}
	return errors.Join(append(errs, cl.prov.TerminateNodes(ctx, ids))...)
}

// ExecOptions are goray exec's flags.
type ExecOptions struct {
	Screen, Tmux bool
	Env          map[string]string
}

// Wrap renders a command for --screen or --tmux: it runs detached in a
// session that stays open, as Ray does.
func Wrap(cmd string, o ExecOptions) string {
	switch {
	case o.Screen:
		return "screen -L -dm bash -c " + runner.Quote(cmd+"; exec bash")
	case o.Tmux:
		return "tmux new -d bash -c " + runner.Quote(cmd+"; exec bash")
	}
	return cmd
}

// Exec runs cmd on the head with its output to out.
func (cl *Cluster) Exec(ctx context.Context, cmd string, o ExecOptions, out io.Writer) error {
	if o.Screen && o.Tmux {
		return errors.New("--screen and --tmux exclude each other")
	}
	_, r, err := cl.HeadRunner(ctx)
	if err != nil {
		return err
	}
	defer cl.release(r)
	return r.Run(ctx, Wrap(cmd, o), o.Env, out)
}

// Submit copies script to ~/<its name> on the head, makes it executable
// and runs it with args.
func (cl *Cluster) Submit(ctx context.Context, script string, args []string, o ExecOptions, out io.Writer) error {
	st, err := os.Stat(script)
	if err != nil {
		return err
	}
	if st.IsDir() {
		return fmt.Errorf("%s is a directory; goray submit takes a script or program file", script)
	}
	_, r, err := cl.HeadRunner(ctx)
	if err != nil {
		return err
	}
	defer cl.release(r)
	target := "~/" + filepath.Base(script)
	if err := r.Upload(ctx, script, target, runner.SyncOptions{}); err != nil {
		return err
	}
	cmd := "chmod +x " + target + " && " + target
	for _, a := range args {
		cmd += " " + runner.Quote(a)
	}
	return r.Run(ctx, Wrap(cmd, o), o.Env, out)
}

// Attach runs an interactive shell (or cmd) on the head.
func (cl *Cluster) Attach(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	_, r, err := cl.HeadRunner(ctx)
	if err != nil {
		return err
	}
	defer cl.release(r)
	return r.Interactive(ctx, cmd, stdin, stdout, stderr)
}

// RsyncUp copies a local path to the head; RsyncDown copies back.
func (cl *Cluster) RsyncUp(ctx context.Context, src, dst string) error {
	_, r, err := cl.HeadRunner(ctx)
	if err != nil {
		return err
	}
	defer cl.release(r)
	return r.Upload(ctx, src, dst, runner.SyncOptions{Exclude: cl.Config.RsyncExclude, FilterFiles: cl.Config.RsyncFilter})
}

func (cl *Cluster) RsyncDown(ctx context.Context, src, dst string) error {
	_, r, err := cl.HeadRunner(ctx)
	if err != nil {
		return err
	}
	defer cl.release(r)
	return r.Download(ctx, src, dst)
}

// HeadIP is the head's address: external unless use_internal_ips.
func (cl *Cluster) HeadIP(ctx context.Context) (string, error) {
	h, err := cl.Head(ctx)
	if err != nil {
		return "", err
	}
	if cl.Config.Provider.UseInternalIPs {
		return h.InternalIP, nil
	}
	return h.ExternalIP, nil
}

// WorkerIPs lists the workers' addresses, sorted. The process provider's
// workers are children of the head, so they come from the head's
// `goray list nodes`.
func (cl *Cluster) WorkerIPs(ctx context.Context) ([]string, error) {
	var ips []string
	if cl.Config.Provider.Type == "process" {
		_, r, err := cl.HeadRunner(ctx)
		if err != nil {
			return nil, err
		}
		defer cl.release(r)
		var out bytes.Buffer
		if err := r.Run(ctx, "goray list nodes", nil, &out); err != nil {
			return nil, err
		}
		for _, line := range strings.Split(out.String(), "\n") {
			f := strings.Fields(line)
			if len(f) >= 4 && f[2] == "false" && f[3] == "ALIVE" && net.ParseIP(f[1]) != nil {
				ips = append(ips, f[1])
			}
		}
		return ips, nil
	}
	ws, err := cl.prov.NonTerminatedNodes(ctx, map[string]string{provider.TagNodeKind: provider.KindWorker})
	if err != nil {
		return nil, err
	}
	for _, w := range ws {
		if cl.Config.Provider.UseInternalIPs {
			ips = append(ips, w.InternalIP)
		} else {
			ips = append(ips, w.ExternalIP)
		}
	}
	sort.Strings(ips)
	return ips, nil
}

// MonitorCommand tails the head's autoscaler log (Ray's monitor.log).
func MonitorCommand(lines int) string {
	return fmt.Sprintf(`tail -n %d -f "${GORAY_TEMP:-/tmp/goray}"/session_latest/logs/%s`, lines, node.MonitorLog)
}

// Monitor streams the head's autoscaler log until ctx ends.
func (cl *Cluster) Monitor(ctx context.Context, lines int, out io.Writer) error {
	if lines <= 0 {
		lines = 100
	}
	return cl.Exec(ctx, MonitorCommand(lines), ExecOptions{}, out)
}
