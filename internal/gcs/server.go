// Package gcs is the Global Control Store: the node table with health
// checks, the job table, internal KV, pub/sub of node and job changes, the
// cluster resource view and the store of driver binaries. It runs in the
// head node's process and is on the control path only, never per task.
package gcs

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/gcs/store"
	"github.com/goray/goray/internal/scheduler"
	"github.com/goray/goray/internal/version"
	"github.com/goray/goray/proto/rpcpb"
)

// Config configures a GCS server.
type Config struct {
	// Listener the gRPC server serves on (the cluster's bootstrap address).
	Listener net.Listener
	// StoragePath, when set, persists the tables under this directory and
	// reloads them at start (--gcs-storage-path).
	StoragePath string
	// BinaryDir holds uploaded driver binaries by content hash.
	BinaryDir string
	// Token is the cluster auth token; "" disables authentication.
	Token string
	// HealthCheckPeriod is the time between two health checks of a raylet
	// (Ray: health_check_period_ms, 3s); HealthCheckTimeout bounds one
	// check; after FailureThreshold consecutive failures the node is DEAD.
	HealthCheckPeriod  time.Duration
	HealthCheckTimeout time.Duration
	FailureThreshold   int
	Logger             *slog.Logger
}

// DefaultConfig returns Ray's health-check defaults.
func DefaultConfig() Config {
	return Config{HealthCheckPeriod: 3 * time.Second, HealthCheckTimeout: 10 * time.Second, FailureThreshold: 5}
}

// Validate reports a configuration that cannot run.
func (c *Config) Validate() error {
	switch {
	case c.Listener == nil:
		return errors.New("gcs: no listener")
	case c.BinaryDir == "":
		return errors.New("gcs: no binary directory")
	case c.HealthCheckPeriod <= 0:
		return fmt.Errorf("gcs: health check period must be positive, got %s", c.HealthCheckPeriod)
	case c.HealthCheckTimeout <= 0:
		return fmt.Errorf("gcs: health check timeout must be positive, got %s", c.HealthCheckTimeout)
	case c.FailureThreshold < 1:
		return fmt.Errorf("gcs: health check failure threshold must be at least 1, got %d", c.FailureThreshold)
	}
	return nil
}

const (
	tableNodes = "nodes"
	tableJobs  = "jobs"
	tableMeta  = "meta"
	kvPrefix   = "kv/"
)

// nodeEntry is one row of the node table plus its live resource state.
type nodeEntry struct {
	info      *rpcpb.NodeInfo
	available map[string]float64
	demands   []*rpcpb.ResourceDemand
	// entrypointDemands are job entrypoints waiting for resources (head).
	entrypointDemands []*rpcpb.ResourceDemand
	idleMs            int64
	stopCheck         context.CancelFunc
}

// Server is a running GCS.
type Server struct {
	rpcpb.UnimplementedGcsServiceServer
	cfg   Config
	log   *slog.Logger
	store store.Store
	ps    *pubsub
	grpc  *grpc.Server

	ctx    context.Context
	cancel context.CancelFunc

	// mu guards nodes, jobs, jobCounter and viewVersion.
	mu          sync.Mutex
	nodes       map[string]*nodeEntry
	jobs        map[string]*rpcpb.JobInfo
	jobCounter  uint32
	viewVersion int64
	launchable  []*rpcpb.ResourceShape
	actors      map[string]*actorEntry
	named       map[string]string // namespace+name → actor id
	actorPolicy *scheduler.Policy

	connMu sync.Mutex
	conns  map[string]*grpc.ClientConn // to raylets, for actor leases

	done chan struct{}
}

