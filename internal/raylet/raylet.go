// Package raylet is the per-node manager: local resource accounting, the
// worker pool, worker leases with spillback, the node's log monitor and its
// small HTTP agent.
package raylet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/gcs/follow"
	"github.com/goray/goray/internal/object"
	"github.com/goray/goray/internal/scheduler"
	"github.com/goray/goray/internal/version"
	"github.com/goray/goray/proto/rpcpb"
)

// Config configures a raylet.
type Config struct {
	NodeID     string
	NodeIP     string
	NodeName   string
	IsHead     bool
	Listener   net.Listener // raylet gRPC
	Address    string       // advertised host:port of Listener
	AgentAddr  string       // advertised host:port of the HTTP agent
	GCSAddress string
	Token      string
	// Resources are the node's logical totals (CPU, GPU, memory, custom).
	Resources map[string]float64
	Labels    map[string]string
	// InstanceID and NodeType name the node for the autoscaler: its node
	// provider id and its available_node_types key ("" when started by hand).
	InstanceID, NodeType string
	// EntrypointDemands lists the resource shapes of job entrypoints
	// waiting on this node (the head's job manager); they are reported to
	// the GCS as demand for the autoscaler, wherever it runs.
	EntrypointDemands func() []map[string]float64
	// SessionDir holds this node's logs; TempRoot the host-wide binary cache.
	SessionDir string
	TempRoot   string
	// ObjectStore configures the node's object store (shared memory dir,
	// spill dir, capacity).
	ObjectStore object.Config
	// ReportPeriod is how often the raylet reports its resources to the GCS
	// and refreshes its cluster view.
	ReportPeriod          time.Duration
	WorkerIdleTimeout     time.Duration
	WorkerRegisterTimeout time.Duration
	// GCSReconnectTimeout is how long the raylet outlives an unreachable
	// GCS before it exits (Ray: gcs_rpc_server_reconnect_timeout_s, 60s).
	GCSReconnectTimeout time.Duration
	Logger              *slog.Logger
}

// Validate reports a configuration that cannot run.
func (c *Config) Validate() error {
	switch {
	case c.NodeID == "" || c.Listener == nil || c.Address == "" || c.GCSAddress == "":
		return errors.New("raylet: node id, listener, address and GCS address are required")
	case c.SessionDir == "" || c.TempRoot == "":
		return errors.New("raylet: session and temp directories are required")
	case c.ReportPeriod <= 0 || c.WorkerIdleTimeout <= 0 || c.WorkerRegisterTimeout <= 0 || c.GCSReconnectTimeout <= 0:
		return errors.New("raylet: report period, worker and GCS timeouts must be positive")
	}
	for k, v := range c.Resources {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("raylet: resource %s has invalid quantity %v", k, v)
		}
	}
	return nil
}

// lease is one granted worker lease. Guarded by Raylet.mu.
type lease struct {
	w        *worker
	actor    bool // a dedicated actor worker: it dies with its lease
	detached bool // outlives its job
	shape    scheduler.Resources
	gpuIDs   []int64
	blocked  bool
	released bool
}

// pending is a lease request waiting in this raylet's queue.
type pending struct {
	key        string
	shape      scheduler.Resources
	infeasible bool
	// pinned requests wait for this node (hard node affinity, such as a
	// job entrypoint's reservation): no new node helps them, so they are
	// not reported as demand for the autoscaler.
	pinned bool
}

// Raylet is a running node manager.
type Raylet struct {
	rpcpb.UnimplementedRayletServer
	cfg    Config
	log    *slog.Logger
	gcs    rpcpb.GcsServiceClient
	conn   *grpc.ClientConn
	grpc   *grpc.Server
	policy *scheduler.Policy
	logs   *logPublisher
	store  *object.Store
	om     objectManager

	ctx    context.Context
	cancel context.CancelFunc
	dead   chan error

	fetchMu sync.Mutex // serialises binary fetches

	// mu guards everything below.
	mu           sync.Mutex
	total        scheduler.Resources
	available    scheduler.Resources
	gpuFree      []float64 // free fraction of each GPU id
	workers      map[string]*worker
	queue        map[*pending]struct{}
	view         *rpcpb.ClusterView
	changed      chan struct{} // closed and replaced whenever state changes
	jobs         map[string]*rpcpb.JobInfo
	finishedJobs map[string]bool
	leases       int       // granted, not yet released
	lastBusy     time.Time // last time a lease was granted or released, or primary objects were held
}

