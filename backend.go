package goray

import (
	"context"
	"fmt"
	"io"
	gort "runtime"
	"time"

	"github.com/goray/goray/internal/client"
	"github.com/goray/goray/internal/core"
)

// backend is what the API calls run on: the process's own core worker
// (drivers with a cluster address, and workers), or a session on the
// head's client server (goray:// addresses, Ray Client).
type backend interface {
	submitTask(function string, args []callArg, o core.TaskOptions) *refHandle
	submitActorTask(actorID, method string, args []callArg) *refHandle
	put(ctx context.Context, size int, write func(io.WriterAt) error, contained []core.Ref) (*refHandle, error)
	get(ctx context.Context, h *refHandle) (core.Result, error)
	wait(ctx context.Context, hs []*refHandle, numReturns int) ([]bool, error)
	cancel(h *refHandle, force bool) error
	createActor(ctx context.Context, class string, args []callArg, o core.ActorOptions) (string, error)
	getActor(ctx context.Context, name, namespace string) (id, class string, err error)
	killActor(ctx context.Context, id string, noRestart bool) error
	// borrow makes a handle of a ref decoded from a value.
	borrow(ref core.Ref) *refHandle
	// pin keeps a ref that left in a value whose readers are unknown.
	pin(ref core.Ref)
	kvPut(ctx context.Context, namespace, key string, value []byte) error
	nodeID() string
}

// callArg is one argument of a call: an encoded value with the refs
// inside it, or the handle of a ref whose value is passed.
type callArg struct {
	data      []byte
	contained []core.Ref
	ref       *refHandle
}

// ------------------------------------------------------------ local

// localBackend runs calls on this process's core worker.
type localBackend struct{ cw *core.CoreWorker }

// handle wraps a ref that holds one local reference of the core worker
// and arranges for the reference to be dropped with the handle.
func (b localBackend) handle(ref core.Ref) *refHandle {
	h := &refHandle{ref: ref}
	cw := b.cw
	gort.AddCleanup(h, func(id string) { cw.RemoveLocalRef(id) }, ref.ID)
	return h
}

func coreArgs(args []callArg) []core.Arg {
	out := make([]core.Arg, len(args))
	for i, a := range args {
		if a.ref != nil {
			ref := a.ref.ref
			out[i] = core.Arg{Ref: &ref}
			continue
		}
		out[i] = core.Arg{Data: a.data, Contained: a.contained}
	}
	return out
}

// keepArgs keeps the handles of ref arguments until the core worker has
// taken its own references (at submission).
func keepArgs(args []callArg) {
	for _, a := range args {
		gort.KeepAlive(a.ref)
	}
}

func (b localBackend) submitTask(function string, args []callArg, o core.TaskOptions) *refHandle {
	h := b.handle(b.cw.SubmitTask(function, coreArgs(args), o))
	keepArgs(args)
	return h
}

func (b localBackend) submitActorTask(actorID, method string, args []callArg) *refHandle {
	h := b.handle(b.cw.SubmitActorTask(actorID, method, coreArgs(args), method))
	keepArgs(args)
	return h
}

func (b localBackend) put(ctx context.Context, size int, write func(io.WriterAt) error, contained []core.Ref) (*refHandle, error) {
	ref, err := b.cw.PutEncoded(ctx, int64(size), write, contained...)
	if err != nil {
		return nil, err
	}
	return b.handle(ref), nil
}

func (b localBackend) get(ctx context.Context, h *refHandle) (core.Result, error) {
	return b.cw.Get(ctx, h.ref)
}

func (b localBackend) wait(ctx context.Context, hs []*refHandle, numReturns int) ([]bool, error) {
	refs := make([]core.Ref, len(hs))
	for i, h := range hs {
		refs[i] = h.ref
	}
	return b.cw.Wait(ctx, refs, numReturns)
}

func (b localBackend) cancel(h *refHandle, force bool) error { return b.cw.Cancel(h.ref, force) }

func (b localBackend) createActor(ctx context.Context, class string, args []callArg, o core.ActorOptions) (string, error) {
	id, err := b.cw.CreateActor(ctx, class, coreArgs(args), o)
	keepArgs(args)
	return id, err
}

func (b localBackend) getActor(ctx context.Context, name, namespace string) (string, string, error) {
	return b.cw.GetActor(ctx, name, namespace)
}

func (b localBackend) killActor(ctx context.Context, id string, noRestart bool) error {
	return b.cw.KillActor(ctx, id, noRestart)
}

