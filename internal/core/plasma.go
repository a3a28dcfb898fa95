package core

import (
	"context"
	"errors"
	"fmt"

	"io"
	"os"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"google.golang.org/grpc/status"

	"github.com/goray/goray/internal/codec"
	objstore "github.com/goray/goray/internal/object"
	"github.com/goray/goray/proto/rpcpb"
)

// MaxInline is the largest value kept in its owner's memory and sent
// inline (Ray: max_direct_call_object_size, 100 KiB); larger values live
// in node object stores in shared memory.
const MaxInline = 100 << 10

// ErrObjectLost is returned for an object whose every copy is gone and
// that cannot be rebuilt (a Put object, or retries exhausted).
var ErrObjectLost = errors.New("goray: object lost")

// refArgTag starts a task argument that stands for an object in a node
// store: the worker reads the object itself instead of an inlined copy.
// (Encoded values start with codec's tags 0 and 1.)
const refArgTag = 0xFE

func encodeRefArg(ref Ref) []byte {
	b, _ := msgpack.Marshal(ref)
	return append([]byte{refArgTag}, b...)
}

func decodeRefArg(b []byte) (Ref, bool) {
	if len(b) == 0 || b[0] != refArgTag {
		return Ref{}, false
	}
	var r Ref
	return r, msgpack.Unmarshal(b[1:], &r) == nil
}