// Start loads the tables and serves; it returns once the server accepts calls.
func Start(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var st store.Store
	if cfg.StoragePath != "" {
		var err error
		if st, err = store.OpenFile(cfg.StoragePath); err != nil {
			return nil, err
		}
	} else {
		st = store.NewMemory()
	}
	if err := os.MkdirAll(cfg.BinaryDir, 0o755); err != nil {
		st.Close()
		return nil, fmt.Errorf("gcs: binary directory: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg: cfg, log: log.With("component", "gcs"), store: st, ps: newPubsub(),
		ctx: ctx, cancel: cancel,
		nodes: map[string]*nodeEntry{}, jobs: map[string]*rpcpb.JobInfo{},
		actors: map[string]*actorEntry{}, named: map[string]string{}, actorPolicy: scheduler.NewPolicy(),
		conns: map[string]*grpc.ClientConn{}, done: make(chan struct{}),
	}
	if err := s.load(); err != nil {
		cancel()
		st.Close()
		return nil, err
	}
	opts := append(auth.ServerOptions(cfg.Token), grpc.MaxRecvMsgSize(64<<20), grpc.MaxSendMsgSize(64<<20))
	s.grpc = grpc.NewServer(opts...)
	rpcpb.RegisterGcsServiceServer(s.grpc, s)
	go func() {
		defer close(s.done)
		if err := s.grpc.Serve(cfg.Listener); err != nil {
			s.log.Error("serve", "err", err)
		}
	}()
	return s, nil
}

// load reloads persisted tables; alive nodes are health-checked again and
// marked dead if they do not answer.
func (s *Server) load() error {
	nodes, err := s.store.GetAll(tableNodes)
	if err != nil {
		return err
	}
	for id, b := range nodes {
		info := &rpcpb.NodeInfo{}
		if err := proto.Unmarshal(b, info); err != nil {
			return fmt.Errorf("gcs: corrupt node %s in storage: %w", id, err)
		}
		e := &nodeEntry{info: info, available: map[string]float64{}}
		s.nodes[id] = e
		if info.State == rpcpb.NodeState_ALIVE {
			for k, v := range info.Total {
				e.available[k] = v
			}
			s.startHealthCheck(e)
		}
	}
	jobs, err := s.store.GetAll(tableJobs)
	if err != nil {
		return err
	}
	for id, b := range jobs {
		j := &rpcpb.JobInfo{}
		if err := proto.Unmarshal(b, j); err != nil {
			return fmt.Errorf("gcs: corrupt job %s in storage: %w", id, err)
		}
		s.jobs[id] = j
		if !j.IsDead && j.DriverAddress != "" {
			go s.monitorDriver(j.JobId, j.DriverAddress)
		}
	}
	actors, err := s.store.GetAll(tableActors)
	if err != nil {
		return err
	}
	for id, b := range actors {
		info := &rpcpb.ActorInfo{}
		if err := proto.Unmarshal(b, info); err != nil {
			return fmt.Errorf("gcs: corrupt actor %s in storage: %w", id, err)
		}
		e := &actorEntry{info: info, kill: make(chan killRequest, 1)}
		s.actors[id] = e
		if info.State != rpcpb.ActorState_ACTOR_DEAD {
			// Its worker's lease ended with the old GCS: start it again.
			if info.Spec.Name != "" {
				s.named[nameKey(info.Spec.Namespace, info.Spec.Name)] = id
			}
			info.State, info.Address = rpcpb.ActorState_RESTARTING, ""
			actx, cancel := context.WithCancel(s.ctx)
			e.stop = cancel
			go s.runActor(actx, e)
		}
	}
	if b, ok, err := s.store.Get(tableMeta, "job_counter"); err != nil {
		return err
	} else if ok && len(b) == 4 {
		s.jobCounter = binary.LittleEndian.Uint32(b)
	}
	return nil
}

// Stop ends the server and closes its storage.
func (s *Server) Stop() {
	s.cancel()
	s.grpc.Stop()
	<-s.done
	s.connMu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.connMu.Unlock()
	s.store.Close()
}

func (s *Server) persistNode(info *rpcpb.NodeInfo) {
	b, _ := proto.Marshal(info)
	if err := s.store.Put(tableNodes, info.NodeId, b); err != nil {
		s.log.Error("persist node", "node", info.NodeId, "err", err)
	}
}

func (s *Server) persistJob(j *rpcpb.JobInfo) {
	b, _ := proto.Marshal(j)
	if err := s.store.Put(tableJobs, j.JobId, b); err != nil {
		s.log.Error("persist job", "job", j.JobId, "err", err)
	}
}

func nowMs() int64 { return time.Now().UnixMilli() }

// ---------------------------------------------------------------- nodes

func (s *Server) RegisterNode(ctx context.Context, info *rpcpb.NodeInfo) (*rpcpb.RegisterNodeReply, error) {
	if info.NodeId == "" || info.RayletAddress == "" {
		return nil, status.Error(codes.InvalidArgument, "gcs: node registration needs node_id and raylet_address")
	}
	if info.Version != version.Version {
		return nil, status.Errorf(codes.FailedPrecondition, "gcs: version mismatch: node runs goray %s, cluster runs goray %s", info.Version, version.Version)
	}
	info = proto.Clone(info).(*rpcpb.NodeInfo)
	info.State = rpcpb.NodeState_ALIVE
	info.StartTimeMs = nowMs()
	e := &nodeEntry{info: info, available: map[string]float64{}}
	for k, v := range info.Total {
		e.available[k] = v
	}
	s.mu.Lock()
	if old, ok := s.nodes[info.NodeId]; ok && old.stopCheck != nil {
		old.stopCheck()
	}
	s.nodes[info.NodeId] = e
	s.viewVersion++
	s.persistNode(info)
	s.startHealthCheck(e)
	s.mu.Unlock()
	s.log.Info("node registered", "node", info.NodeId, "address", info.RayletAddress, "head", info.IsHead)
	s.ps.publish(&rpcpb.PubMessage{Channel: "node", Node: info})
	return &rpcpb.RegisterNodeReply{HealthCheckPeriodMs: s.cfg.HealthCheckPeriod.Milliseconds()}, nil
}

func (s *Server) UnregisterNode(ctx context.Context, req *rpcpb.UnregisterNodeRequest) (*rpcpb.Empty, error) {
	if !s.markDead(req.NodeId, req.Reason, !req.Failed) {
		return nil, status.Errorf(codes.NotFound, "gcs: unknown node %s", req.NodeId)
	}
	return &rpcpb.Empty{}, nil
}

// markDead moves a node to DEAD and takes its resources out of the cluster
// view in the same step. It reports whether the node was known.
func (s *Server) markDead(nodeID, reason string, expected bool) bool {
	s.mu.Lock()
	e, ok := s.nodes[nodeID]
	if !ok {
		s.mu.Unlock()
		return false
	}
	if e.info.State == rpcpb.NodeState_DEAD {
		s.mu.Unlock()
		return true
	}
	if e.stopCheck != nil {
		e.stopCheck()
	}
	info := proto.Clone(e.info).(*rpcpb.NodeInfo)
	info.State = rpcpb.NodeState_DEAD
	info.DeathReason = reason
	info.DeathExpected = expected
	info.EndTimeMs = nowMs()
	e.info = info
	e.available = map[string]float64{}
	e.demands = nil
	s.viewVersion++
	s.persistNode(info)
	s.mu.Unlock()
	s.log.Warn("node dead", "node", nodeID, "reason", reason)
	s.ps.publish(&rpcpb.PubMessage{Channel: "node", Node: info})
	return true
}

// startHealthCheck runs the GCS-side health check of one raylet, as Ray's
// GcsHealthCheckManager does. Caller holds s.mu.
func (s *Server) startHealthCheck(e *nodeEntry) {
	ctx, cancel := context.WithCancel(s.ctx)
	e.stopCheck = cancel
	nodeID, addr := e.info.NodeId, e.info.RayletAddress
	go func() {
		conn, err := grpc.NewClient(addr, append(auth.DialOptions(s.cfg.Token), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
		if err != nil {
			s.markDead(nodeID, fmt.Sprintf("bad raylet address %q: %v", addr, err), false)
			return
		}
		defer conn.Close()
		client := rpcpb.NewRayletClient(conn)
		failures := 0
		t := time.NewTicker(s.cfg.HealthCheckPeriod)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			cctx, ccancel := context.WithTimeout(ctx, s.cfg.HealthCheckTimeout)
			_, err := client.HealthCheck(cctx, &rpcpb.Empty{})
			ccancel()
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				failures = 0
				continue
			}
			failures++
			if failures >= s.cfg.FailureThreshold {
				s.markDead(nodeID, fmt.Sprintf("health check failed %d times in a row (period %s): %v", failures, s.cfg.HealthCheckPeriod, status.Convert(err).Message()), false)
				return
			}
		}
	}()
}

func (s *Server) GetAllNodes(ctx context.Context, _ *rpcpb.Empty) (*rpcpb.NodeList, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &rpcpb.NodeList{}
	for _, e := range s.sortedNodes() {
		out.Nodes = append(out.Nodes, e.info)
	}
	return out, nil
}

func (s *Server) sortedNodes() []*nodeEntry {
	out := make([]*nodeEntry, 0, len(s.nodes))
	for _, e := range s.nodes {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].info.NodeId < out[j].info.NodeId })
	return out
}