func (b localBackend) borrow(ref core.Ref) *refHandle {
	b.cw.AddBorrowedRef(ref)
	return b.handle(ref)
}

func (b localBackend) pin(ref core.Ref) { b.cw.Pin(ref) }

func (b localBackend) kvPut(ctx context.Context, namespace, key string, value []byte) error {
	_, err := b.cw.GCS().KVPut(ctx, kvRequest(namespace, key, value))
	return err
}

func (b localBackend) nodeID() string { return b.cw.NodeID() }

// ------------------------------------------------------------ client

// clientBackend runs calls in a session on the head's client server.
type clientBackend struct{ c *client.Conn }

func (b clientBackend) handle(r *client.RemoteRef) *refHandle {
	h := &refHandle{remote: r}
	c := b.c
	gort.AddCleanup(h, func(n uint64) { c.Release(n) }, r.N)
	return h
}

func clientArgs(args []callArg) []client.Arg {
	out := make([]client.Arg, len(args))
	for i, a := range args {
		if a.ref != nil {
			out[i] = client.Arg{Ref: a.ref.remoteRef()}
			continue
		}
		out[i] = client.Arg{Data: a.data, Contained: a.contained}
	}
	return out
}

func (b clientBackend) submitTask(function string, args []callArg, o core.TaskOptions) *refHandle {
	h := b.handle(b.c.SubmitTask(function, clientArgs(args), o))
	keepArgs(args) // the submission is queued before any release
	return h
}

func (b clientBackend) submitActorTask(actorID, method string, args []callArg) *refHandle {
	h := b.handle(b.c.SubmitActorTask(actorID, method, clientArgs(args)))
	keepArgs(args)
	return h
}

func (b clientBackend) put(ctx context.Context, size int, write func(io.WriterAt) error, contained []core.Ref) (*refHandle, error) {
	var parts partWriter
	if err := write(&parts); err != nil {
		return nil, err
	}
	if parts.size != int64(size) {
		return nil, fmt.Errorf("goray: put of %d bytes wrote %d", size, parts.size)
	}
	r, err := b.c.Put(ctx, parts.parts, contained)
	if err != nil {
		return nil, err
	}
	return b.handle(r), nil
}

// partWriter collects the sequential writes of an encoding without
// copying them: codec.Sized hands over slices it does not reuse (the
// value's own []byte, or a fresh encoding).
type partWriter struct {
	parts [][]byte
	size  int64
}

func (w *partWriter) WriteAt(p []byte, off int64) (int, error) {
	if off != w.size {
		return 0, fmt.Errorf("goray: encoding wrote at %d, expected %d", off, w.size)
	}
	w.parts = append(w.parts, p)
	w.size += int64(len(p))
	return len(p), nil
}

func (b clientBackend) get(ctx context.Context, h *refHandle) (core.Result, error) {
	data, appErr, err := b.c.Get(ctx, h.remoteRef(), 0)
	return core.Result{Data: data, AppErr: appErr}, err
}

func (b clientBackend) wait(ctx context.Context, hs []*refHandle, numReturns int) ([]bool, error) {
	refs := make([]*client.RemoteRef, len(hs))
	for i, h := range hs {
		refs[i] = h.remoteRef()
	}
	return b.c.Wait(ctx, refs, numReturns, 0)
}

func (b clientBackend) cancel(h *refHandle, force bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return b.c.Cancel(ctx, h.remoteRef(), force)
}

func (b clientBackend) createActor(ctx context.Context, class string, args []callArg, o core.ActorOptions) (string, error) {
	id, err := b.c.CreateActor(ctx, class, clientArgs(args), o)
	keepArgs(args)
	return id, err
}

func (b clientBackend) getActor(ctx context.Context, name, namespace string) (string, string, error) {
	return b.c.GetActor(ctx, name, namespace)
}

func (b clientBackend) killActor(ctx context.Context, id string, noRestart bool) error {
	return b.c.KillActor(ctx, id, noRestart)
}

func (b clientBackend) borrow(ref core.Ref) *refHandle { return b.handle(b.c.Adopt(ref)) }

func (b clientBackend) pin(ref core.Ref) { b.c.Pin(ref) }

func (b clientBackend) kvPut(ctx context.Context, namespace, key string, value []byte) error {
	return b.c.KVPut(ctx, namespace, key, value)
}

func (b clientBackend) nodeID() string { return b.c.NodeID }
