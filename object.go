package goray

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/vmihailenco/msgpack/v5"

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
	ErrNotInitialized = core.ErrShutdown
)

// TaskError is the error a remote task returned or the panic it raised,
// with the remote message and stack.
type TaskError = core.TaskError

// ObjectRef is a handle to an immutable value of type T in the cluster:
// a task's future result or a value stored with Put. It can be passed to
// other tasks (as an argument or inside values) and to other processes.
type ObjectRef[T any] struct {
	ref core.Ref
	err error // a submission that failed before reaching the cluster
}

// ID is the object's id.
func (r ObjectRef[T]) ID() string { return r.ref.ID }

func (r ObjectRef[T]) coreRef() core.Ref { return r.ref }
func (r ObjectRef[T]) submitErr() error  { return r.err }

// EncodeMsgpack lets refs travel inside values.
func (r ObjectRef[T]) EncodeMsgpack(enc *msgpack.Encoder) error {
	return enc.EncodeMulti(r.ref.ID, r.ref.Owner)
}

// DecodeMsgpack is the inverse of EncodeMsgpack.
func (r *ObjectRef[T]) DecodeMsgpack(dec *msgpack.Decoder) error {
	return dec.DecodeMulti(&r.ref.ID, &r.ref.Owner)
}

// AnyRef is an ObjectRef of any type, for Wait and Cancel.
type AnyRef interface {
	ID() string
	coreRef() core.Ref
	submitErr() error
}

// Put stores v in the cluster and returns its ref; this process owns it.
func Put[T any](v T) (ObjectRef[T], error) {
	r, err := current()
	if err != nil {
		return ObjectRef[T]{}, err
	}
	size, fill, err := codec.Sized(v)
	if err != nil {
		return ObjectRef[T]{}, err
	}
	ref, err := r.cw.PutEncoded(context.Background(), int64(size), fill)
	if err != nil {
		return ObjectRef[T]{}, err
	}
	return ObjectRef[T]{ref: ref}, nil
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
	if ref.err != nil {
		return zero, ref.err
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
	res, err := r.cw.Get(ctx, ref.ref)
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
	crefs := make([]core.Ref, len(refs))
	for i, ref := range refs {
		crefs[i] = ref.coreRef()
	}
	ok, err := r.cw.Wait(ctx, crefs, numReturns)
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
	return r.cw.Cancel(ref.coreRef(), force)
}