// Start registers the node with the GCS and serves. It returns once the
// node is registered.
func Start(cfg Config) (*Raylet, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	store, err := object.Open(cfg.ObjectStore)
	if err != nil {
		return nil, fmt.Errorf("raylet: object store: %w", err)
	}
	conn, err := grpc.NewClient(cfg.GCSAddress, append(auth.DialOptions(cfg.Token),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))...)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("raylet: GCS address %q: %w", cfg.GCSAddress, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Raylet{
		cfg: cfg, log: log.With("component", "raylet"), gcs: rpcpb.NewGcsServiceClient(conn), conn: conn,
		policy: scheduler.NewPolicy(), ctx: ctx, cancel: cancel, dead: make(chan error, 1),
		total: scheduler.Resources(cfg.Resources).Clone(), available: scheduler.Resources(cfg.Resources).Clone(),
		workers: map[string]*worker{}, queue: map[*pending]struct{}{}, changed: make(chan struct{}),
		jobs: map[string]*rpcpb.JobInfo{}, finishedJobs: map[string]bool{}, lastBusy: time.Now(),
		store: store, om: objectManager{pulling: map[string]chan struct{}{}, conns: map[string]*grpc.ClientConn{}, jobOf: map[string]string{}},
	}
	for i := 0; i < int(cfg.Resources["GPU"]); i++ {
		r.gpuFree = append(r.gpuFree, 1)
	}
	r.logs = newLogPublisher(r.gcs)
	r.grpc = grpc.NewServer(append(auth.ServerOptions(cfg.Token), grpc.MaxRecvMsgSize(64<<20), grpc.MaxSendMsgSize(2*ChunkSize))...)
	rpcpb.RegisterRayletServer(r.grpc, r)
	go r.grpc.Serve(cfg.Listener)

	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	defer rcancel()
	_, err = r.gcs.RegisterNode(rctx, &rpcpb.NodeInfo{
		NodeId: cfg.NodeID, NodeIp: cfg.NodeIP, NodeName: cfg.NodeName, RayletAddress: cfg.Address,
		AgentAddress: cfg.AgentAddr, IsHead: cfg.IsHead, Total: cfg.Resources, Labels: cfg.Labels,
		Version: version.Version, SessionDir: cfg.SessionDir, InstanceId: cfg.InstanceID, NodeType: cfg.NodeType,
	}, grpc.WaitForReady(true))
	if err != nil {
		r.Stop()
		return nil, fmt.Errorf("raylet: register with GCS at %s: %s", cfg.GCSAddress, status.Convert(err).Message())
	}
	go r.reportLoop()
	go r.watchJobs()
	go r.logs.run(ctx)
	return r, nil
}

// Dead is closed with a reason when the GCS has declared this node dead;
// the node process should exit, as Ray's raylet does.
func (r *Raylet) Dead() <-chan error { return r.dead }

// Stop kills the node's workers and stops serving (call Unregister first
// for a clean stop).
func (r *Raylet) Stop() {
	r.cancel()
	r.mu.Lock()
	ws := make([]*worker, 0, len(r.workers))
	for _, w := range r.workers {
		ws = append(ws, w)
	}
	r.mu.Unlock()
	for _, w := range ws {
		r.killWorker(w)
	}
	r.grpc.Stop()
	r.conn.Close()
	r.om.mu.Lock()
	for _, c := range r.om.conns {
		c.Close()
	}
	r.om.mu.Unlock()
	r.store.Close()
}

// Unregister tells the GCS the node leaves on purpose.
func (r *Raylet) Unregister(reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r.gcs.UnregisterNode(ctx, &rpcpb.UnregisterNodeRequest{NodeId: r.cfg.NodeID, Reason: reason})
}

// notifyLocked wakes every waiter. Caller holds r.mu.
func (r *Raylet) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// ---------------------------------------------------------------- GCS sync

func (r *Raylet) die(err error) {
	select {
	case r.dead <- err:
	default:
	}
}

