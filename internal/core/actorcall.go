package core

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/goray/goray/proto/rpcpb"
)

// actorCall is one method call submitted to an actor by this process.
type actorCall struct {
	returnID string
	unpin    func() // releases the call's ref arguments
	spec     *rpcpb.TaskSpec
	args     []Arg
	resolved bool
	retries  int // max_task_retries left; -1 = unlimited
}

// settle seals a call's result and releases its arguments.
func (c *actorCall) settle(cw *CoreWorker, data []byte, appErr bool, err error) {
	c.unpin()
	cw.store.seal(c.returnID, data, appErr, err)
}

// actorClient sends this process's calls to one actor over a framed task
// connection, in submission order, reconnecting when the actor restarts.
type actorClient struct {
	cw *CoreWorker
	id string

	// mu guards the fields below.
	mu       sync.Mutex
	info     *rpcpb.ActorInfo
	changed  chan struct{}         // closed and replaced when info changes
	pending  []*actorCall          // not yet sent, in order
	inflight map[string]*actorCall // sent, unanswered, by task id
	sent     []*actorCall          // sent this incarnation, in order (answered ones skipped)
	kick     chan struct{}
}

// SubmitActorTask calls a method of an actor and returns the ref of its result.
func (cw *CoreWorker) SubmitActorTask(actorID, method string, args []Arg, name string) Ref {
	id := cw.nextID()
	cw.AddLocalRef(id) // adopted by the caller's handle
	cw.store.pending(id)
	ac := cw.actorClient(actorID)
	args, release, err := cw.promoteArgs(args)
	if err != nil {
		cw.store.seal(id, nil, false, err)
		return Ref{ID: id, Owner: cw.address}
	}
	call := &actorCall{returnID: id, args: args, unpin: cw.pinArgs(args), spec: &rpcpb.TaskSpec{
		TaskId: id, Function: method, ActorId: actorID, OwnerAddress: cw.address, JobId: cw.cfg.JobID, Name: name,
	}}
	release()
	ac.mu.Lock()
	if ac.info != nil && ac.info.State == rpcpb.ActorState_ACTOR_DEAD {
		cause := ac.info.DeathCause
		ac.mu.Unlock()
		call.settle(cw, nil, false, fmt.Errorf("%w: actor %s: %s", ErrActorDied, actorID, cause))
		return Ref{ID: id, Owner: cw.address}
	}
	call.retries = -2 // set from the actor's spec when sent
	ac.pending = append(ac.pending, call)
	ac.mu.Unlock()
	select {
	case ac.kick <- struct{}{}:
	default:
	}
	return Ref{ID: id, Owner: cw.address}
}

func (cw *CoreWorker) actorClient(id string) *actorClient {
	cw.actorsMu.Lock()
	defer cw.actorsMu.Unlock()
	if ac := cw.actors[id]; ac != nil {
		return ac
	}
	cw.watchActorsOnce.Do(func() { go cw.watchActors() })
	ac := &actorClient{cw: cw, id: id, changed: make(chan struct{}), kick: make(chan struct{}, 1), inflight: map[string]*actorCall{}}
	cw.actors[id] = ac
	go ac.run()
	return ac
}

// update records a newer state of the actor.
func (ac *actorClient) update(info *rpcpb.ActorInfo) {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	if ac.info != nil && (ac.info.State == rpcpb.ActorState_ACTOR_DEAD || info.Version <= ac.info.Version) {
		return // dead is final; a reply or event may arrive after a newer one
	}
	ac.info = info
	close(ac.changed)
	ac.changed = make(chan struct{})
}

// refresh reads the actor's state from the GCS.
func (ac *actorClient) refresh() {
	ctx, cancel := context.WithTimeout(ac.cw.ctx, 10*time.Second)
	defer cancel()
	if info, err := ac.cw.ActorState(ctx, ac.id); err == nil {
		ac.update(info)
	}
}

// failAll fails every queued and in-flight call with err.
func (ac *actorClient) failAll(err error) {
	ac.mu.Lock()
	calls := append(ac.unanswered(), ac.pending...)
	ac.inflight, ac.sent, ac.pending = map[string]*actorCall{}, nil, nil
	ac.mu.Unlock()
	for _, c := range calls {
		c.settle(ac.cw, nil, false, err)
	}
}

// run connects to each incarnation of the actor and streams calls to it.
func (ac *actorClient) run() {
	cw := ac.cw
	ac.refresh()
	for cw.ctx.Err() == nil {
		ac.mu.Lock()
		info, changed := ac.info, ac.changed
		ac.mu.Unlock()
		switch {
		case info == nil:
			select { // the GCS is unreachable: retry
			case <-changed:
			case <-cw.ctx.Done():
			case <-time.After(time.Second):
				ac.refresh()
			}
			continue
		case info.State == rpcpb.ActorState_ACTOR_DEAD:
			// Submissions from now on see the DEAD state and fail at once.
			ac.failAll(fmt.Errorf("%w: actor %s (%s): %s", ErrActorDied, ac.id, info.Spec.ClassName, info.DeathCause))
			cw.actorsMu.Lock()
			delete(cw.actors, ac.id)
			cw.actorsMu.Unlock()
			return
		case info.State != rpcpb.ActorState_ACTOR_ALIVE:
			select {
			case <-changed:
			case <-cw.ctx.Done():
			}
			continue
		}
		ac.serve(info, changed)
	}
	ac.failAll(ErrShutdown)
}

