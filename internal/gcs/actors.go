package gcs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/codec"
	"github.com/goray/goray/internal/core"
	"github.com/goray/goray/internal/scheduler"
	"github.com/goray/goray/proto/rpcpb"
)

// The GCS schedules actors as Ray's GcsActorManager does: it leases a
// dedicated worker from a raylet, runs the constructor there, holds the
// lease for the actor's lifetime, and restarts the actor within
// max_restarts when its worker or node dies.

const tableActors = "actors"

// actorEntry is one row of the actor table. Guarded by Server.mu.
type actorEntry struct {
	info *rpcpb.ActorInfo
	kill chan killRequest
	stop context.CancelFunc
}

// killRequest ends an actor's incarnation: for good with noRestart, and
// with cause as its death cause when set.
type killRequest struct {
	noRestart bool
	cause     string
}

func newActorID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func nameKey(ns, name string) string { return ns + "\x00" + name }

func (s *Server) persistActor(info *rpcpb.ActorInfo) {
	b, _ := proto.Marshal(info)
	if err := s.store.Put(tableActors, info.Spec.ActorId, b); err != nil {
		s.log.Error("persist actor", "actor", info.Spec.ActorId, "err", err)
	}
}

// setActor records a new state of an actor and publishes it. Caller holds s.mu.
func (s *Server) setActorLocked(e *actorEntry, mutate func(*rpcpb.ActorInfo)) {
	info := proto.Clone(e.info).(*rpcpb.ActorInfo)
	mutate(info)
	info.Version++
	if info.State == rpcpb.ActorState_ACTOR_DEAD && info.EndTimeMs == 0 {
		info.EndTimeMs = nowMs()
		if info.Spec.Name != "" && s.named[nameKey(info.Spec.Namespace, info.Spec.Name)] == info.Spec.ActorId {
			delete(s.named, nameKey(info.Spec.Namespace, info.Spec.Name))
		}
	}
	e.info = info
	s.persistActor(info)
	s.ps.publish(&rpcpb.PubMessage{Channel: "actor", Actor: info})
}

func (s *Server) CreateActor(ctx context.Context, spec *rpcpb.ActorSpec) (*rpcpb.ActorInfo, error) {
	if spec.ClassName == "" {
		return nil, status.Error(codes.InvalidArgument, "gcs: actor spec needs a class name")
	}
	if spec.MaxConcurrency < 0 || spec.MaxRestarts < -1 || spec.MaxTaskRetries < -1 {
		return nil, status.Errorf(codes.InvalidArgument, "gcs: bad actor options: max_concurrency %d, max_restarts %d, max_task_retries %d", spec.MaxConcurrency, spec.MaxRestarts, spec.MaxTaskRetries)
	}
	spec = proto.Clone(spec).(*rpcpb.ActorSpec)
	if spec.ActorId == "" {
		spec.ActorId = newActorID()
	}
	if spec.MaxConcurrency == 0 {
		spec.MaxConcurrency = 1
	}
	s.mu.Lock()
	j := s.jobs[spec.JobId]
	if j == nil || (j.IsDead && !spec.Detached) {
		s.mu.Unlock()
		return nil, status.Errorf(codes.FailedPrecondition, "gcs: job %q of the actor is not running", spec.JobId)
	}
	if _, dup := s.actors[spec.ActorId]; dup {
		s.mu.Unlock()
		return nil, status.Errorf(codes.AlreadyExists, "gcs: actor %s exists", spec.ActorId)
	}
	if spec.Name != "" {
		if _, taken := s.named[nameKey(spec.Namespace, spec.Name)]; taken {
			s.mu.Unlock()
			return nil, status.Errorf(codes.AlreadyExists, "gcs: the actor name %q is already taken in namespace %q", spec.Name, spec.Namespace)
		}
		s.named[nameKey(spec.Namespace, spec.Name)] = spec.ActorId
	}
	state := rpcpb.ActorState_PENDING_CREATION
	if spec.DependenciesPending {
		state = rpcpb.ActorState_DEPENDENCIES_UNREADY
	}
	e := &actorEntry{kill: make(chan killRequest, 1), info: &rpcpb.ActorInfo{Spec: spec, State: state, StartTimeMs: nowMs()}}
	s.actors[spec.ActorId] = e
	s.setActorLocked(e, func(*rpcpb.ActorInfo) {})
	info := e.info
	if spec.DependenciesPending {
		s.mu.Unlock()
		return info, nil // scheduled once ActorArgsReady brings the arguments
	}
	s.startActorLocked(e)
	s.mu.Unlock()
	return info, nil
}