func (r *Raylet) reportLoop() {
	lastReport := time.Now()
	t := time.NewTicker(r.cfg.ReportPeriod)
	defer t.Stop()
	idle := time.NewTicker(time.Second)
	defer idle.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-idle.C:
			r.reapIdleWorkers()
			continue
		case <-t.C:
		}
		var entrypoints []*rpcpb.ResourceDemand
		if r.cfg.EntrypointDemands != nil {
			entrypoints = countDemands(r.cfg.EntrypointDemands())
		}
		r.mu.Lock()
		rep := &rpcpb.ResourceReport{NodeId: r.cfg.NodeID, Available: r.available.Clone(), Demands: r.demandsLocked(), EntrypointDemands: entrypoints}
		for _, w := range r.workers {
			if w.leased {
				rep.NumLeasedWorkers++
			}
		}
		r.mu.Unlock()
		rep.IdleDurationMs = r.idleFor().Milliseconds()
		ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
		view, err := r.gcs.ReportResources(ctx, rep)
		cancel()
		switch status.Code(err) {
		case codes.FailedPrecondition:
			r.die(fmt.Errorf("raylet: %s", status.Convert(err).Message()))
			return
		case codes.NotFound:
			r.die(fmt.Errorf("raylet: the GCS at %s does not know this node (a new head?): %s", r.cfg.GCSAddress, status.Convert(err).Message()))
			return
		}
		if err != nil {
			// Like Ray's raylet, give up on a GCS gone for too long.
			if time.Since(lastReport) > r.cfg.GCSReconnectTimeout {
				r.die(fmt.Errorf("raylet: GCS at %s unreachable for %s: %s", r.cfg.GCSAddress, r.cfg.GCSReconnectTimeout, status.Convert(err).Message()))
				return
			}
			continue
		}
		lastReport = time.Now()
		r.mu.Lock()
		r.view = view
		r.notifyLocked()
		r.mu.Unlock()
	}
}

// idleFor is how long the node has been idle in Ray's sense (no leases and
// no primary copies of objects), 0 while it is busy. Only placing work on
// the node, or holding objects, restarts the clock.
func (r *Raylet) idleFor() time.Duration {
	primary := r.store.NumPrimary()
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if r.leases > 0 || primary > 0 {
		r.lastBusy = now
		return 0
	}
	return now.Sub(r.lastBusy)
}

func (r *Raylet) demandsLocked() []*rpcpb.ResourceDemand {
	byKey := map[string]*rpcpb.ResourceDemand{}
	for p := range r.queue {
		if p.pinned {
			continue
		}
		d := byKey[p.key]
		if d == nil {
			d = &rpcpb.ResourceDemand{Shape: p.shape}
			byKey[p.key] = d
		}
		d.Count++
		d.Infeasible = d.Infeasible || p.infeasible
	}
	out := make([]*rpcpb.ResourceDemand, 0, len(byKey))
	for _, d := range byKey {
		out = append(out, d)
	}
	return out
}

// refreshView fetches the cluster view from the GCS now, instead of
// waiting for the next report's reply.
func (r *Raylet) refreshView(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	view, err := r.gcs.GetClusterView(ctx, &rpcpb.Empty{})
	if err != nil {
		return
	}
	r.mu.Lock()
	if r.view == nil || view.Version >= r.view.Version {
		r.view = view
	}
	r.mu.Unlock()
}

// countDemands counts equal shapes.
func countDemands(shapes []map[string]float64) []*rpcpb.ResourceDemand {
	var out []*rpcpb.ResourceDemand
	byKey := map[string]*rpcpb.ResourceDemand{}
	for _, sh := range shapes {
		k := scheduler.Resources(sh).Key()
		if d := byKey[k]; d != nil {
			d.Count++
			continue
		}
		d := &rpcpb.ResourceDemand{Shape: sh, Count: 1}
		byKey[k] = d
		out = append(out, d)
	}
	return out
}

// watchJobs learns of finished jobs so their workers end with them.
func (r *Raylet) watchJobs() {
	follow.Follow(r.ctx, r.gcs, &rpcpb.SubscribeRequest{Channels: []string{"job"}}, func(m *rpcpb.PubMessage) {
		jobs := []*rpcpb.JobInfo{m.Job}
		if m.Channel == "subscribed" { // jobs that ended while not watching
			ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
			all, err := r.gcs.GetAllJobs(ctx, &rpcpb.Empty{})
			cancel()
			if err != nil {
				return
			}
			jobs = all.Jobs
		}
		for _, j := range jobs {
			if j == nil {
				continue
			}
			r.mu.Lock()
			r.jobs[j.JobId] = j
			ended := j.IsDead && !r.finishedJobs[j.JobId]
			if j.IsDead {
				r.finishedJobs[j.JobId] = true
			}
			r.mu.Unlock()
			if ended {
				r.reapIdleWorkers()
				r.freeJobObjects(j.JobId)
			}
		}
	})
}