// serve streams calls to one incarnation until its connection breaks,
// then settles the calls in flight (resent within max_task_retries).
func (ac *actorClient) serve(info *rpcpb.ActorInfo, changed chan struct{}) {
	cw := ac.cw
	ctx, cancel := context.WithCancel(cw.ctx)
	defer cancel()
	conn, err := DialTask(ctx, info.Address, cw.cfg.Token)
	if err != nil {
		// A stale address: wait for the GCS to publish the next state.
		select {
		case <-changed:
		case <-ctx.Done():
		case <-time.After(time.Second):
			ac.refresh()
		}
		return
	}
	stop := context.AfterFunc(ctx, conn.Close)
	defer stop()
	broken := make(chan struct{})
	go func() {
		defer close(broken)
		defer cancel()
		for {
			reply, err := conn.Recv()
			if err != nil {
				return
			}
			ac.mu.Lock()
			call := ac.inflight[reply.TaskId]
			delete(ac.inflight, reply.TaskId)
			if len(ac.inflight) == 0 {
				ac.sent = ac.sent[:0]
			}
			ac.mu.Unlock()
			if call != nil {
				if reply.InPlasma {
					call.unpin()
					cw.store.sealPlasma(call.returnID, reply.Size, reply.NodeId, reply.RayletAddress)
				} else {
					call.settle(cw, reply.Result, reply.AppError, nil)
				}
			}
		}
	}()
	for ctx.Err() == nil {
		ac.mu.Lock()
		if len(ac.pending) == 0 {
			ac.mu.Unlock()
			if conn.Flush() != nil {
				break
			}
			select {
			case <-ac.kick:
			case <-ctx.Done():
			}
			continue
		}
		call := ac.pending[0]
		ac.mu.Unlock()
		if !call.resolved {
			if err := ac.resolve(ctx, call); err != nil {
				continue
			}
		}
		ac.mu.Lock()
		ac.pending = ac.pending[1:]
		if call.retries == -2 {
			call.retries = int(info.Spec.MaxTaskRetries)
		}
		ac.inflight[call.returnID] = call
		ac.sent = append(ac.sent, call)
		ac.mu.Unlock()
		if err := conn.Buffer(call.spec); err != nil {
			break
		}
	}
	conn.Close()
	<-broken
	if cw.ctx.Err() != nil {
		return
	}
	// The incarnation is gone: learn why, then retry or fail what was sent.
	deadline := time.After(30 * time.Second)
	for {
		ac.mu.Lock()
		cur := ac.info
		ch := ac.changed
		ac.mu.Unlock()
		if cur.State != rpcpb.ActorState_ACTOR_ALIVE || cur.NumRestarts != info.NumRestarts {
			break
		}
		select {
		case <-ch:
			continue
		case <-time.After(time.Second):
			ac.refresh()
			continue
		case <-deadline:
		case <-cw.ctx.Done():
			return
		}
		break
	}
	ac.mu.Lock()
	cause := ac.info.DeathCause
	var retry, failed []*actorCall
	for _, c := range ac.unanswered() {
		if c.retries != 0 {
			if c.retries > 0 {
				c.retries--
			}
			retry = append(retry, c)
		} else {
			failed = append(failed, c)
		}
	}
	ac.inflight, ac.sent = map[string]*actorCall{}, nil
	ac.pending = append(retry, ac.pending...)
	ac.mu.Unlock()
	for _, c := range failed {
		c.settle(cw, nil, false, fmt.Errorf("%w: actor %s (%s) died while running %s: %s", ErrActorDied, ac.id, info.Spec.ClassName, c.spec.Function, cause))
	}
}

// unanswered lists the calls in flight in send order. Caller holds ac.mu.
func (ac *actorClient) unanswered() []*actorCall {
	var out []*actorCall
	for _, c := range ac.sent {
		if ac.inflight[c.returnID] == c {
			out = append(out, c)
		}
	}
	return out
}

// resolve inlines a call's ref arguments; a failed dependency fails the call.
func (ac *actorClient) resolve(ctx context.Context, call *actorCall) error {
	call.spec.Args = make([][]byte, len(call.args))
	for i, a := range call.args {
		if a.Ref == nil {
			call.spec.Args[i] = a.Data
			continue
		}
		data, appErr, err := ac.cw.argValue(ctx, *a.Ref)
		if err == nil && appErr {
			ac.dropPending(call)
			call.settle(ac.cw, data, true, nil)
			return fmt.Errorf("dependency failed")
		}
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			ac.dropPending(call)
			call.settle(ac.cw, nil, false, err)
			return err
		}
		call.spec.Args[i] = data
	}
	call.resolved = true
	return nil
}

func (ac *actorClient) dropPending(call *actorCall) {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	for i, c := range ac.pending {
		if c == call {
			ac.pending = append(ac.pending[:i:i], ac.pending[i+1:]...)
			return
		}
	}
}