// ActorArgsReady brings the resolved constructor arguments of an actor
// registered in DEPENDENCIES_UNREADY, which is then scheduled.
func (s *Server) ActorArgsReady(ctx context.Context, req *rpcpb.ActorArgs) (*rpcpb.Empty, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.actors[req.ActorId]
	if e == nil {
		return nil, status.Errorf(codes.NotFound, "gcs: unknown actor %s", req.ActorId)
	}
	if e.info.State != rpcpb.ActorState_DEPENDENCIES_UNREADY {
		return &rpcpb.Empty{}, nil // killed meanwhile, or a repeat
	}
	if req.Error != "" {
		s.setActorLocked(e, func(i *rpcpb.ActorInfo) {
			i.State, i.DeathCause = rpcpb.ActorState_ACTOR_DEAD, "a constructor argument failed: "+req.Error
		})
		return &rpcpb.Empty{}, nil
	}
	s.setActorLocked(e, func(i *rpcpb.ActorInfo) {
		i.State, i.Spec.Args, i.Spec.DependenciesPending = rpcpb.ActorState_PENDING_CREATION, req.Args, false
	})
	s.startActorLocked(e)
	return &rpcpb.Empty{}, nil
}

// startActorLocked runs the actor's lifetime, and watches its owner when
// a worker (not a driver) created it. Caller holds s.mu.
func (s *Server) startActorLocked(e *actorEntry) {
	spec := e.info.Spec
	j := s.jobs[spec.JobId]
	actx, cancel := context.WithCancel(s.ctx)
	e.stop = cancel
	ownedByWorker := !spec.Detached && spec.OwnerAddress != "" && j != nil && spec.OwnerAddress != j.DriverAddress
	go s.runActor(actx, e)
	if ownedByWorker {
		// As in Ray, an actor dies with the worker that created it; a
		// driver's actors end with its job.
		go s.watchOwner(spec.OwnerAddress, func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return e.info.State != rpcpb.ActorState_ACTOR_DEAD
		}, func(error) {
			select {
			case e.kill <- killRequest{true, "the worker that created the actor (its owner) died"}:
			default:
			}
		})
	}
}

func (s *Server) GetActor(ctx context.Context, req *rpcpb.GetActorRequest) (*rpcpb.ActorInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := req.ActorId
	if id == "" {
		id = s.named[nameKey(req.Namespace, req.Name)]
		if id == "" {
			return nil, status.Errorf(codes.NotFound, "gcs: no actor named %q in namespace %q", req.Name, req.Namespace)
		}
	}
	e := s.actors[id]
	if e == nil {
		return nil, status.Errorf(codes.NotFound, "gcs: unknown actor %s", id)
	}
	return e.info, nil
}

func (s *Server) ListActors(ctx context.Context, _ *rpcpb.Empty) (*rpcpb.ActorList, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &rpcpb.ActorList{}
	for _, e := range s.actors {
		out.Actors = append(out.Actors, e.info)
	}
	sort.Slice(out.Actors, func(i, j int) bool { return out.Actors[i].StartTimeMs < out.Actors[j].StartTimeMs })
	return out, nil
}

// KillActor kills an actor's worker, as ray.kill: with no_restart the
// actor is DEAD, otherwise it restarts if it has restarts left.
func (s *Server) KillActor(ctx context.Context, req *rpcpb.KillActorRequest) (*rpcpb.Empty, error) {
	s.mu.Lock()
	e := s.actors[req.ActorId]
	if e != nil && e.info.State == rpcpb.ActorState_DEPENDENCIES_UNREADY {
		// Not scheduled yet: nothing runs that could take the request.
		s.setActorLocked(e, func(i *rpcpb.ActorInfo) {
			i.State, i.DeathCause = rpcpb.ActorState_ACTOR_DEAD, "the actor was killed before its arguments were ready (goray.Kill)"
		})
	}
	s.mu.Unlock()
	if e == nil {
		return nil, status.Errorf(codes.NotFound, "gcs: unknown actor %s", req.ActorId)
	}
	select {
	case e.kill <- killRequest{noRestart: req.NoRestart}:
	default: // a kill is pending already
	}
	return &rpcpb.Empty{}, nil
}

// killJobActors ends the non-detached actors of a finished job.
func (s *Server) killJobActors(jobID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.actors {
		if e.info.Spec.JobId != jobID || e.info.Spec.Detached || e.info.State == rpcpb.ActorState_ACTOR_DEAD {
			continue
		}
		if e.info.State == rpcpb.ActorState_DEPENDENCIES_UNREADY {
			s.setActorLocked(e, func(i *rpcpb.ActorInfo) {
				i.State, i.DeathCause = rpcpb.ActorState_ACTOR_DEAD, "the actor's job finished (its driver exited)"
			})
			continue
		}
		{
			select {
			case e.kill <- killRequest{true, "the actor's job finished (its driver exited)"}:
			default:
			}
		}
	}
}