func (r *Raylet) job(ctx context.Context, id string) (*rpcpb.JobInfo, error) {
	r.mu.Lock()
	j := r.jobs[id]
	r.mu.Unlock()
	if j != nil {
		return j, nil
	}
	all, err := r.gcs.GetAllJobs(ctx, &rpcpb.Empty{})
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, j := range all.Jobs {
		r.jobs[j.JobId] = j
	}
	if r.jobs[id] == nil {
		return nil, fmt.Errorf("raylet: unknown job %s", id)
	}
	return r.jobs[id], nil
}

// ---------------------------------------------------------------- leases

// nodesLocked is the scheduling view: the GCS view with this node's entry
// replaced by the raylet's own, exact accounting.
func (r *Raylet) nodesLocked() []scheduler.Node {
	nodes := []scheduler.Node{{ID: r.cfg.NodeID, Total: r.total, Available: r.available, Labels: r.cfg.Labels, Alive: true}}
	if r.view != nil {
		for _, n := range r.view.Nodes {
			if n.Node.NodeId == r.cfg.NodeID {
				continue
			}
			nodes = append(nodes, scheduler.Node{
				ID: n.Node.NodeId, Total: n.Node.Total, Available: n.Available, Labels: n.Node.Labels,
				Alive: n.Node.State == rpcpb.NodeState_ALIVE,
			})
		}
	}
	return nodes
}

// launchableLocked reports whether the autoscaler can launch a node that
// fits shape.
func (r *Raylet) launchableLocked(shape scheduler.Resources) bool {
	if r.view == nil {
		return false
	}
	for _, l := range r.view.Launchable {
		if shape.Fits(l.Resources) {
			return true
		}
	}
	return false
}

// rayletAddressLocked is the raylet address of a node in the view.
func (r *Raylet) rayletAddressLocked(nodeID string) string {
	if r.view != nil {
		for _, n := range r.view.Nodes {
			if n.Node.NodeId == nodeID {
				return n.Node.RayletAddress
			}
		}
	}
	return ""
}

