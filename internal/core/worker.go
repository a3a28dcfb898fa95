// Package core is the core worker linked into every driver and worker:
// task submission over worker leases, the owner's object store, dependency
// resolution, retries, cancellation and task execution.
package core

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/gcs/follow"
	"github.com/goray/goray/proto/rpcpb"
)

// maxMsg bounds one gRPC message; values up to this size travel inline.
const maxMsg = 1 << 30

// Executor runs one registered function on encoded arguments.
type Executor func(ctx context.Context, args [][]byte) ([]byte, error)

// Config configures a core worker.
type Config struct {
	GCSAddress    string
	RayletAddress string
	NodeID        string
	NodeIP        string
	Token         string
	// Worker mode: the ids the raylet gave this process.
	IsWorker bool
	WorkerID string
	JobID    string
	// Functions resolves a registered function name.
	Functions func(name string) (Executor, bool)
	// Actors resolves a registered actor class.
	Actors func(class string) (*ActorClass, bool)
	// LogOutput receives the job's worker output (drivers only).
	LogOutput io.Writer
	// LeaseLinger is how long a lease with no queued task is kept before
	// the worker is returned.
	LeaseLinger time.Duration
	Logger      *slog.Logger
}

// CoreWorker is the runtime of one driver or worker process.
type CoreWorker struct {
	rpcpb.UnimplementedCoreWorkerServer
	cfg     Config
	log     *slog.Logger
	address string
	prefix  string

	taskAddress string
	taskLn      net.Listener
	counter     atomic.Uint64

	gcsConn *grpc.ClientConn
	gcs     rpcpb.GcsServiceClient
	raylet  rpcpb.RayletClient
	server  *grpc.Server

	ctx    context.Context
	cancel context.CancelFunc

	store *memoryStore
	rc    refCounter

	connMu sync.Mutex
	conns  map[string]*grpc.ClientConn

	// mu guards tasks, classes and running.
	mu      sync.Mutex
	tasks   map[string]*task // by return object id
	lineage map[string]*task // finished tasks whose result is in a node store
	classes map[string]*schedClass
	running map[string]context.CancelFunc // tasks executing in this process

	// Task environment of this worker process.
	envMu                  sync.Mutex
	lastGPUs, lastTaskName string

	// The actor this worker hosts, once its constructor ran.
	actorMu          sync.Mutex
	actorID          string
	actorClass       *ActorClass
	actorInst        any
	actorSem         chan struct{} // bounds running methods (max_concurrency)
	actorConcurrency int

	actorsMu        sync.Mutex
	actors          map[string]*actorClient // actors this process calls
	watchActorsOnce sync.Once

	// blocked counts Get/Wait calls that block inside a running task.
	blockMu sync.Mutex
	blocked int
}

// Start serves the core worker's gRPC endpoint on the node IP.
func Start(cfg Config) (*CoreWorker, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.LeaseLinger == 0 {
		cfg.LeaseLinger = 2 * time.Millisecond
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.NodeIP, "0"))
	if err != nil {
		return nil, fmt.Errorf("core: listen on %s: %w", cfg.NodeIP, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cw := &CoreWorker{
		cfg: cfg, log: log.With("component", "core_worker"), address: ln.Addr().String(),
		prefix: newID(6), ctx: ctx, cancel: cancel, store: newMemoryStore(), rc: refCounter{refs: map[string]*refCount{}, holds: map[string][]Ref{}},
		conns: map[string]*grpc.ClientConn{}, tasks: map[string]*task{}, classes: map[string]*schedClass{}, lineage: map[string]*task{},
		running: map[string]context.CancelFunc{}, actors: map[string]*actorClient{},
	}
	if cw.gcsConn, err = cw.dial(cfg.GCSAddress); err != nil {
		cancel()
		ln.Close()
		return nil, err
	}
	cw.gcs = rpcpb.NewGcsServiceClient(cw.gcsConn)
	if cfg.RayletAddress != "" {
		c, err := cw.conn(cfg.RayletAddress)
		if err != nil {
			cw.Stop()
			ln.Close()
			return nil, err
		}
		cw.raylet = rpcpb.NewRayletClient(c)
	}
	tln, err := net.Listen("tcp", net.JoinHostPort(cfg.NodeIP, "0"))
	if err != nil {
		cw.Stop()
		ln.Close()
		return nil, fmt.Errorf("core: listen on %s: %w", cfg.NodeIP, err)
	}
	cw.taskAddress = tln.Addr().String()
	cw.taskLn = tln
	go cw.serveTasks(tln)
	cw.server = grpc.NewServer(append(auth.ServerOptions(cfg.Token), grpc.MaxRecvMsgSize(maxMsg), grpc.MaxSendMsgSize(maxMsg))...)
	rpcpb.RegisterCoreWorkerServer(cw.server, cw)
	go cw.server.Serve(ln)
	go cw.watchNodes()
	if cfg.IsWorker {
		go cw.collectBorrows(5 * time.Second)
	}
	return cw, nil
}

// Address is the host:port of this core worker's endpoint (the owner
// address carried by the refs it creates).
func (cw *CoreWorker) Address() string { return cw.address }

// GCS is the client of the cluster's GCS.
func (cw *CoreWorker) GCS() rpcpb.GcsServiceClient { return cw.gcs }

// NodeID is the node this process runs on.
func (cw *CoreWorker) NodeID() string { return cw.cfg.NodeID }

// Stop ends the core worker; pending calls fail.
func (cw *CoreWorker) Stop() {
	cw.cancel()
	if cw.taskLn != nil {
		cw.taskLn.Close()
	}
	if cw.server != nil {
		cw.server.Stop()
	}
	cw.connMu.Lock()
	for _, c := range cw.conns {
		c.Close()
	}
	cw.conns = map[string]*grpc.ClientConn{}
	cw.connMu.Unlock()
	if cw.gcsConn != nil {
		cw.gcsConn.Close()
	}
}

func (cw *CoreWorker) dial(addr string) (*grpc.ClientConn, error) {
	c, err := grpc.NewClient(addr, append(auth.DialOptions(cw.cfg.Token),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsg), grpc.MaxCallSendMsgSize(maxMsg)))...)
	if err != nil {
		return nil, fmt.Errorf("core: dial %s: %w", addr, err)
	}
	return c, nil
}