func (s *Server) ReportResources(ctx context.Context, r *rpcpb.ResourceReport) (*rpcpb.ClusterView, error) {
	s.mu.Lock()
	e, ok := s.nodes[r.NodeId]
	if !ok {
		s.mu.Unlock()
		return nil, status.Errorf(codes.NotFound, "gcs: unknown node %s", r.NodeId)
	}
	if e.info.State == rpcpb.NodeState_DEAD {
		s.mu.Unlock()
		return nil, status.Errorf(codes.FailedPrecondition, "gcs: node %s is dead: %s", r.NodeId, e.info.DeathReason)
	}
	e.available = r.Available
	e.demands = r.Demands
	e.entrypointDemands = r.EntrypointDemands
	e.idleMs = r.IdleDurationMs
	s.viewVersion++
	v := s.viewLocked()
	s.mu.Unlock()
	return v, nil
}

func (s *Server) GetClusterView(ctx context.Context, _ *rpcpb.Empty) (*rpcpb.ClusterView, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.viewLocked(), nil
}

func (s *Server) viewLocked() *rpcpb.ClusterView {
	v := &rpcpb.ClusterView{Version: s.viewVersion, Launchable: s.launchable}
	for _, e := range s.sortedNodes() {
		v.Nodes = append(v.Nodes, &rpcpb.NodeResources{Node: e.info, Available: e.available, Demands: e.demands, IdleDurationMs: e.idleMs, EntrypointDemands: e.entrypointDemands})
	}
	return v
}