// Lease serves one worker lease: it grants a local worker, points the
// requester at a better node (spillback), or keeps the request queued
// (reporting it as infeasible when no node can ever run it). Once granted,
// the stream stays open for the lease's lifetime; closing it returns the
// worker, breaking it kills the worker.
func (r *Raylet) Lease(stream rpcpb.Raylet_LeaseServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	req := first.Request
	if req == nil {
		return status.Error(codes.InvalidArgument, "raylet: lease stream must start with a request")
	}
	ctx := stream.Context()
	sreq := scheduler.Request{Shape: scheduler.Resources(req.Shape).Clone(), AffinityNodeID: req.AffinityNodeId, AffinitySoft: req.AffinitySoft}
	switch req.Strategy {
	case rpcpb.SchedulingStrategy_SPREAD:
		sreq.Strategy = scheduler.Spread
	case rpcpb.SchedulingStrategy_NODE_AFFINITY:
		sreq.Strategy = scheduler.NodeAffinity
	}
	var job *rpcpb.JobInfo
	if !req.ReserveOnly {
		var err error
		if job, err = r.job(ctx, req.JobId); err != nil {
			return status.Error(codes.NotFound, err.Error())
		}
	}
	p := &pending{key: sreq.Shape.Key(), shape: sreq.Shape, pinned: sreq.Strategy == scheduler.NodeAffinity && !sreq.AffinitySoft}
	r.mu.Lock()
	r.queue[p] = struct{}{}
	r.mu.Unlock()
	dequeue := func() {
		r.mu.Lock()
		delete(r.queue, p)
		r.mu.Unlock()
	}
	sentInfeasible, refreshed := false, false
	for {
		r.mu.Lock()
		changed := r.changed
		var d scheduler.Decision
		if req.Spilled {
			// A spilled request is granted here or waits here, unless another
			// node (one the autoscaler just added, say) has room now: spilling
			// only to free nodes cannot ping-pong.
			d = scheduler.Decision{NodeID: r.cfg.NodeID, Available: sreq.Shape.Fits(r.available)}
			if !d.Available && sreq.Strategy != scheduler.NodeAffinity {
				if o := r.policy.Pick(r.nodesLocked(), r.cfg.NodeID, sreq); o.Available && o.NodeID != r.cfg.NodeID {
					d = o
				}
			}
			if !d.Available && !sreq.Shape.Fits(r.total) {
				d = scheduler.Decision{Infeasible: true, Reason: fmt.Sprintf("node %s cannot fit %s", r.cfg.NodeID, sreq.Shape.Key())}
			}
		} else {
			d = r.policy.Pick(r.nodesLocked(), r.cfg.NodeID, sreq)
			if d.Infeasible && sreq.Strategy != scheduler.NodeAffinity && r.launchableLocked(sreq.Shape) {
				// The autoscaler can launch a node for it: wait here, as demand.
				d = scheduler.Decision{NodeID: r.cfg.NodeID}
			}
		}
		p.infeasible = d.Infeasible
		if d.NodeID == r.cfg.NodeID && d.Available {
			held := sreq.Shape
			if req.Actor {
				held = scheduler.Resources(req.Hold).Clone()
			}
			l := r.takeLocked(held)
			l.actor, l.detached = req.Actor, req.Detached
			delete(r.queue, p)
			r.mu.Unlock()
			if req.ReserveOnly {
				return r.serveReservation(stream, l)
			}
			return r.serveLease(stream, job, l)
		}
		var spillAddr string
		if d.NodeID != "" && d.NodeID != r.cfg.NodeID && (d.Available || !sreq.Shape.Fits(r.total)) {
			spillAddr = r.rayletAddressLocked(d.NodeID)
		}
		r.mu.Unlock()
		switch {
		case spillAddr != "":
			dequeue()
			return stream.Send(&rpcpb.LeaseUpdate{State: rpcpb.LeaseState_SPILLBACK, SpillbackAddress: spillAddr, SpillbackNodeId: d.NodeID})
		case d.Infeasible && req.Spilled:
			// The requester's view was stale; it asks its own raylet again.
			dequeue()
			return status.Errorf(codes.ResourceExhausted, "raylet: %s", d.Reason)
		case d.Infeasible && sreq.Strategy == scheduler.NodeAffinity && !sreq.AffinitySoft:
			// The node may have joined since the last report's view: ask
			// the GCS once before rejecting.
			if !refreshed {
				refreshed = true
				r.refreshView(ctx)
				continue
			}
			dequeue()
			return stream.Send(&rpcpb.LeaseUpdate{State: rpcpb.LeaseState_REJECTED, Message: d.Reason})
		case d.Infeasible && !sentInfeasible:
			sentInfeasible = true
			if err := stream.Send(&rpcpb.LeaseUpdate{State: rpcpb.LeaseState_INFEASIBLE, Message: d.Reason}); err != nil {
				dequeue()
				return err
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			dequeue()
			return ctx.Err()
		}
	}
}

// takeLocked subtracts a shape from the available resources and assigns
// GPU ids. Caller holds r.mu and checked that the shape fits.
func (r *Raylet) takeLocked(shape scheduler.Resources) *lease {
	r.available.Sub(shape)
	r.leases++
	r.lastBusy = time.Now()
	l := &lease{shape: shape}
	need := shape["GPU"]
	for i := range r.gpuFree {
		if need <= 1e-9 {
			break
		}
		take := math.Min(need, r.gpuFree[i])
		if need >= 1 && r.gpuFree[i] < 1-1e-9 {
			continue // whole GPUs get GPUs of their own
		}
		if take <= 1e-9 {
			continue
		}
		r.gpuFree[i] -= take
		need -= take
		l.gpuIDs = append(l.gpuIDs, int64(i))
	}
	return l
}

// releaseLease gives a lease's resources back, once.
func (r *Raylet) releaseLease(l *lease) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if l.released {
		return
	}
	l.released = true
	r.leases--
	r.lastBusy = time.Now()
	shape := l.shape
	if l.blocked {
		shape = shape.Clone()
		delete(shape, "CPU")
	}
	r.available.Add(shape)
	rest := l.shape["GPU"]
	for _, id := range l.gpuIDs {
		give := math.Min(rest, 1-r.gpuFree[id])
		if l.shape["GPU"] >= 1 {
			give = 1 - r.gpuFree[id]
		}
		r.gpuFree[id] += give
		rest -= give
	}
	if l.w != nil {
		l.w.lease = nil
		l.w.leased = false
		l.w.idleAt = time.Now()
	}
	r.notifyLocked()
}