// conn returns a cached connection to another component.
func (cw *CoreWorker) conn(addr string) (*grpc.ClientConn, error) {
	cw.connMu.Lock()
	defer cw.connMu.Unlock()
	if c := cw.conns[addr]; c != nil {
		return c, nil
	}
	c, err := cw.dial(addr)
	if err != nil {
		return nil, err
	}
	cw.conns[addr] = c
	return c, nil
}

func (cw *CoreWorker) nextID() string {
	// prefix + 10 hex digits, without fmt: ids are made on every call.
	const hexdig = "0123456789abcdef"
	b := make([]byte, len(cw.prefix)+10)
	copy(b, cw.prefix)
	n := cw.counter.Add(1)
	for i := len(b) - 1; i >= len(cw.prefix); i-- {
		b[i] = hexdig[n&0xf]
		n >>= 4
	}
	return string(b)
}

// ---------------------------------------------------------------- objects

// Ref names an object and its owner.
type Ref struct {
	ID    string `msgpack:"id"`
	Owner string `msgpack:"owner"`
}

// Result is a sealed object as a caller sees it. Data of an object in
// the node's store aliases its shared memory (read-only); Release unmaps
// it once the caller no longer uses Data (values decoded into Go types
// are copies; a []byte result must stay mapped while it is used).
type Result struct {
	Data    []byte
	AppErr  bool
	release func()
}

// Release unmaps a Result that aliases shared memory.
func (r Result) Release() {
	if r.release != nil {
		r.release()
	}
}

// Get waits for an object and returns its encoded value. A system failure
// (cancelled, retries exhausted, infeasible past the deadline) is the error.
func (cw *CoreWorker) Get(ctx context.Context, ref Ref) (Result, error) {
	if cw.ctx.Err() != nil {
		return Result{}, ErrShutdown
	}
	if !cw.readyLocally(ref) {
		defer cw.blockedAfter(blockGrace)()
	}
	return cw.fetch(ctx, ref)
}

func (cw *CoreWorker) readyLocally(ref Ref) bool {
	return ref.Owner == cw.address && cw.store.isReady(ref.ID)
}

func (cw *CoreWorker) fetch(ctx context.Context, ref Ref) (Result, error) {
	var readErr error
	for attempt := 0; ; attempt++ {
		v, err := cw.lookup(ctx, ref, attempt > 0)
		if err != nil && readErr != nil {
			err = fmt.Errorf("%w (reading it failed: %s)", err, status.Convert(readErr).Message())
		}
		if err != nil || !v.plasma {
			return Result{Data: v.data, AppErr: v.appErr}, err
		}
		data, release, err := cw.readPlasma(ctx, ref, v.locations)
		if err == nil {
			return Result{Data: data, release: release}, nil
		}
		readErr = err
		if status.Code(err) != codes.NotFound || attempt >= 3 {
			return Result{}, fmt.Errorf("goray: read object %s: %s", ref.ID, status.Convert(err).Message())
		}
		// Every copy is gone: the owner rebuilds it from lineage.
	}
}

