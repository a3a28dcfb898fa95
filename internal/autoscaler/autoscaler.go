// Package autoscaler grows and shrinks a goray cluster within its config:
// Decide (plan.go) is the pure demand-to-plan function, the Autoscaler
// below is the reconciler on the head that observes the GCS and the node
// provider every round, applies plans through the provider and publishes
// its state for `goray status`, like Ray's monitor process.
package autoscaler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc/status"

	"github.com/goray/goray/internal/autoscaler/request"
	"github.com/goray/goray/internal/clusterconfig"
	"github.com/goray/goray/internal/provider"
	"github.com/goray/goray/internal/scheduler"
	"github.com/goray/goray/proto/rpcpb"
)

// KVStatus is the GCS internal KV key, in namespace request.Namespace,
// the autoscaler publishes its Report under (Ray's __autoscaling_status).
const KVStatus = "__autoscaling_status"

// Defaults that follow Ray's autoscaler constants.
const (
	DefaultUpdateInterval = 5 * time.Second   // AUTOSCALER_UPDATE_INTERVAL_S
	DefaultStartTimeout   = 900 * time.Second // AUTOSCALER_NODE_START_WAIT_S
	MaxLaunchBatch        = 5                 // AUTOSCALER_MAX_LAUNCH_BATCH
	maxFailures           = 20
)

// Options configure an Autoscaler.
type Options struct {
	Config   *clusterconfig.Config
	Provider provider.NodeProvider
	GCS      rpcpb.GcsServiceClient
	// Interval between rounds (default $AUTOSCALER_UPDATE_INTERVAL_S, else 5s).
	Interval time.Duration
	// StartTimeout is how long a launched node may take to join the
	// cluster before it is terminated (default $AUTOSCALER_NODE_START_WAIT_S, else 900s).
	StartTimeout time.Duration
	// ConfigPath, when set, is reread at the start of a round whenever its
	// modification time or size changes; a version that fails to load, or
	// that Reloaded refuses, is reported and the old one kept. The cluster
	// name and provider type cannot change.
	ConfigPath string
	Reloaded   func(*clusterconfig.Config) error
	Logger     *slog.Logger
}

// Failure is one entry of "Recent failures".
type Failure struct {
	Time     time.Time `json:"time"`
	NodeID   string    `json:"node_id,omitempty"` // the provider's id
	NodeType string    `json:"node_type"`
	Kind     string    `json:"kind"` // LaunchFailed, NodeTerminated, ProviderError
	Detail   string    `json:"detail"`
}

// PendingNode is a node launched but not yet part of the cluster.
type PendingNode struct {
	ID       string `json:"id"`
	NodeType string `json:"node_type"`
	IP       string `json:"ip,omitempty"`
}

// Report is what the autoscaler publishes each round under KVStatus; `goray
// status` renders it.
type Report struct {
	Time       time.Time     `json:"time"`
	Pending    []PendingNode `json:"pending"`
	Failures   []Failure     `json:"failures"`
	Infeasible []Demand      `json:"infeasible"`
	// Extra is demand no raylet reports (job entrypoints waiting).
	Extra []Demand `json:"extra,omitempty"`
	// Requests are the request_resources bundles in force.
	Requests []RequestDemand `json:"requests,omitempty"`
}

// RequestDemand is a request_resources shape, Count times.
type RequestDemand struct {
	Demand
	Infeasible bool `json:"infeasible,omitempty"`
}

// Autoscaler is the running reconciler.
type Autoscaler struct {
	opts Options
	cfg  Config
	log  *slog.Logger

	cancel context.CancelFunc
	done   chan struct{}

	// Only the loop goroutine uses these.
	configStamp string               // modification time and size of ConfigPath last read
	firstSeen   map[string]time.Time // provider node → when first listed
	known       map[string]string    // provider node → type, from the last round
	ours        map[string]bool      // nodes this autoscaler terminated

	mu       sync.Mutex // guards what follows
	failures []Failure
	backoff  map[string]time.Time // node type → no launches before
	delay    map[string]time.Duration
	report   Report
}