// writePlasma stores an object in this node's object store; write fills
// its file. Writing through the file descriptor rather than a fresh
// mapping avoids a page fault per 4 KiB page (much slower here).
func (cw *CoreWorker) writePlasma(ctx context.Context, id string, size int64, write func(io.WriterAt) error) error {
	if cw.raylet == nil {
		return errors.New("core: no local raylet for the object store")
	}
	reply, err := cw.raylet.CreateObject(ctx, &rpcpb.CreateObjectRequest{ObjectId: id, Size: size, Primary: true, JobId: cw.cfg.JobID})
	if err != nil {
		return fmt.Errorf("goray: store object of %d bytes: %s", size, status.Convert(err).Message())
	}
	f, err := os.OpenFile(reply.Path, os.O_WRONLY, 0)
	if err == nil {
		err = write(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		cw.raylet.SealObject(ctx, &rpcpb.ObjectRequest{ObjectId: id, Abort: true})
		return fmt.Errorf("goray: write object %s: %w", id, err)
	}
	if _, err := cw.raylet.SealObject(ctx, &rpcpb.ObjectRequest{ObjectId: id}); err != nil {
		return fmt.Errorf("goray: seal object %s: %s", id, status.Convert(err).Message())
	}
	return nil
}

func writeBytes(data []byte) func(io.WriterAt) error {
	return func(w io.WriterAt) error {
		_, err := w.WriteAt(data, 0)
		return err
	}
}

// readPlasma maps an object from this node's store, pulled from one of
// locations when it is not here. The bytes alias shared memory.
func (cw *CoreWorker) readPlasma(ctx context.Context, ref Ref, locations []*rpcpb.ObjectLocation) ([]byte, func(), error) {
	id := ref.ID
	reply, err := cw.raylet.GetLocalObject(ctx, &rpcpb.LocalObjectRequest{ObjectId: id, Locations: locations, JobId: cw.cfg.JobID})
	if err != nil {
		return nil, nil, err
	}
	cw.noteCopy(ref, locations)
	data, unmap, err := objstore.Map(reply.Path, reply.Size)
	if err != nil {
		cw.raylet.ReleaseObject(ctx, &rpcpb.ObjectRequest{ObjectId: id})
		return nil, nil, fmt.Errorf("goray: map object %s: %w", id, err)
	}
	return data, func() {
		unmap()
		// Unpinned, the object's pages may hold the next object.
		go cw.raylet.ReleaseObject(cw.ctx, &rpcpb.ObjectRequest{ObjectId: id})
	}, nil
}

// noteCopy tells the owner that this node now holds a copy, so freeing
// the object deletes it here too.
func (cw *CoreWorker) noteCopy(ref Ref, locations []*rpcpb.ObjectLocation) {
	for _, l := range locations {
		if l.NodeId == cw.cfg.NodeID {
			return
		}
	}
	if ref.Owner == cw.address {
		cw.store.addLocation(ref.ID, cw.cfg.NodeID, cw.cfg.RayletAddress)
		return
	}
	go func() {
		c, err := cw.conn(ref.Owner)
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(cw.ctx, 10*time.Second)
		defer cancel()
		rpcpb.NewCoreWorkerClient(c).AddObjectLocation(ctx, &rpcpb.ObjectLocationUpdate{
			ObjectId: ref.ID, Location: &rpcpb.ObjectLocation{NodeId: cw.cfg.NodeID, RayletAddress: cw.cfg.RayletAddress},
		})
	}()
}

// AddObjectLocation records a copy of an owned object on another node.
func (cw *CoreWorker) AddObjectLocation(ctx context.Context, req *rpcpb.ObjectLocationUpdate) (*rpcpb.Empty, error) {
	if req.Location != nil {
		cw.store.addLocation(req.ObjectId, req.Location.NodeId, req.Location.RayletAddress)
	}
	return &rpcpb.Empty{}, nil
}

// PutEncoded stores an encoded value owned by this worker: inline when
// small, else in the node's object store; contained are the refs inside
// the value, kept while it lives. The returned ref holds one local
// reference, released with RemoveLocalRef.
func (cw *CoreWorker) PutEncoded(ctx context.Context, size int64, write func(io.WriterAt) error, contained ...Ref) (Ref, error) {
	id := cw.nextID()
	cw.AddLocalRef(id) // adopted by the caller's handle
	cw.hold(id, contained)
	if size <= MaxInline {
		data := make([]byte, size)
		if err := write(codec.Buffer(data)); err != nil {
			cw.RemoveLocalRef(id)
			return Ref{}, err
		}
		cw.store.seal(id, data, false, nil)
		return Ref{ID: id, Owner: cw.address}, nil
	}
	if err := cw.writePlasma(ctx, id, size, write); err != nil {
		cw.RemoveLocalRef(id)
		return Ref{}, err
	}
	cw.store.sealPlasma(id, size, cw.cfg.NodeID, cw.cfg.RayletAddress)
	cw.notePlasmaPut(size)
	return Ref{ID: id, Owner: cw.address}, nil
}

// argValue is what a task spec carries for a ref argument: the value
// when small, else a reference the worker reads from its node's store.
func (cw *CoreWorker) argValue(ctx context.Context, ref Ref) (data []byte, appErr bool, err error) {
	v, err := cw.lookup(ctx, ref, false)
	if err != nil {
		return nil, false, err
	}
	if v.plasma {
		return encodeRefArg(ref), false, nil
	}
	return v.data, v.appErr, nil
}

// resolveArgs replaces object-store arguments by their mapped bytes.
func (cw *CoreWorker) resolveArgs(ctx context.Context, args [][]byte) ([][]byte, error) {
	out := args
	copied := false
	for i, a := range args {
		ref, ok := decodeRefArg(a)
		if !ok {
			continue
		}
		if !copied {
			out, copied = append([][]byte(nil), args...), true
		}
		r, err := cw.fetch(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("argument %d: %w", i, err)
		}
		// The mapping stays: the task may keep []byte arguments.
		out[i] = r.Data
	}
	return out, nil
}

// storeResult puts a large task result into this node's store; the reply
// then names its location instead of carrying it.
func (cw *CoreWorker) storeResult(ctx context.Context, spec *rpcpb.TaskSpec, reply *rpcpb.TaskReply) {
	if reply.AppError || len(reply.Result) <= MaxInline {
		return
	}
	data := reply.Result
	if err := cw.writePlasma(ctx, reply.TaskId, int64(len(data)), writeBytes(data)); err != nil {
		te := &TaskError{Function: spec.Function, Message: err.Error(), NodeID: cw.cfg.NodeID, NodeIP: cw.cfg.NodeIP, PID: os.Getpid()}
		reply.Result, reply.AppError = mustEncode(te), true
		return
	}
	reply.Result, reply.InPlasma, reply.Size, reply.RayletAddress = nil, true, int64(len(data)), cw.cfg.RayletAddress
}

// reconstruct re-executes the task that made a lost object (Ray's lineage
// reconstruction) within the task's retry budget.
func (cw *CoreWorker) reconstruct(id string) error {
	cw.mu.Lock()
	if t := cw.tasks[id]; t != nil {
		cw.mu.Unlock()
		return nil // already being rebuilt
	}
	t := cw.lineage[id]
	if t == nil {
		cw.mu.Unlock()
		return fmt.Errorf("%w: %s has no live copy and was not made by a task (Put objects cannot be rebuilt)", ErrObjectLost, id)
	}
	if t.retries == 0 {
		cw.mu.Unlock()
		return fmt.Errorf("%w: %s has no live copy and its task %s has no retries left", ErrObjectLost, id, t.spec.Function)
	}
	if t.retries > 0 {
		t.retries--
	}
	t.done, t.cancelled, t.lease = false, false, nil
	t.spec.Attempt++
	cw.tasks[id] = t
	delete(cw.lineage, id)
	cw.mu.Unlock()
	cw.store.reset(id)
	cw.log.Info("reconstructing lost object", "object", id, "task", t.spec.Function)
	cw.enqueue(t, true)
	return nil
}