// objectView is an object as its owner describes it: an inline value, or
// the locations of its copies in node object stores.
type objectView struct {
	data      []byte
	appErr    bool
	plasma    bool
	size      int64
	locations []*rpcpb.ObjectLocation
}

// lookup waits for an object at its owner; with lost, the caller found
// no live copy and the owner reconstructs it first.
func (cw *CoreWorker) lookup(ctx context.Context, ref Ref, lost bool) (objectView, error) {
	if ref.Owner == cw.address {
		if lost {
			if err := cw.reconstruct(ref.ID); err != nil {
				return objectView{}, err
			}
		}
		o, ok, err := cw.store.wait(ctx, ref.ID)
		if !ok {
			return objectView{}, fmt.Errorf("%w: %s", ErrObjectUnknown, ref.ID)
		}
		if err != nil {
			return objectView{}, cw.timeoutError(ref, err)
		}
		if o.err != nil {
			return objectView{}, o.err
		}
		return objectView{data: o.data, appErr: o.appErr, plasma: o.plasma, size: o.size, locations: cw.store.locations(ref.ID)}, nil
	}
	c, err := cw.conn(ref.Owner)
	if err != nil {
		return objectView{}, err
	}
	reply, err := rpcpb.NewCoreWorkerClient(c).GetObject(ctx, &rpcpb.GetObjectRequest{ObjectId: ref.ID, Lost: lost})
	if err != nil {
		if ctx.Err() != nil {
			return objectView{}, cw.timeoutError(ref, ctx.Err())
		}
		switch status.Code(err) {
		case codes.NotFound:
			return objectView{}, fmt.Errorf("%w: %s", ErrObjectUnknown, ref.ID)
		case codes.Unavailable:
			return objectView{}, fmt.Errorf("%w: %s (owner %s): %s", ErrOwnerDied, ref.ID, ref.Owner, status.Convert(err).Message())
		case codes.Aborted:
			return objectView{}, errors.New(status.Convert(err).Message())
		}
		return objectView{}, fmt.Errorf("goray: get %s from owner %s: %w", ref.ID, ref.Owner, err)
	}
	return objectView{data: reply.Value, appErr: reply.AppError, plasma: reply.InPlasma, size: reply.Size, locations: reply.Locations}, nil
}

// timeoutError explains why an object is not ready when a Get gives up.
func (cw *CoreWorker) timeoutError(ref Ref, err error) error {
	if !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	cw.mu.Lock()
	t := cw.tasks[ref.ID]
	var msg string
	if t != nil {
		msg = t.class.infeasible
	}
	cw.mu.Unlock()
	if msg != "" {
		return fmt.Errorf("%w: task %s cannot be scheduled: %s", ErrInfeasible, t.spec.Function, msg)
	}
	if t != nil {
		return fmt.Errorf("%w: task %s has not finished", ErrGetTimeout, t.spec.Function)
	}
	return fmt.Errorf("%w: object %s not ready", ErrGetTimeout, ref.ID)
}

// Wait returns once numReturns of refs are ready or ctx ends; ready keeps
// the order of refs.
func (cw *CoreWorker) Wait(ctx context.Context, refs []Ref, numReturns int) (ready []bool, err error) {
	if numReturns > len(refs) || numReturns < 0 {
		return nil, fmt.Errorf("goray: wait for %d of %d refs", numReturns, len(refs))
	}
	ready = make([]bool, len(refs))
	n := 0
	for i, r := range refs {
		if cw.readyLocally(r) {
			ready[i] = true
			n++
		}
	}
	if n >= numReturns {
		return ready, nil
	}
	defer cw.blockedAfter(blockGrace)()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan int, len(refs))
	for i, r := range refs {
		if ready[i] {
			continue
		}
		go func() {
			// Readiness only: Wait does not pull objects to this node.
			if _, err := cw.lookup(wctx, r, false); wctx.Err() == nil || err == nil {
				done <- i
			}
		}()
	}
	for n < numReturns {
		select {
		case i := <-done:
			ready[i] = true
			n++
		case <-ctx.Done():
			return ready, nil
		}
	}
	return ready, nil
}