// PlannerConfig converts a cluster config into the planner's view.
func PlannerConfig(c *clusterconfig.Config) Config {
	pc := Config{
		MaxWorkers: c.MaxWorkers, UpscalingSpeed: c.UpscalingSpeed, HeadType: c.HeadNodeType,
		IdleTimeout: time.Duration(c.IdleTimeoutMinutes * float64(time.Minute)),
		Types:       map[string]TypeConfig{},
	}
	for name, t := range c.AvailableNodeTypes {
		tc := TypeConfig{Resources: scheduler.Resources(t.Resources).Clone(), MinWorkers: t.MinWorkers, MaxWorkers: t.MaxWorkers,
			IdleTimeout: time.Duration(t.IdleTimeoutS * float64(time.Second))}
		if !c.Provider.DisableLaunchConfigCheck {
			tc.LaunchHash = c.LaunchHash(name)
		}
		if tc.Resources == nil {
			tc.Resources = scheduler.Resources{}
		}
		pc.Types[name] = tc
	}
	return pc
}

// Launchable lists the resource shapes of the node types the autoscaler
// may launch; the GCS hands them to raylets so they queue demands that fit
// one instead of calling them infeasible.
func Launchable(c *clusterconfig.Config) []map[string]float64 {
	var out []map[string]float64
	if c.MaxWorkers <= 0 {
		return nil
	}
	for _, name := range c.WorkerTypes() {
		if t := c.AvailableNodeTypes[name]; t.MaxWorkers > 0 {
			out = append(out, maps.Clone(t.Resources))
		}
	}
	return out
}

// announceLaunchable tells the GCS the shapes of this config's node types
// when the view lacks them: at start, after a config change, and after a
// GCS restart. The autoscaler may run beside the head (KubeRay's sidecar),
// so this goes through the GCS's API.
func (a *Autoscaler) announceLaunchable(ctx context.Context, view *rpcpb.ClusterView) {
	want := Launchable(a.opts.Config)
	if len(want) == len(view.Launchable) && slices.EqualFunc(want, view.Launchable, func(w map[string]float64, v *rpcpb.ResourceShape) bool {
		return maps.Equal(w, v.Resources)
	}) {
		return
	}
	shapes := &rpcpb.LaunchableShapes{}
	for _, sh := range want {
		shapes.Shapes = append(shapes.Shapes, &rpcpb.ResourceShape{Resources: sh})
	}
	if _, err := a.opts.GCS.SetLaunchableShapes(ctx, shapes); err != nil {
		a.log.Warn("set launchable shapes", "err", status.Convert(err).Message())
	}
}

func envSeconds(name string, def time.Duration) time.Duration {
	if v, err := strconv.ParseFloat(os.Getenv(name), 64); err == nil && v > 0 {
		return time.Duration(v * float64(time.Second))
	}
	return def
}