// SetLaunchableShapes records the node shapes the autoscaler can still
// launch; raylets then queue demands that fit one of them instead of
// calling them infeasible. An empty list means no autoscaler. The view
// only changes (and raylets only wake) when the shapes do.
func (s *Server) SetLaunchableShapes(ctx context.Context, r *rpcpb.LaunchableShapes) (*rpcpb.Empty, error) {
	for _, sh := range r.Shapes {
		for k, v := range sh.Resources {
			if k == "" || v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, status.Errorf(codes.InvalidArgument, "gcs: launchable shape %v: resource %q has amount %v", sh.Resources, k, v)
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if sameShapes(s.launchable, r.Shapes) {
		return &rpcpb.Empty{}, nil
	}
	s.launchable = r.Shapes
	s.viewVersion++
	return &rpcpb.Empty{}, nil
}

func sameShapes(a, b []*rpcpb.ResourceShape) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !maps.Equal(a[i].Resources, b[i].Resources) {
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------- jobs

// AddJob registers a driver. The job id is assigned here (4 bytes,
// little-endian hex, as Ray's JobID) unless the caller names one.
func (s *Server) AddJob(ctx context.Context, j *rpcpb.JobInfo) (*rpcpb.JobInfo, error) {
	if j.Version != version.Version {
		return nil, status.Errorf(codes.FailedPrecondition, "gcs: version mismatch: driver built with goray %s, cluster runs goray %s", j.Version, version.Version)
	}
	j = proto.Clone(j).(*rpcpb.JobInfo)
	s.mu.Lock()
	if j.JobId == "" {
		s.jobCounter++
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], s.jobCounter)
		if err := s.store.Put(tableMeta, "job_counter", b[:]); err != nil {
			s.mu.Unlock()
			return nil, status.Errorf(codes.Internal, "gcs: persist job counter: %v", err)
		}
		j.JobId = hex.EncodeToString(b[:])
	}
	if j.Namespace == "" {
		j.Namespace = "anonymous_namespace_" + j.JobId // Ray's default: private to the job
	}
	j.StartTimeMs = nowMs()
	j.IsDead = false
	s.jobs[j.JobId] = j
	s.persistJob(j)
	s.mu.Unlock()
	s.ps.publish(&rpcpb.PubMessage{Channel: "job", Job: j})
	if j.DriverAddress != "" {
		go s.monitorDriver(j.JobId, j.DriverAddress)
	}
	return j, nil
}

func (s *Server) MarkJobFinished(ctx context.Context, req *rpcpb.JobID) (*rpcpb.Empty, error) {
	if !s.finishJob(req.JobId) {
		return nil, status.Errorf(codes.NotFound, "gcs: unknown job %s", req.JobId)
	}
	return &rpcpb.Empty{}, nil
}

// finishJob marks a job dead once; raylets then end its workers. It
// reports whether the job is known.
func (s *Server) finishJob(id string) bool {
	s.mu.Lock()
	j, ok := s.jobs[id]
	if !ok || j.IsDead {
		s.mu.Unlock()
		return ok
	}
	j = proto.Clone(j).(*rpcpb.JobInfo)
	j.IsDead = true
	j.EndTimeMs = nowMs()
	s.jobs[j.JobId] = j
	s.persistJob(j)
	s.mu.Unlock()
	s.ps.publish(&rpcpb.PubMessage{Channel: "job", Job: j})
	s.killJobActors(id)
	return true
}

// monitorDriver finishes the job of a driver that stops answering, so a
// crashed driver's workers and actors do not outlive it.
func (s *Server) monitorDriver(jobID, addr string) {
	s.watchOwner(addr, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return !s.jobs[jobID].GetIsDead()
	}, func(err error) {
		s.log.Warn("driver gone; finishing its job", "job", jobID, "err", err)
		s.finishJob(jobID)
	})
}