// GetObject serves an owned object to a borrower, waiting until it is ready.
func (cw *CoreWorker) GetObject(ctx context.Context, req *rpcpb.GetObjectRequest) (*rpcpb.GetObjectReply, error) {
	if req.Lost {
		if err := cw.reconstruct(req.ObjectId); err != nil {
			return nil, status.Error(codes.Aborted, err.Error())
		}
	}
	o, ok, err := cw.store.wait(ctx, req.ObjectId)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "goray: object %s unknown to its owner", req.ObjectId)
	}
	if err != nil {
		return nil, status.FromContextError(err).Err()
	}
	if o.err != nil {
		return nil, status.Error(codes.Aborted, o.err.Error())
	}
	return &rpcpb.GetObjectReply{Value: o.data, AppError: o.appErr, InPlasma: o.plasma, Size: o.size, Locations: cw.store.locations(req.ObjectId)}, nil
}

// blockGrace is how long a Get or Wait inside a task may wait before the
// worker tells its raylet it is blocked; short waits then cost no RPC.
const blockGrace = time.Millisecond

// blockedAfter marks this worker blocked once d has passed, until the
// returned function is called.
func (cw *CoreWorker) blockedAfter(d time.Duration) (done func()) {
	if !cw.cfg.IsWorker {
		return func() {}
	}
	var mu sync.Mutex
	fired, stopped := false, false
	t := time.AfterFunc(d, func() {
		mu.Lock()
		defer mu.Unlock()
		if !stopped {
			fired = true
			cw.setBlocked(true)
		}
	})
	return func() {
		t.Stop()
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		if fired {
			cw.setBlocked(false)
		}
	}
}

// setBlocked tells the raylet this worker waits (or stopped waiting) so
// its CPUs can run other tasks meanwhile. Only workers running a task do.
func (cw *CoreWorker) setBlocked(b bool) {
	if !cw.cfg.IsWorker || cw.raylet == nil {
		return
	}
	cw.blockMu.Lock()
	defer cw.blockMu.Unlock()
	if b {
		cw.blocked++
		if cw.blocked != 1 {
			return
		}
	} else {
		cw.blocked--
		if cw.blocked != 0 {
			return
		}
	}
	ctx, cancel := context.WithTimeout(cw.ctx, 5*time.Second)
	defer cancel()
	cw.raylet.NotifyBlocked(ctx, &rpcpb.WorkerBlocked{WorkerId: cw.cfg.WorkerID, Blocked: b})
}

// ---------------------------------------------------------------- node and log events

// watchNodes fails leases held on nodes the GCS declared dead, so their
// tasks are retried without waiting for TCP to notice.
func (cw *CoreWorker) watchNodes() {
	follow.Follow(cw.ctx, cw.gcs, &rpcpb.SubscribeRequest{Channels: []string{"node"}}, func(m *rpcpb.PubMessage) {
		if n := m.Node; n != nil && n.State == rpcpb.NodeState_DEAD {
			cw.nodeDied(n.NodeId)
		}
	})
}

// PrintLogs subscribes to the job's worker output and writes it to w with
// Ray's prefix "(task pid=N, ip=IP) ". It returns when the worker stops.
func (cw *CoreWorker) PrintLogs(jobID string, w io.Writer) {
	follow.Follow(cw.ctx, cw.gcs, &rpcpb.SubscribeRequest{Channels: []string{"logs"}, JobId: jobID}, func(m *rpcpb.PubMessage) {
		b := m.Logs
		if b == nil {
			return
		}
		prefix := fmt.Sprintf("(pid=%d, ip=%s) ", b.Pid, b.NodeIp)
		if b.TaskName != "" {
			prefix = fmt.Sprintf("(%s pid=%d, ip=%s) ", b.TaskName, b.Pid, b.NodeIp)
		}
		var sb strings.Builder
		for _, l := range b.Lines {
			sb.WriteString(prefix)
			sb.WriteString(l)
			sb.WriteByte('\n')
		}
		io.WriteString(w, sb.String())
	})
}

// ServeWorker registers this worker with its raylet and blocks until the
// raylet goes away (then the worker must exit).
func (cw *CoreWorker) ServeWorker() error {
	stream, err := cw.raylet.RegisterWorker(cw.ctx, &rpcpb.RegisterWorkerRequest{WorkerId: cw.cfg.WorkerID, Address: cw.address, TaskAddress: cw.taskAddress, Pid: int64(os.Getpid())})
	if err != nil {
		return fmt.Errorf("core: register with raylet: %w", err)
	}
	for {
		if _, err := stream.Recv(); err != nil {
			return fmt.Errorf("core: raylet connection lost: %w", err)
		}
	}
}

// SetJob sets the job of a driver once the GCS has assigned it; call it
// before submitting tasks.
func (cw *CoreWorker) SetJob(id string) { cw.cfg.JobID = id }