// Start runs the reconciler until Stop.
func Start(opts Options) (*Autoscaler, error) {
	if opts.Config == nil || opts.Provider == nil || opts.GCS == nil {
		return nil, errors.New("autoscaler: config, provider and GCS are required")
	}
	if opts.Interval <= 0 {
		opts.Interval = envSeconds("AUTOSCALER_UPDATE_INTERVAL_S", DefaultUpdateInterval)
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = envSeconds("AUTOSCALER_NODE_START_WAIT_S", DefaultStartTimeout)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Autoscaler{
		opts: opts, cfg: PlannerConfig(opts.Config), log: log.With("component", "autoscaler"),
		cancel: cancel, done: make(chan struct{}),
		firstSeen: map[string]time.Time{}, known: map[string]string{}, ours: map[string]bool{},
		backoff: map[string]time.Time{}, delay: map[string]time.Duration{},
	}
	a.configStamp = stamp(opts.ConfigPath)
	go a.run(ctx)
	return a, nil
}

func stamp(path string) string {
	if path == "" {
		return ""
	}
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%d/%d", fi.ModTime().UnixNano(), fi.Size())
}

// reload rereads the config file if it changed since the last read.
func (a *Autoscaler) reload() {
	st := stamp(a.opts.ConfigPath)
	if st == "" || st == a.configStamp {
		return
	}
	a.configStamp = st
	c, err := clusterconfig.Load(a.opts.ConfigPath)
	if err == nil && (c.ClusterName != a.opts.Config.ClusterName || c.Provider.Type != a.opts.Config.Provider.Type) {
		err = fmt.Errorf("cluster_name and provider.type cannot change while the head runs (have %s/%s)", a.opts.Config.ClusterName, a.opts.Config.Provider.Type)
	}
	if err == nil && a.opts.Reloaded != nil {
		err = a.opts.Reloaded(c)
	}
	if err != nil {
		a.fail("", "ConfigError", "reload "+a.opts.ConfigPath+": "+err.Error()+" (keeping the previous config)")
		return
	}
	a.log.Info("config reloaded", "path", a.opts.ConfigPath)
	a.opts.Config, a.cfg = c, PlannerConfig(c)
}

// Stop ends the loop; nodes keep running.
func (a *Autoscaler) Stop() {
	a.cancel()
	<-a.done
}

// TerminateWorkers terminates every worker node of the cluster through the
// provider (the head going away takes its provider's nodes with it).
func (a *Autoscaler) TerminateWorkers(ctx context.Context) error {
	nodes, err := a.opts.Provider.NonTerminatedNodes(ctx, map[string]string{provider.TagNodeKind: provider.KindWorker})
	if err != nil {
		return err
	}
	var ids []string
	for _, n := range nodes {
		ids = append(ids, n.ID)
	}
	if len(ids) == 0 {
		return nil
	}
	a.log.Info("terminating worker nodes", "nodes", ids)
	return a.opts.Provider.TerminateNodes(ctx, ids)
}

func (a *Autoscaler) run(ctx context.Context) {
	defer close(a.done)
	t := time.NewTicker(a.opts.Interval)
	defer t.Stop()
	for {
		a.round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *Autoscaler) fail(typ, kind, detail string) { a.failNode("", typ, kind, detail) }

func (a *Autoscaler) failNode(id, typ, kind, detail string) {
	a.log.Warn("autoscaler failure", "node", id, "type", typ, "kind", kind, "detail", detail)
	a.mu.Lock()
	defer a.mu.Unlock()
	if n := len(a.failures); n > 0 && a.failures[n-1].Detail == detail && a.failures[n-1].Kind == kind {
		a.failures[n-1].Time = time.Now()
		return
	}
	a.failures = append(a.failures, Failure{Time: time.Now(), NodeID: id, NodeType: typ, Kind: kind, Detail: detail})
	if len(a.failures) > maxFailures {
		a.failures = a.failures[len(a.failures)-maxFailures:]
	}
}

// round is one observe-decide-act pass. Errors are reported and retried
// next round; they never stop the loop.
func (a *Autoscaler) round(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	a.reload()
	view, err := a.opts.GCS.GetClusterView(rctx, &rpcpb.Empty{})
	if err != nil {
		a.log.Warn("cluster view", "err", status.Convert(err).Message())
		return
	}
	a.announceLaunchable(rctx, view)
	pv := a.opts.Provider
	// Providers that know why a node went away say so; for the others a
	// node missing from the listing is reported.
	reporter, reports := pv.(provider.FailureReporter)
	var exited []provider.Failure
	if reports {
		exited = reporter.Failures()
		for _, f := range exited {
			a.failNode(f.NodeID, f.NodeType, "NodeTerminated", f.Detail)
		}
	}
	pnodes, err := pv.NonTerminatedNodes(rctx, map[string]string{provider.TagNodeKind: provider.KindWorker})
	if err != nil {
		a.fail("", "ProviderError", "list nodes: "+err.Error())
		a.publish(rctx, Report{})
		return
	}
	byInstance := map[string]*rpcpb.NodeResources{}
	var snap Snapshot
	snap.Config = a.cfg
	for _, n := range view.Nodes {
		info := n.Node
		if info.InstanceId != "" {
			if old := byInstance[info.InstanceId]; old == nil || old.Node.StartTimeMs < info.StartTimeMs {
				byInstance[info.InstanceId] = n
			}
		}
		if info.State != rpcpb.NodeState_ALIVE {
			continue
		}
		for _, d := range n.Demands {
			snap.Demands = append(snap.Demands, Demand{Shape: d.Shape, Count: int(d.Count)})
		}
		if info.InstanceId == "" || info.IsHead {
			snap.Nodes = append(snap.Nodes, NodeState{ID: info.NodeId, Type: info.NodeType, Head: true,
				Total: info.Total, Available: n.Available})
		}
	}

	// A node whose process or container the provider saw exit is dead now;
	// the GCS need not wait for its health checks to fail.
	for _, f := range exited {
		if g := byInstance[f.NodeID]; g != nil && g.Node.State == rpcpb.NodeState_ALIVE {
			a.opts.GCS.UnregisterNode(rctx, &rpcpb.UnregisterNodeRequest{NodeId: g.Node.NodeId, Reason: f.Detail, Failed: true})
		}
	}

	now := time.Now()
	var dead []string
	var pending []PendingNode
	seen := map[string]string{}
	for _, p := range pnodes {
		typ := p.Tags[provider.TagUserNodeType]
		seen[p.ID] = typ
		if _, ok := a.firstSeen[p.ID]; !ok {
			a.firstSeen[p.ID] = now
		}
		ns := NodeState{ID: p.ID, Type: typ, LaunchHash: p.Tags[provider.TagLaunchConfig]}
		g := byInstance[p.ID]
		switch {
		case g != nil && g.Node.State == rpcpb.NodeState_ALIVE:
			ns.Total, ns.Available = g.Node.Total, g.Available
			ns.IdleFor = time.Duration(g.IdleDurationMs) * time.Millisecond
			if p.Tags[provider.TagNodeStatus] != provider.StatusUpToDate {
				pv.SetNodeTags(rctx, p.ID, map[string]string{provider.TagNodeStatus: provider.StatusUpToDate})
			}
		case g != nil:
			dead = append(dead, p.ID)
			if !g.Node.DeathExpected {
				a.failNode(p.ID, typ, "NodeTerminated", fmt.Sprintf("died (ip %s): %s", g.Node.NodeIp, g.Node.DeathReason))
			}
			continue
		case now.Sub(a.firstSeen[p.ID]) > a.opts.StartTimeout:
			dead = append(dead, p.ID)
			a.failNode(p.ID, typ, "LaunchFailed", fmt.Sprintf("did not join the cluster within %s", a.opts.StartTimeout))
			continue
		default:
			ns.Launching = true
			ns.Total = a.cfg.Types[typ].Resources
			pending = append(pending, PendingNode{ID: p.ID, NodeType: typ, IP: p.InternalIP})
		}
		snap.Nodes = append(snap.Nodes, ns)
	}
	for id, typ := range a.known {
		if _, ok := seen[id]; !ok && !a.ours[id] && !reports {
			a.failNode(id, typ, "NodeTerminated", "disappeared from the provider")
		}
	}
	for id := range a.firstSeen {
		if _, ok := seen[id]; !ok {
			delete(a.firstSeen, id)
			delete(a.ours, id)
		}
	}
	a.known = seen

	// Job entrypoints waiting on the head for resources are demand too.
	var extra []scheduler.Resources
	for _, n := range view.Nodes {
		if n.Node.State != rpcpb.NodeState_ALIVE {
			continue
		}
		for _, d := range n.EntrypointDemands {
			for range d.Count {
				extra = append(extra, d.Shape)
			}
		}
	}
	extraDemands := countShapes(extra)
	snap.Demands = append(snap.Demands, extraDemands...)
	snap.Requests = a.requests(rctx)
	plan := Decide(snap)

	victims := dead
	for _, t := range plan.Terminate {
		a.log.Info("terminating node", "node", t.ID, "type", t.Type, "reason", t.Reason)
		victims = append(victims, t.ID)
	}
	if len(victims) > 0 {
		for _, id := range victims {
			a.ours[id] = true
		}
		if err := pv.TerminateNodes(rctx, victims); err != nil {
			a.fail("", "ProviderError", "terminate: "+err.Error())
		}
	}
	for _, typ := range slices.Sorted(maps.Keys(plan.Launch)) {
		a.launch(rctx, typ, plan.Launch[typ])
	}
	infeasibleReq := map[string]bool{}
	for _, d := range plan.InfeasibleRequests {
		infeasibleReq[d.Shape.Key()] = true
	}
	var reqs []RequestDemand
	for _, d := range countShapes(snap.Requests) {
		reqs = append(reqs, RequestDemand{Demand: d, Infeasible: infeasibleReq[d.Shape.Key()]})
	}
	a.publish(rctx, Report{Pending: pending, Infeasible: plan.Infeasible, Extra: extraDemands, Requests: reqs})
}

// launch creates count nodes of a type in batches, backing off per type
// after a failure.
func (a *Autoscaler) launch(ctx context.Context, typ string, count int) {
	a.mu.Lock()
	wait := a.backoff[typ]
	a.mu.Unlock()
	if time.Now().Before(wait) {
		return
	}
	c := a.opts.Config
	t := c.AvailableNodeTypes[typ]
	for count > 0 {
		n := min(count, MaxLaunchBatch)
		count -= n
		a.log.Info("launching nodes", "type", typ, "count", n)
		err := a.opts.Provider.CreateNodes(ctx, provider.CreateRequest{
			NodeType: typ, NodeConfig: t.NodeConfig, Count: n, Resources: t.Resources, Labels: t.Labels,
			Tags: map[string]string{
				provider.TagNodeName: "ray-" + c.ClusterName + "-worker", provider.TagNodeKind: provider.KindWorker,
				provider.TagNodeKindName: provider.KindWorker,
				provider.TagUserNodeType: typ, provider.TagNodeStatus: provider.StatusUninitialized,
				provider.TagLaunchConfig: c.LaunchHash(typ),
			},
		})
		a.mu.Lock()
		if err != nil {
			d := max(a.delay[typ]*2, a.opts.Interval)
			d = min(d, 5*time.Minute)
			a.delay[typ] = d
			a.backoff[typ] = time.Now().Add(d)
			a.mu.Unlock()
			a.log.Info("launch backoff", "type", typ, "retry_in", d)
			a.fail(typ, "LaunchFailed", fmt.Sprintf("launch %d %s node(s): %v", n, typ, err))
			return
		}
		delete(a.delay, typ)
		a.mu.Unlock()
	}
}

// requests reads the request_resources bundles from the KV.
func (a *Autoscaler) requests(ctx context.Context) []scheduler.Resources {
	r, err := a.opts.GCS.KVGet(ctx, &rpcpb.KVRequest{Namespace: request.Namespace, Key: request.Key})
	if err != nil || !r.Found {
		return nil
	}
	reqs, err := request.Decode(r.Value)
	if err != nil {
		a.log.Warn("bad resource request in the KV", "err", err)
		return nil
	}
	var out []scheduler.Resources
	for _, q := range reqs {
		if len(q.Resources) > 0 {
			out = append(out, q.Resources)
		}
	}
	return out
}

func (a *Autoscaler) publish(ctx context.Context, rep Report) {
	a.mu.Lock()
	rep.Time = time.Now()
	rep.Failures = append([]Failure{}, a.failures...)
	a.report = rep
	a.mu.Unlock()
	sort.Slice(rep.Pending, func(i, j int) bool { return rep.Pending[i].ID < rep.Pending[j].ID })
	b, _ := json.Marshal(rep)
	a.opts.GCS.KVPut(ctx, &rpcpb.KVRequest{Namespace: request.Namespace, Key: KVStatus, Value: b, Overwrite: true})
}

// LastReport returns what the last round published.
func (a *Autoscaler) LastReport() Report {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.report
}