// restartsLeft reports whether an actor may restart once more.
func restartsLeft(info *rpcpb.ActorInfo) bool {
	return info.Spec.MaxRestarts < 0 || info.NumRestarts < info.Spec.MaxRestarts
}

// runActor drives one actor through its lifetime.
func (s *Server) runActor(ctx context.Context, e *actorEntry) {
	s.mu.Lock()
	spec := e.info.Spec
	s.mu.Unlock()
	dead := func(cause string) {
		s.mu.Lock()
		s.setActorLocked(e, func(i *rpcpb.ActorInfo) {
			i.State, i.DeathCause, i.Address = rpcpb.ActorState_ACTOR_DEAD, cause, ""
		})
		s.mu.Unlock()
		s.log.Info("actor dead", "actor", spec.ActorId, "cause", cause)
	}
	for {
		cause, noRestart := s.runActorOnce(ctx, e, spec)
		if ctx.Err() != nil && cause == "" {
			return // the GCS stops
		}
		s.mu.Lock()
		restart := !noRestart && restartsLeft(e.info)
		if restart {
			s.setActorLocked(e, func(i *rpcpb.ActorInfo) {
				i.State, i.Address, i.DeathCause = rpcpb.ActorState_RESTARTING, "", cause
				i.NumRestarts++
			})
		}
		s.mu.Unlock()
		if !restart {
			dead(cause)
			return
		}
		s.log.Info("actor restarting", "actor", spec.ActorId, "cause", cause)
	}
}

// runActorOnce places the actor, runs its constructor and holds its worker
// until the worker dies or a kill comes. It returns why the incarnation
// ended and whether the actor must not restart.
func (s *Server) runActorOnce(ctx context.Context, e *actorEntry, spec *rpcpb.ActorSpec) (cause string, noRestart bool) {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		grant  *rpcpb.LeaseUpdate
		stream rpcpb.Raylet_LeaseClient
		err    error
	)
	leased := make(chan struct{})
	go func() {
		defer close(leased)
		grant, stream, err = s.leaseActorWorker(lctx, spec)
	}()
	select {
	case <-leased:
	case nr := <-e.kill:
		cancel()
		<-leased
		if nr.cause != "" {
			return nr.cause, nr.noRestart
		}
		return "the actor was killed before it was created (goray.Kill)", nr.noRestart
	}
	if err != nil {
		if ctx.Err() != nil {
			return "", true
		}
		return err.Error(), true
	}
	// Run the constructor on the dedicated worker.
	conn, err := core.DialTask(lctx, grant.WorkerTaskAddress, s.cfg.Token)
	if err != nil {
		return fmt.Sprintf("cannot reach the actor's worker: %v", err), false
	}
	defer conn.Close()
	if err := conn.Send(&rpcpb.TaskSpec{
		TaskId: spec.ActorId + "-create", Function: spec.ClassName, Args: spec.Args, JobId: spec.JobId,
		ActorId: spec.ActorId, ActorCreation: true, MaxConcurrency: spec.MaxConcurrency, GpuIds: grant.GpuIds,
		Name: spec.ClassName + ".__init__",
	}); err != nil {
		return fmt.Sprintf("actor worker died during creation: %v", err), false
	}
	reply, err := conn.Recv()
	if err != nil {
		return fmt.Sprintf("actor worker died during creation: %v", err), false
	}
	if reply.AppError {
		te := &core.TaskError{}
		codec.Decode(reply.Result, te)
		stream.Send(&rpcpb.LeaseClientMessage{Kill: true})
		return "the actor's constructor failed: " + te.Message, true
	}
	s.mu.Lock()
	s.setActorLocked(e, func(i *rpcpb.ActorInfo) {
		i.State, i.Address, i.NodeId, i.Pid, i.WorkerId, i.DeathCause = rpcpb.ActorState_ACTOR_ALIVE, grant.WorkerTaskAddress, grant.NodeId, grant.WorkerPid, grant.WorkerId, ""
	})
	s.mu.Unlock()

	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := stream.Recv(); err != nil {
				ended <- err
				return
			}
		}
	}()
	select {
	case err := <-ended:
		if err == io.EOF {
			err = errors.New("lease ended")
		}
		return fmt.Sprintf("the actor's worker process (pid %d on node %s) died: %s", grant.WorkerPid, shortNode(grant.NodeId), s.nodeDeathCause(grant.NodeId, err)), false
	case nr := <-e.kill:
		stream.Send(&rpcpb.LeaseClientMessage{Kill: true})
		<-ended
		if nr.cause != "" {
			return nr.cause, nr.noRestart
		}
		if nr.noRestart {
			return "the actor was killed by goray.Kill", true
		}
		return "the actor was killed by goray.Kill (restart allowed)", false
	case <-ctx.Done():
		return "", true
	}
}

