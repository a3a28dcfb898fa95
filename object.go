package goray

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	gort "runtime"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/goray/goray/internal/client"
	"github.com/goray/goray/internal/codec"
	"github.com/goray/goray/internal/core"
)

// Errors a Get, Wait or Cancel can return; test with errors.Is. A task's
// own error or panic comes back as a *TaskError.
var (
	ErrTaskCancelled  = core.ErrTaskCancelled
	ErrGetTimeout     = core.ErrGetTimeout
	ErrWorkerDied     = core.ErrWorkerDied
	ErrOwnerDied      = core.ErrOwnerDied
	ErrObjectUnknown  = core.ErrObjectUnknown
	ErrInfeasible     = core.ErrInfeasible
	ErrObjectLost     = core.ErrObjectLost
	ErrNotInitialized = core.ErrShutdown
	// ErrClientSessionLost: a Ray Client connection (goray://) broke and
	// did not come back within the reconnect grace period, so the cluster
	// released the session's objects and actors; every later call fails.
	ErrClientSessionLost = client.ErrSessionLost
)

// TaskError is the error a remote task returned or the panic it raised,
// with the remote message and stack.
type TaskError = core.TaskError

// ObjectRef is a handle to an immutable value of type T in the cluster:
// a task's future result or a value stored with Put. It can be passed to
// other tasks (as an argument or inside values) and to other processes.
type ObjectRef[T any] struct {
	h   *refHandle
	err error // a submission that failed before reaching the cluster
}

// refHandle is shared by the copies of one ObjectRef; when the last copy
// is unreachable the collector's cleanup drops the owner's reference, and
// an object without references is freed on every node.
type refHandle struct {
	ref    core.Ref          // a ref of this process's core worker
	remote *client.RemoteRef // or, with Ray Client, a ref of the session
}

func (h *refHandle) remoteRef() *client.RemoteRef {
	if h.remote == nil {
		return &client.RemoteRef{} // not a ref of the session: unknown there
	}
	return h.remote
}

func (r ObjectRef[T]) coreRef() core.Ref {
	switch {
	case r.h == nil:
		return core.Ref{}
	case r.h.remote != nil:
		ref, _ := r.h.remote.Ref()
		return ref
	}
	return r.h.ref
}

// ID is the object's id.
func (r ObjectRef[T]) ID() string { return r.coreRef().ID }

func (r ObjectRef[T]) submitErr() error {
	if r.err == nil && r.h == nil {
		return errors.New("goray: empty ObjectRef")
	}
	return r.err
}

// EncodeMsgpack lets refs travel inside values. Inside task arguments and
// Put values the ref is kept as long as they are; anywhere else (a task's
// result, a value encoded by other code) it stays pinned.
func (r ObjectRef[T]) EncodeMsgpack(enc *msgpack.Encoder) error {
	ref := r.coreRef()
	if !codec.Track(enc, ref) {
		if rt, err := current(); err == nil {
			rt.be.pin(ref)
		}
	}
	return enc.EncodeMulti(ref.ID, ref.Owner)
}

// DecodeMsgpack is the inverse of EncodeMsgpack; a process decoding a ref
// it does not own becomes its borrower until the handle is collected.
func (r *ObjectRef[T]) DecodeMsgpack(dec *msgpack.Decoder) error {
	var ref core.Ref
	if err := dec.DecodeMulti(&ref.ID, &ref.Owner); err != nil {
		return err
	}
	rt, err := current()
	if err != nil {
		r.h = &refHandle{ref: ref}
		return nil
	}
	*r = ObjectRef[T]{h: rt.be.borrow(ref)}
	return nil
}

// trackedRefs picks the refs out of what an encoding tracked.
func trackedRefs(tracked []any) []core.Ref {
	var out []core.Ref
	for _, x := range tracked {
		if ref, ok := x.(core.Ref); ok {
			out = append(out, ref)
		}
	}
	return out
}

// AnyRef is an ObjectRef of any type, for Wait and Cancel.
type AnyRef interface {
	ID() string
	coreRef() core.Ref
	handle() *refHandle
	submitErr() error
}

func (r ObjectRef[T]) handle() *refHandle { return r.h }

// Put stores v in the cluster and returns its ref; this process owns it.
func Put[T any](v T) (ObjectRef[T], error) {
	r, err := current()
	if err != nil {
		return ObjectRef[T]{}, err
	}
	size, write, tracked, err := codec.Sized(v)
	if err != nil {
		return ObjectRef[T]{}, err
	}
	h, err := r.be.put(context.Background(), size, write, trackedRefs(tracked))
	if err != nil {
		return ObjectRef[T]{}, err
	}
	return ObjectRef[T]{h: h}, nil
}

// GetOption configures Get.
type GetOption func(*getConfig)

type getConfig struct{ timeout time.Duration }

// Timeout bounds how long Get waits; past it Get fails with ErrGetTimeout
// (or ErrInfeasible when no node can ever run the task).
func Timeout(d time.Duration) GetOption { return func(c *getConfig) { c.timeout = d } }

// Get waits for the value of ref. It returns the task's error as a
// *TaskError, or a system error (cancelled, worker died with no retries
// left, timeout, infeasible).
func Get[T any](ctx context.Context, ref ObjectRef[T], opts ...GetOption) (T, error) {
	var zero T
	if err := ref.submitErr(); err != nil {
		return zero, err
	}
	r, err := current()
	if err != nil {
		return zero, err
	}
	var cfg getConfig
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.timeout)
		defer cancel()
	}
	res, err := r.be.get(ctx, ref.h)
	gort.KeepAlive(ref.h) // the object must not be freed while it is read
	if err != nil {
		return zero, err
	}
	if res.AppErr {
		te := &TaskError{}
		if err := codec.Decode(res.Data, te); err != nil {
			return zero, fmt.Errorf("goray: undecodable task error: %w", err)
		}
		return zero, te
	}
	var v T
	err = codec.Decode(res.Data, &v)
	// A []byte result aliases the object store's shared memory (read-only)
	// and keeps it mapped; other types are decoded copies.
	if !aliasesBytes[T]() {
		res.Release()
	}
	if err != nil {
		return zero, err
	}
	return v, nil
}

func aliasesBytes[T any]() bool {
	t := reflect.TypeFor[T]()
	return t.Kind() == reflect.Interface || (t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8)
}

// Wait returns once numReturns of refs are ready or timeout passes (0 =
// no limit), like ray.wait: ready and notReady keep the order of refs.
func Wait(ctx context.Context, refs []AnyRef, numReturns int, timeout time.Duration) (ready, notReady []AnyRef, err error) {
	r, err := current()
	if err != nil {
		return nil, nil, err
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	hs := make([]*refHandle, len(refs))
	for i, ref := range refs {
		if err := ref.submitErr(); err != nil {
			return nil, nil, err
		}
		hs[i] = ref.handle()
	}
	ok, err := r.be.wait(ctx, hs, numReturns)
	if err != nil {
		return nil, nil, err
	}
	for i, ref := range refs {
		if ok[i] {
			ready = append(ready, ref)
		} else {
			notReady = append(notReady, ref)
		}
	}
	return ready, notReady, nil
}

// Cancel cancels the task that produces ref, like ray.cancel: a queued
// task never runs; a running one has its context cancelled, or with force
// its worker process killed. Get on ref then returns ErrTaskCancelled.
// Only the ref's owner can cancel.
func Cancel(ref AnyRef, force bool) error {
	r, err := current()
	if err != nil {
		return err
	}
	if ref.submitErr() != nil {
		return errors.New("goray: the task was never submitted")
	}
	return r.be.cancel(ref.handle(), force)
}