// serveReservation holds a lease's resources, with no worker, until the
// stream ends (a job entrypoint's resources while it runs).
func (r *Raylet) serveReservation(stream rpcpb.Raylet_LeaseServer, l *lease) error {
	defer r.releaseLease(l)
	if err := stream.Send(&rpcpb.LeaseUpdate{State: rpcpb.LeaseState_GRANTED, NodeId: r.cfg.NodeID, GpuIds: l.gpuIDs}); err != nil {
		return err
	}
	for {
		if _, err := stream.Recv(); err != nil {
			return nil
		}
	}
}

func (r *Raylet) serveLease(stream rpcpb.Raylet_LeaseServer, job *rpcpb.JobInfo, l *lease) error {
	ctx := stream.Context()
	w, err := r.popWorker(ctx, job)
	if err != nil {
		r.releaseLease(l)
		return stream.Send(&rpcpb.LeaseUpdate{State: rpcpb.LeaseState_REJECTED, Message: err.Error()})
	}
	r.mu.Lock()
	l.w = w
	w.lease = l
	w.detached = l.detached
	r.mu.Unlock()
	select {
	case <-w.exited:
		r.releaseLease(l)
		return stream.Send(&rpcpb.LeaseUpdate{State: rpcpb.LeaseState_REJECTED, Message: "raylet: worker exited before the lease was granted"})
	default:
	}
	err = stream.Send(&rpcpb.LeaseUpdate{State: rpcpb.LeaseState_GRANTED, WorkerId: w.id, WorkerAddress: w.address, WorkerTaskAddress: w.taskAddr, NodeId: r.cfg.NodeID, GpuIds: l.gpuIDs, WorkerPid: int64(w.pid)})
	kill := err != nil
	if !kill {
		done := make(chan bool, 1)
		go func() {
			for {
				m, err := stream.Recv()
				if err == io.EOF {
					done <- false
					return
				}
				if err != nil || m.Kill {
					done <- true
					return
				}
			}
		}()
		select {
		case kill = <-done:
		case <-w.exited:
		case <-r.ctx.Done():
			kill = true
		}
	}
	if kill || l.actor {
		r.killWorker(w)
		<-w.exited
	}
	r.releaseLease(l)
	return nil
}

// ---------------------------------------------------------------- workers

// RegisterWorker is called by a worker process once it serves; the stream
// stays open so the worker exits when its raylet goes away.
func (r *Raylet) RegisterWorker(req *rpcpb.RegisterWorkerRequest, stream rpcpb.Raylet_RegisterWorkerServer) error {
	r.mu.Lock()
	w := r.workers[req.WorkerId]
	if w == nil || w.address != "" {
		r.mu.Unlock()
		return status.Errorf(codes.NotFound, "raylet: unknown worker %s", req.WorkerId)
	}
	w.address, w.taskAddr = req.Address, req.TaskAddress
	close(w.ready)
	r.mu.Unlock()
	if err := stream.Send(&rpcpb.Empty{}); err != nil {
		return err
	}
	select {
	case <-stream.Context().Done():
	case <-w.exited:
	case <-r.ctx.Done():
	}
	return nil
}

// NotifyBlocked gives a worker's CPUs back while it waits in Get or Wait
// (and takes them again after), as Ray does, so nested tasks cannot
// deadlock a small node.
func (r *Raylet) NotifyBlocked(ctx context.Context, req *rpcpb.WorkerBlocked) (*rpcpb.Empty, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.workers[req.WorkerId]
	if w == nil || w.lease == nil || w.lease.released || w.lease.blocked == req.Blocked {
		return &rpcpb.Empty{}, nil
	}
	cpu := scheduler.Resources{"CPU": w.lease.shape["CPU"]}
	if req.Blocked {
		r.available.Add(cpu)
	} else {
		r.available.Sub(cpu)
	}
	w.lease.blocked = req.Blocked
	r.notifyLocked()
	return &rpcpb.Empty{}, nil
}

func (r *Raylet) HealthCheck(ctx context.Context, _ *rpcpb.Empty) (*rpcpb.Empty, error) {
	return &rpcpb.Empty{}, nil
}

// Snapshot returns the node's available resources and its queued lease
// shapes, for tests and the agent.
func (r *Raylet) Snapshot() (available map[string]float64, queued []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for p := range r.queue {
		queued = append(queued, p.key)
	}
	sort.Strings(queued)
	return r.available.Clone(), queued
}