// watchOwner pings a core worker (a driver, or a worker that owns actors)
// like a raylet's health check while needed reports true, and calls gone
// once it has failed FailureThreshold checks in a row.
func (s *Server) watchOwner(addr string, needed func() bool, gone func(error)) {
	conn, err := grpc.NewClient(addr, append(auth.DialOptions(s.cfg.Token), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		gone(err)
		return
	}
	defer conn.Close()
	client := rpcpb.NewCoreWorkerClient(conn)
	failures, since := 0, time.Time{}
	t := time.NewTicker(s.cfg.HealthCheckPeriod)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		if !needed() {
			return
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.HealthCheckTimeout)
		_, err := client.Ping(ctx, &rpcpb.Empty{})
		cancel()
		if err == nil {
			failures, since = 0, time.Time{}
			continue
		}
		if since.IsZero() {
			since = time.Now()
		}
		// A refused connection means the process is gone; a slow answer
		// only means it is busy (a driver under load), so that alone
		// takes much longer to count as death.
		if status.Code(err) == codes.Unavailable {
			failures++
		}
		if (failures >= s.cfg.FailureThreshold || time.Since(since) > ownerUnresponsiveLimit) && s.ctx.Err() == nil {
			gone(err)
			return
		}
	}
}

// ownerUnresponsiveLimit is how long an owner may fail to answer pings
// without refusing connections before it is taken for dead.
const ownerUnresponsiveLimit = time.Minute

func (s *Server) GetAllJobs(ctx context.Context, _ *rpcpb.Empty) (*rpcpb.JobList, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &rpcpb.JobList{}
	for _, j := range s.jobs {
		out.Jobs = append(out.Jobs, j)
	}
	sort.Slice(out.Jobs, func(a, b int) bool { return out.Jobs[a].StartTimeMs < out.Jobs[b].StartTimeMs })
	return out, nil
}

// ---------------------------------------------------------------- KV

func kvTable(ns string) string { return kvPrefix + ns }

func (s *Server) KVPut(ctx context.Context, r *rpcpb.KVRequest) (*rpcpb.KVReply, error) {
	if r.Key == "" {
		return nil, status.Error(codes.InvalidArgument, "gcs: kv key is empty")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, exists, err := s.store.Get(kvTable(r.Namespace), r.Key)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "gcs: kv: %v", err)
	}
	if exists && !r.Overwrite {
		return &rpcpb.KVReply{Added: false}, nil
	}
	if err := s.store.Put(kvTable(r.Namespace), r.Key, r.Value); err != nil {
		return nil, status.Errorf(codes.Internal, "gcs: kv: %v", err)
	}
	return &rpcpb.KVReply{Added: !exists}, nil
}

func (s *Server) KVGet(ctx context.Context, r *rpcpb.KVRequest) (*rpcpb.KVReply, error) {
	v, ok, err := s.store.Get(kvTable(r.Namespace), r.Key)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "gcs: kv: %v", err)
	}
	return &rpcpb.KVReply{Found: ok, Value: v}, nil
}

func (s *Server) KVDel(ctx context.Context, r *rpcpb.KVRequest) (*rpcpb.KVReply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok, err := s.store.Get(kvTable(r.Namespace), r.Key)
	if err == nil && ok {
		err = s.store.Delete(kvTable(r.Namespace), r.Key)
	}
	if err != nil {
		return nil, status.Errorf(codes.Internal, "gcs: kv: %v", err)
	}
	return &rpcpb.KVReply{Found: ok}, nil
}