func shortNode(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// nodeDeathCause explains a broken actor lease: the node's death reason
// when the node is dead, else the stream error.
func (s *Server) nodeDeathCause(nodeID string, err error) string {
	// The health check may lag the broken stream; the node table says the rest.
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.nodes[nodeID]; n != nil && n.info.State == rpcpb.NodeState_DEAD {
		return "its node died: " + n.info.DeathReason
	}
	return status.Convert(err).Message()
}

// leaseActorWorker obtains a dedicated worker for an actor: it asks the
// raylet of the least-utilised node, following spillback.
func (s *Server) leaseActorWorker(ctx context.Context, spec *rpcpb.ActorSpec) (*rpcpb.LeaseUpdate, rpcpb.Raylet_LeaseClient, error) {
	place := map[string]float64{}
	for k, v := range spec.Resources {
		place[k] = v
	}
	hold := map[string]float64{}
	if len(place) == 0 {
		place["CPU"] = 1 // placed with 1 CPU, holds none (Ray's default)
	} else {
		for k, v := range place {
			hold[k] = v
		}
	}
	req := &rpcpb.LeaseRequest{
		JobId: spec.JobId, Shape: place, Hold: hold, Actor: true, Detached: spec.Detached,
		Strategy: spec.Strategy, AffinityNodeId: spec.AffinityNodeId, AffinitySoft: spec.AffinitySoft,
		Function: spec.ClassName,
	}
	for ctx.Err() == nil {
		addr := s.pickRaylet(req)
		spilled := false
		for hop := 0; addr != "" && hop < 8 && ctx.Err() == nil; hop++ {
			r := proto.Clone(req).(*rpcpb.LeaseRequest)
			r.Spilled = spilled
			grant, stream, next, err := s.leaseOnce(ctx, addr, r)
			if grant != nil {
				return grant, stream, nil
			}
			if err != nil {
				var perm permanentError
				if errors.As(err, &perm) {
					return nil, nil, err
				}
				break
			}
			addr, spilled = next, true
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond): // retry backoff after a failed hop
		}
	}
	return nil, nil, ctx.Err()
}

type permanentError struct{ msg string }

func (e permanentError) Error() string { return e.msg }

// pickRaylet chooses the raylet to send an actor's lease request to.
func (s *Server) pickRaylet(req *rpcpb.LeaseRequest) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var nodes []scheduler.Node
	addrs := map[string]string{}
	for _, e := range s.nodes {
		nodes = append(nodes, scheduler.Node{ID: e.info.NodeId, Total: e.info.Total, Available: e.available, Labels: e.info.Labels, Alive: e.info.State == rpcpb.NodeState_ALIVE})
		addrs[e.info.NodeId] = e.info.RayletAddress
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].ID < nodes[j].ID })
	d := s.actorPolicy.Pick(nodes, "", scheduler.Request{Shape: req.Shape})
	if d.NodeID == "" {
		// Infeasible: ask any alive raylet, which reports the demand.
		for _, n := range nodes {
			if n.Alive {
				return addrs[n.ID]
			}
		}
		return ""
	}
	return addrs[d.NodeID]
}

// leaseOnce sends one lease request. It returns the grant and its stream,
// or the spillback address, or an error (permanentError when the raylet
// rejected the request for good).
func (s *Server) leaseOnce(ctx context.Context, addr string, req *rpcpb.LeaseRequest) (*rpcpb.LeaseUpdate, rpcpb.Raylet_LeaseClient, string, error) {
	conn, err := s.rayletConn(addr)
	if err != nil {
		return nil, nil, "", err
	}
	stream, err := rpcpb.NewRayletClient(conn).Lease(ctx)
	if err != nil {
		return nil, nil, "", err
	}
	if err := stream.Send(&rpcpb.LeaseClientMessage{Request: req}); err != nil {
		return nil, nil, "", err
	}
	for {
		u, err := stream.Recv()
		if err != nil {
			return nil, nil, "", err
		}
		switch u.State {
		case rpcpb.LeaseState_GRANTED:
			return u, stream, "", nil
		case rpcpb.LeaseState_SPILLBACK:
			return nil, nil, u.SpillbackAddress, nil
		case rpcpb.LeaseState_REJECTED:
			return nil, nil, "", permanentError{"cannot place the actor: " + u.Message}
		}
	}
}

// rayletConn returns a cached connection to a raylet.
func (s *Server) rayletConn(addr string) (*grpc.ClientConn, error) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if c := s.conns[addr]; c != nil {
		return c, nil
	}
	c, err := grpc.NewClient(addr, append(auth.DialOptions(s.cfg.Token), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		return nil, err
	}
	s.conns[addr] = c
	return c, nil
}
