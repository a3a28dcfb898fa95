package core

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/internal/scheduler"
	"github.com/goray/goray/proto/rpcpb"
)

func newID(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Arg is one task argument: an encoded value, or a ref resolved before the
// task is pushed (its value is then inlined).
type Arg struct {
	Data []byte
	Ref  *Ref
	// Contained are the refs inside Data; they are kept while the task is
	// pending, like Ref.
	Contained []Ref
}

// TaskOptions are the per-call options of a task (Ray's .options()).
type TaskOptions struct {
	Name           string
	Resources      map[string]float64 // CPU defaults to 1 when absent
	MaxRetries     int                // on worker or node death; -1 = forever
	Strategy       rpcpb.SchedulingStrategy
	AffinityNodeID string
	AffinitySoft   bool
}

// task is one submitted task, owned here. Guarded by CoreWorker.mu.
type task struct {
	returnID  string
	unpin     func() // releases the task's ref arguments
	spec      *rpcpb.TaskSpec
	class     *schedClass
	retries   int
	cancelled bool
	force     bool
	lease     *leaseHandle // set while pushed to a worker
	done      bool
}

// schedClass groups tasks of one scheduling class (function, shape and
// strategy); its leases are reused while tasks of the class queue.
type schedClass struct {
	key        string
	req        *rpcpb.LeaseRequest
	queue      []*task
	requests   int           // lease requests in flight
	waiting    int           // granted leases waiting in next for a task
	idle       chan struct{} // signalled when a task is queued
	leases     map[*leaseHandle]struct{}
	infeasible string // last infeasibility reason reported by a raylet
}

// leaseHandle is one granted worker lease.
type leaseHandle struct {
	nodeID     string
	workerAddr string
	cancel     context.CancelFunc
	stream     rpcpb.Raylet_LeaseClient
}

// maxLeaseRequests bounds concurrent lease requests per scheduling class
// (Ray: max_pending_lease_requests_per_scheduling_category = 10).
const maxLeaseRequests = 10

// SubmitTask submits a task and returns the ref of its result, holding
// one local reference (released with RemoveLocalRef).
func (cw *CoreWorker) SubmitTask(function string, args []Arg, opts TaskOptions) Ref {
	shape, shapeKey := defaultShape, defaultShapeKey
	if len(opts.Resources) > 0 {
		shape = scheduler.Resources{}
		for k, v := range opts.Resources {
			if v != 0 {
				shape[k] = v
			}
		}
		if _, ok := opts.Resources["CPU"]; !ok {
			shape["CPU"] = 1
		}
		shapeKey = shape.Key()
	}
	name := opts.Name
	if name == "" {
		name = function
	}
	t := &task{
		returnID: cw.nextID(),
		retries:  opts.MaxRetries,
		spec:     &rpcpb.TaskSpec{Function: function, OwnerAddress: cw.address, JobId: cw.cfg.JobID, Name: name},
	}
	t.spec.TaskId = t.returnID
	// The caller's handle counts from here, so a result that arrives
	// before the handle exists is kept.
	cw.AddLocalRef(t.returnID)
	args, release, err := cw.promoteArgs(args)
	if err != nil {
		cw.store.seal(t.returnID, nil, false, err)
		return Ref{ID: t.returnID, Owner: cw.address}
	}
	t.unpin = cw.pinArgs(args)
	release()
	// As Ray's SchedulingKey, the class includes the task's ref arguments:
	// tasks over different objects get leases of their own, so a fast
	// first lease does not drain a whole SPREAD batch.
	key := function + "|" + shapeKey
	if opts.Strategy != rpcpb.SchedulingStrategy_DEFAULT {
		key += fmt.Sprintf("|%d|%s|%v", opts.Strategy, opts.AffinityNodeID, opts.AffinitySoft)
	}
	for _, a := range args {
		if a.Ref != nil {
			key += "|" + a.Ref.ID
		}
	}
	cw.store.pending(t.returnID)
	cw.mu.Lock()
	c := cw.classes[key]
	if c == nil {
		c = &schedClass{key: key, idle: make(chan struct{}, 1), leases: map[*leaseHandle]struct{}{}, req: &rpcpb.LeaseRequest{
			JobId: cw.cfg.JobID, Shape: shape, Strategy: opts.Strategy, AffinityNodeId: opts.AffinityNodeID,
			AffinitySoft: opts.AffinitySoft, Function: function,
		}}
		cw.classes[key] = c
	}
	t.class = c
	cw.tasks[t.returnID] = t
	cw.mu.Unlock()

	ref := Ref{ID: t.returnID, Owner: cw.address}
	hasRefs := false
	for _, a := range args {
		if a.Ref != nil {
			hasRefs = true
		}
	}
	if !hasRefs {
		t.spec.Args = make([][]byte, len(args))
		for i, a := range args {
			t.spec.Args[i] = a.Data
		}
		cw.enqueue(t, false)
		return ref
	}
	go cw.resolve(t, args)
	return ref
}

// resolve waits for a task's ref arguments and inlines their values. A
// failed dependency fails the task with the dependency's error.
func (cw *CoreWorker) resolve(t *task, args []Arg) {
	t.spec.Args = make([][]byte, len(args))
	for i, a := range args {
		if a.Ref == nil {
			t.spec.Args[i] = a.Data
			continue
		}
		data, appErr, err := cw.argValue(cw.ctx, *a.Ref)
		if err != nil {
			cw.finish(t, nil, false, err)
			return
		}
		if appErr {
			cw.finish(t, data, true, nil)
			return
		}
		t.spec.Args[i] = data
	}
	cw.enqueue(t, false)
}

// defaultShape is a task's shape when it names no resources (Ray: 1 CPU);
// shared, never modified.
var (
	defaultShape    = scheduler.Resources{"CPU": 1}
	defaultShapeKey = defaultShape.Key()
)

func noRelease() {}

// promoteArgs moves large inline arguments into the node's object store,
// as Ray does for large by-value arguments, so task messages stay small.
// release drops the refs promoteArgs made once the task has pinned them.
func (cw *CoreWorker) promoteArgs(args []Arg) (out []Arg, release func(), err error) {
	out = args
	var made []string
	release = func() {
		for _, id := range made {
			cw.RemoveLocalRef(id)
		}
	}
	large := false
	for _, a := range args {
		large = large || (a.Ref == nil && len(a.Data) > MaxInline)
	}
	if !large {
		return args, noRelease, nil
	}
	for i, a := range args {
		if a.Ref != nil || len(a.Data) <= MaxInline {
			continue
		}
		if len(made) == 0 {
			out = append([]Arg(nil), args...)
		}
		data := a.Data
		ref, err := cw.PutEncoded(cw.ctx, int64(len(data)), writeBytes(data))
		if err != nil {
			release()
			return nil, nil, fmt.Errorf("goray: argument %d (%d bytes): %w", i, len(data), err)
		}
		made = append(made, ref.ID)
		cw.hold(ref.ID, a.Contained)
		out[i] = Arg{Ref: &ref}
	}
	return out, release, nil
}

// enqueue queues a task of its class and makes sure leases are coming.
func (cw *CoreWorker) enqueue(t *task, front bool) {
	cw.mu.Lock()
	c := t.class
	if t.cancelled || t.done {
		cw.mu.Unlock()
		return
	}
	if front {
		c.queue = append([]*task{t}, c.queue...)
	} else {
		c.queue = append(c.queue, t)
	}
	// A lease waiting for work takes the task; only more tasks than
	// waiting leases and lease requests call for another request.
	need := len(c.queue) > c.requests+c.waiting && c.requests < maxLeaseRequests
	if need {
		c.requests++
	}
	cw.mu.Unlock()
	select {
	case c.idle <- struct{}{}:
	default:
	}
	if need {
		go cw.requestLease(c)
	}
}

// next pops the next queued task of a class, waiting up to linger on the
// caller's reusable timer.
func (cw *CoreWorker) next(c *schedClass, timer *time.Timer, linger time.Duration) *task {
	armed := false
	for {
		cw.mu.Lock()
		if len(c.queue) > 0 {
			t := c.queue[0]
			c.queue = c.queue[1:]
			cw.mu.Unlock()
			return t
		}
		c.waiting++
		cw.mu.Unlock()
		if !armed {
			timer.Reset(linger)
			armed = true
		}
		var woke bool
		select {
		case <-c.idle:
			woke = true
		case <-timer.C:
		case <-cw.ctx.Done():
		}
		cw.mu.Lock()
		c.waiting--
		cw.mu.Unlock()
		if !woke {
			return nil
		}
	}
}

// requestLease obtains one worker lease for a class, following spillback,
// and runs the class's queued tasks on it.
func (cw *CoreWorker) requestLease(c *schedClass) {
	defer func() {
		cw.mu.Lock()
		c.requests--
		again := len(c.queue) > c.requests && c.requests < maxLeaseRequests
		if again {
			c.requests++
		}
		cw.pruneLocked(c)
		cw.mu.Unlock()
		if again {
			go cw.requestLease(c)
		}
	}()
	addr := cw.cfg.RayletAddress
	spilled := false
	for attempt := 0; cw.ctx.Err() == nil; attempt++ {
		cw.mu.Lock()
		empty := len(c.queue) == 0
		cw.mu.Unlock()
		if empty {
			return
		}
		next, granted, err := cw.leaseOnce(c, addr, spilled)
		if granted {
			return
		}
		if err != nil {
			cw.log.Debug("lease", "raylet", addr, "err", err)
			// Back to the local raylet, which knows the current view.
			addr, spilled = cw.cfg.RayletAddress, false
			select {
			case <-cw.ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		addr, spilled = next, true
	}
}

// leaseOnce asks one raylet for a lease. It returns the spillback address,
// or granted=true after the lease ran and was returned.
func (cw *CoreWorker) leaseOnce(c *schedClass, addr string, spilled bool) (next string, granted bool, err error) {
	conn, err := cw.conn(addr)
	if err != nil {
		return "", false, err
	}
	ctx, cancel := context.WithCancel(cw.ctx)
	defer cancel()
	stream, err := rpcpb.NewRayletClient(conn).Lease(ctx)
	if err != nil {
		return "", false, err
	}
	req := proto.Clone(c.req).(*rpcpb.LeaseRequest)
	req.Spilled = spilled
	if err := stream.Send(&rpcpb.LeaseClientMessage{Request: req}); err != nil {
		return "", false, err
	}
	for {
		u, err := stream.Recv()
		if err != nil {
			return "", false, err
		}
		switch u.State {
		case rpcpb.LeaseState_INFEASIBLE:
			cw.mu.Lock()
			c.infeasible = u.Message
			cw.mu.Unlock()
		case rpcpb.LeaseState_SPILLBACK:
			return u.SpillbackAddress, false, nil
		case rpcpb.LeaseState_REJECTED:
			cw.failQueued(c, fmt.Errorf("goray: cannot schedule %s: %s", c.req.Function, u.Message))
			return "", true, nil
		case rpcpb.LeaseState_GRANTED:
			cw.mu.Lock()
			c.infeasible = ""
			cw.mu.Unlock()
			cw.runLease(c, &leaseHandle{nodeID: u.NodeId, workerAddr: u.WorkerAddress, cancel: cancel, stream: stream}, u)
			return "", true, nil
		}
	}
}

func (cw *CoreWorker) failQueued(c *schedClass, err error) {
	cw.mu.Lock()
	q := c.queue
	c.queue = nil
	cw.mu.Unlock()
	for _, t := range q {
		cw.finish(t, nil, false, err)
	}
}

// Pipelining: fast tasks are pushed several at a time over one lease, so
// throughput is not bound by one round trip per task; slow tasks go one at
// a time so that queued work can still spread to other leases and nodes.
const (
	maxInFlight     = 64
	fastTaskLatency = time.Millisecond
)

// pruneLocked forgets a class with nothing queued, requested or leased.
// Caller holds cw.mu.
func (cw *CoreWorker) pruneLocked(c *schedClass) {
	if len(c.queue) == 0 && c.requests == 0 && len(c.leases) == 0 && cw.classes[c.key] == c {
		delete(cw.classes, c.key)
	}
}

// runLease pushes the class's tasks to the leased worker until none is
// queued for LeaseLinger, then returns the worker.
func (cw *CoreWorker) runLease(c *schedClass, l *leaseHandle, g *rpcpb.LeaseUpdate) {
	cw.mu.Lock()
	c.leases[l] = struct{}{}
	cw.mu.Unlock()
	defer func() {
		cw.mu.Lock()
		delete(c.leases, l)
		cw.mu.Unlock()
	}()
	ctx, cancel := context.WithCancel(cw.ctx)
	defer cancel()
	push, err := DialTask(ctx, g.WorkerTaskAddress, cw.cfg.Token)
	if err != nil {
		cw.log.Debug("task connection", "worker", g.WorkerTaskAddress, "err", err)
		return
	}
	defer push.Close()
	// Cancelling the lease (node death, force cancel) breaks the connection.
	stop := context.AfterFunc(ctx, push.Close)
	defer stop()
	type sent struct {
		t  *task
		at time.Time
	}
	// mu guards fifo (pushed tasks awaiting replies, in push order) and window.
	var (
		mu       sync.Mutex
		fifo     []sent
		window   = 1
		freed    = make(chan struct{}, 1)
		recvDone = make(chan struct{})
	)
	inFlight := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return len(fifo), window
	}
	// The receiver blocks in Recv and completes tasks in push order; the
	// pusher appends to fifo before each send, so a reply always finds
	// its task there.
	go func() {
		defer close(recvDone)
		for {
			reply, err := push.Recv()
			mu.Lock()
			if err != nil {
				lost := fifo
				fifo = nil
				mu.Unlock()
				cancel()
				for _, s := range lost {
					cw.workerFailed(s.t, err)
				}
				return
			}
			if len(fifo) == 0 {
				mu.Unlock()
				cancel()
				return // a reply for nothing: the worker is confused
			}
			s := fifo[0]
			fifo = fifo[1:]
			if time.Since(s.at) < fastTaskLatency*time.Duration(len(fifo)+1) {
				window = min(window*2, maxInFlight)
			} else {
				window = 1
			}
			mu.Unlock()
			cw.finishReply(s.t, reply)
			select {
			case freed <- struct{}{}:
			default:
			}
		}
	}()
	defer func() {
		cancel() // ends a receiver still waiting
		<-recvDone
	}()
	linger := time.NewTimer(cw.cfg.LeaseLinger)
	defer linger.Stop()
	for ctx.Err() == nil {
		n, w := inFlight()
		if n >= w {
			select {
			case <-freed:
			case <-ctx.Done():
			}
			continue
		}
		t := cw.next(c, linger, cw.cfg.LeaseLinger)
		if t == nil {
			if n, _ = inFlight(); n > 0 {
				select {
				case <-freed:
				case <-ctx.Done():
				}
				continue
			}
			push.CloseSend()
			<-recvDone // the worker closes its end once it saw ours
			l.stream.CloseSend()
			// Wait for the raylet to take the worker back.
			for {
				if _, err := l.stream.Recv(); err != nil {
					return
				}
			}
		}
		cw.mu.Lock()
		if t.cancelled {
			cw.mu.Unlock()
			continue
		}
		t.lease = l
		t.spec.GpuIds = g.GpuIds
		cw.mu.Unlock()
		mu.Lock()
		fifo = append(fifo, sent{t, time.Now()})
		mu.Unlock()
		if err := push.Send(t.spec); err != nil {
			// The receiver sees the broken connection and fails what was sent.
			cancel()
			return
		}
	}
}

// workerFailed handles a task whose worker died or became unreachable:
// retried while retries are left (Ray's max_retries), else failed.
func (cw *CoreWorker) workerFailed(t *task, cause error) {
	cw.mu.Lock()
	t.lease = nil
	if t.cancelled {
		cw.mu.Unlock()
		cw.finish(t, nil, false, fmt.Errorf("%w: %s", ErrTaskCancelled, t.spec.Function))
		return
	}
	retry := t.retries != 0
	if t.retries > 0 {
		t.retries--
	}
	t.spec.Attempt++
	cw.mu.Unlock()
	if errors.Is(cause, io.EOF) {
		cause = errors.New("connection closed")
	}
	if retry {
		cw.log.Debug("retrying task", "function", t.spec.Function, "attempt", t.spec.Attempt, "cause", cause)
		cw.enqueue(t, true)
		return
	}
	cw.finish(t, nil, false, fmt.Errorf("%w while running %s (attempt %d, no retries left): %v", ErrWorkerDied, t.spec.Function, t.spec.Attempt, cause))
}

// finishReply seals a task's result from its worker's reply; a result in
// a node's object store keeps the task as lineage to rebuild it.
func (cw *CoreWorker) finishReply(t *task, reply *rpcpb.TaskReply) {
	if !reply.InPlasma {
		cw.finish(t, reply.Result, reply.AppError, nil)
		return
	}
	cw.mu.Lock()
	if t.done {
		cw.mu.Unlock()
		return
	}
	if t.cancelled {
		cw.mu.Unlock()
		cw.finish(t, nil, false, fmt.Errorf("%w: %s", ErrTaskCancelled, t.spec.Function))
		return
	}
	t.done = true
	t.lease = nil
	delete(cw.tasks, t.returnID)
	keep := cw.referenced(t.returnID)
	if keep {
		cw.lineage[t.returnID] = t
	}
	cw.mu.Unlock()
	t.unpin()
	if !keep { // nobody holds the result any more
		go cw.deleteCopies(t.returnID, map[string]string{reply.NodeId: reply.RayletAddress})
		return
	}
	cw.store.sealPlasma(t.returnID, reply.Size, reply.NodeId, reply.RayletAddress)
}

// finish seals a task's result.
func (cw *CoreWorker) finish(t *task, data []byte, appErr bool, err error) {
	cw.mu.Lock()
	if t.done {
		cw.mu.Unlock()
		return
	}
	if t.cancelled && err == nil {
		data, appErr, err = nil, false, fmt.Errorf("%w: %s", ErrTaskCancelled, t.spec.Function)
	}
	t.done = true
	t.lease = nil
	delete(cw.tasks, t.returnID)
	cw.mu.Unlock()
	t.unpin()
	if cw.referenced(t.returnID) {
		cw.store.seal(t.returnID, data, appErr, err)
	}
}

// nodeDied aborts the leases held on a dead node so their tasks retry.
func (cw *CoreWorker) nodeDied(nodeID string) {
	cw.mu.Lock()
	var dead []*leaseHandle
	for _, c := range cw.classes {
		for l := range c.leases {
			if l.nodeID == nodeID {
				dead = append(dead, l)
			}
		}
	}
	cw.mu.Unlock()
	for _, l := range dead {
		l.cancel()
	}
	cw.store.dropNode(nodeID)
}

// Cancel cancels the task that produces ref (Ray's ray.cancel): a queued
// task is dropped; a running one has its context cancelled, or with force
// its worker killed. Get on the ref then returns ErrTaskCancelled.
func (cw *CoreWorker) Cancel(ref Ref, force bool) error {
	if ref.Owner != cw.address {
		return errors.New("goray: only the owner of a ref can cancel its task")
	}
	cw.mu.Lock()
	t := cw.tasks[ref.ID]
	if t == nil {
		cw.mu.Unlock()
		return nil // finished already, or a Put object
	}
	t.cancelled = true
	t.force = force
	l := t.lease
	c := t.class
	for i, q := range c.queue {
		if q == t {
			c.queue = append(c.queue[:i:i], c.queue[i+1:]...)
			break
		}
	}
	cw.mu.Unlock()
	if l == nil {
		cw.finish(t, nil, false, fmt.Errorf("%w: %s", ErrTaskCancelled, t.spec.Function))
		return nil
	}
	if force {
		l.stream.Send(&rpcpb.LeaseClientMessage{Kill: true})
		return nil
	}
	return cw.cancelRemote(l, t)
}