// KVKeys lists the keys of a namespace that start with the request's key.
func (s *Server) KVKeys(ctx context.Context, r *rpcpb.KVRequest) (*rpcpb.KVReply, error) {
	all, err := s.store.GetAll(kvTable(r.Namespace))
	if err != nil {
		return nil, status.Errorf(codes.Internal, "gcs: kv: %v", err)
	}
	out := &rpcpb.KVReply{}
	for k := range all {
		if strings.HasPrefix(k, r.Key) {
			out.Keys = append(out.Keys, k)
		}
	}
	sort.Strings(out.Keys)
	return out, nil
}

// ---------------------------------------------------------------- pub/sub

func (s *Server) Subscribe(req *rpcpb.SubscribeRequest, stream rpcpb.GcsService_SubscribeServer) error {
	sub := s.ps.subscribe(req)
	defer s.ps.unsubscribe(sub)
	// An empty first message tells the subscriber it is registered, so it
	// can read current state without missing later changes.
	if err := stream.Send(&rpcpb.PubMessage{Channel: "subscribed"}); err != nil {
		return err
	}
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case <-s.ctx.Done():
			return status.Error(codes.Unavailable, "gcs: shutting down")
		case m := <-sub.ch:
			if err := stream.Send(m); err != nil {
				return err
			}
		}
	}
}

func (s *Server) Publish(ctx context.Context, m *rpcpb.PubMessage) (*rpcpb.Empty, error) {
	if m.Channel != "logs" {
		return nil, status.Errorf(codes.InvalidArgument, "gcs: only the logs channel accepts publishes, got %q", m.Channel)
	}
	s.ps.publish(m)
	return &rpcpb.Empty{}, nil
}

// ---------------------------------------------------------------- binaries

func validHash(h string) bool {
	if len(h) != 64 {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil
}

func (s *Server) binaryPath(h string) string { return filepath.Join(s.cfg.BinaryDir, h) }

func (s *Server) HasBinary(ctx context.Context, r *rpcpb.BinaryRef) (*rpcpb.HasBinaryReply, error) {
	if !validHash(r.Hash) {
		return nil, status.Errorf(codes.InvalidArgument, "gcs: bad binary hash %q", r.Hash)
	}
	_, err := os.Stat(s.binaryPath(r.Hash))
	return &rpcpb.HasBinaryReply{Found: err == nil}, nil
}

// PutBinary stores an uploaded executable under its SHA-256; the upload is
// refused when the content does not match the announced hash.
func (s *Server) PutBinary(stream rpcpb.GcsService_PutBinaryServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	if !validHash(first.Hash) {
		return status.Errorf(codes.InvalidArgument, "gcs: bad binary hash %q", first.Hash)
	}
	tmp, err := os.CreateTemp(s.cfg.BinaryDir, ".upload-*")
	if err != nil {
		return status.Errorf(codes.Internal, "gcs: store binary: %v", err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	w := io.MultiWriter(tmp, h)
	chunk := first
	for {
		if _, err := w.Write(chunk.Data); err != nil {
			tmp.Close()
			return status.Errorf(codes.ResourceExhausted, "gcs: store binary: %v", err)
		}
		chunk, err = stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			tmp.Close()
			return err
		}
	}
	if err := tmp.Close(); err != nil {
		return status.Errorf(codes.Internal, "gcs: store binary: %v", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != first.Hash {
		return status.Errorf(codes.InvalidArgument, "gcs: binary content hashes to %s, announced %s", got, first.Hash)
	}
	if err := os.Chmod(tmp.Name(), 0o755); err != nil {
		return status.Errorf(codes.Internal, "gcs: store binary: %v", err)
	}
	if err := os.Rename(tmp.Name(), s.binaryPath(first.Hash)); err != nil {
		return status.Errorf(codes.Internal, "gcs: store binary: %v", err)
	}
	return stream.SendAndClose(&rpcpb.Empty{})
}

func (s *Server) GetBinary(r *rpcpb.BinaryRef, stream rpcpb.GcsService_GetBinaryServer) error {
	if !validHash(r.Hash) {
		return status.Errorf(codes.InvalidArgument, "gcs: bad binary hash %q", r.Hash)
	}
	f, err := os.Open(s.binaryPath(r.Hash))
	if err != nil {
		return status.Errorf(codes.NotFound, "gcs: no binary %s", r.Hash)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if serr := stream.Send(&rpcpb.Chunk{Data: buf[:n]}); serr != nil {
				return serr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return status.Errorf(codes.Internal, "gcs: read binary: %v", err)
		}
	}
}
