package raylet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/object"
	"github.com/goray/goray/proto/rpcpb"
)

// ChunkSize is the object manager's transfer chunk (Ray: 5 MiB).
const ChunkSize = 5 << 20

// objectManager pulls objects between nodes into this node's store.
// Guarded by its own mutex: pulls run outside the raylet's lock.
type objectManager struct {
	mu      sync.Mutex
	pulling map[string]chan struct{} // one pull per object at a time
	conns   map[string]*grpc.ClientConn
	pulled  int64
	jobOf   map[string]string // object id → its owner's job, to free with the job
}

func storeError(err error) error {
	switch {
	case errors.Is(err, object.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, object.ErrFull):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, object.ErrExists):
		return status.Error(codes.AlreadyExists, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

func (r *Raylet) CreateObject(ctx context.Context, req *rpcpb.CreateObjectRequest) (*rpcpb.CreateObjectReply, error) {
	if req.Size < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "raylet: object size %d", req.Size)
	}
	path, err := r.store.Create(req.ObjectId, req.Size, req.Primary)
	if err != nil {
		return nil, storeError(err)
	}
	r.om.setJob(req.ObjectId, req.JobId)
	return &rpcpb.CreateObjectReply{Path: path}, nil
}

func (r *Raylet) SealObject(ctx context.Context, req *rpcpb.ObjectRequest) (*rpcpb.Empty, error) {
	if req.Abort {
		r.store.Abort(req.ObjectId)
		return &rpcpb.Empty{}, nil
	}
	if err := r.store.Seal(req.ObjectId); err != nil {
		return nil, storeError(err)
	}
	return &rpcpb.Empty{}, nil
}

func (r *Raylet) ReleaseObject(ctx context.Context, req *rpcpb.ObjectRequest) (*rpcpb.Empty, error) {
	r.store.Release(req.ObjectId)
	return &rpcpb.Empty{}, nil
}

func (r *Raylet) DeleteObjects(ctx context.Context, req *rpcpb.DeleteObjectsRequest) (*rpcpb.Empty, error) {
	for _, id := range req.ObjectIds {
		r.store.Delete(id)
		r.om.setJob(id, "")
	}
	return &rpcpb.Empty{}, nil
}

func (om *objectManager) setJob(id, job string) {
	om.mu.Lock()
	defer om.mu.Unlock()
	if job == "" {
		delete(om.jobOf, id)
	} else {
		om.jobOf[id] = job
	}
}

// freeJobObjects deletes the objects of a finished job: their owners are
// gone, so nobody could free them (Ray frees the objects of a dead owner).
func (r *Raylet) freeJobObjects(job string) {
	r.om.mu.Lock()
	var ids []string
	for id, j := range r.om.jobOf {
		if j == job {
			ids = append(ids, id)
			delete(r.om.jobOf, id)
		}
	}
	r.om.mu.Unlock()
	for _, id := range ids {
		r.store.Delete(id)
	}
}

func (r *Raylet) GetObjectStoreStats(ctx context.Context, _ *rpcpb.Empty) (*rpcpb.ObjectStoreStats, error) {
	st := r.store.Stats()
	r.om.mu.Lock()
	pulled := r.om.pulled
	r.om.mu.Unlock()
	out := &rpcpb.ObjectStoreStats{
		NodeId: r.cfg.NodeID, Capacity: st.Capacity, Used: st.Used, NumObjects: int64(st.NumObjects),
		NumSpilled: int64(st.NumSpilled), CreatedBytes: st.CreatedBytes, SpilledBytes: st.SpilledBytes,
		RestoredBytes: st.RestoredBytes, Reads: st.Reads, PulledBytes: pulled,
	}
	for _, o := range st.Objects {
		out.Objects = append(out.Objects, &rpcpb.ObjectStat{ObjectId: o.ID, Size: o.Size, Primary: o.Primary, Spilled: o.Spilled, Reads: o.Reads})
	}
	return out, nil
}

// GetLocalObject returns the file of an object in this node's store,
// pulling it from a node that has it first when it is not here.
func (r *Raylet) GetLocalObject(ctx context.Context, req *rpcpb.LocalObjectRequest) (*rpcpb.LocalObjectReply, error) {
	for {
		path, size, err := r.store.Acquire(req.ObjectId)
		if err == nil {
			return &rpcpb.LocalObjectReply{Path: path, Size: size}, nil
		}
		if !errors.Is(err, object.ErrNotFound) {
			return nil, storeError(err)
		}
		r.om.mu.Lock()
		wait, busy := r.om.pulling[req.ObjectId]
		if !busy {
			wait = make(chan struct{})
			r.om.pulling[req.ObjectId] = wait
		}
		r.om.mu.Unlock()
		if busy {
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		err = r.pull(ctx, req)
		if err == nil {
			r.om.setJob(req.ObjectId, req.JobId)
		}
		r.om.mu.Lock()
		delete(r.om.pulling, req.ObjectId)
		close(wait)
		r.om.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
}

// pull copies an object from the first location that serves it.
func (r *Raylet) pull(ctx context.Context, req *rpcpb.LocalObjectRequest) error {
	var tried []string
	for _, loc := range req.Locations {
		if loc.NodeId == r.cfg.NodeID {
			continue
		}
		err := r.pullFrom(ctx, req.ObjectId, loc.RayletAddress)
		if err == nil {
			return nil
		}
		if status.Code(err) == codes.ResourceExhausted {
			return err
		}
		tried = append(tried, fmt.Sprintf("%s: %s", shortID(loc.NodeId), status.Convert(err).Message()))
	}
	return status.Errorf(codes.NotFound, "raylet: object %s lost: no live copy (tried %s)", req.ObjectId, strings.Join(tried, "; "))
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func (r *Raylet) peer(addr string) (*grpc.ClientConn, error) {
	r.om.mu.Lock()
	defer r.om.mu.Unlock()
	if c := r.om.conns[addr]; c != nil {
		return c, nil
	}
	c, err := grpc.NewClient(addr, append(auth.DialOptions(r.cfg.Token), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(2*ChunkSize)))...)
	if err != nil {
		return nil, err
	}
	r.om.conns[addr] = c
	return c, nil
}

func (r *Raylet) pullFrom(ctx context.Context, id, addr string) error {
	conn, err := r.peer(addr)
	if err != nil {
		return err
	}
	stream, err := rpcpb.NewRayletClient(conn).FetchObject(ctx, &rpcpb.ObjectRequest{ObjectId: id})
	if err != nil {
		return err
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	path, err := r.store.Create(id, first.Size, false)
	if err != nil {
		return storeError(err)
	}
	ok := false
	defer func() {
		if !ok {
			r.store.Abort(id)
		}
	}()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	var got int64
	for c := first; ; {
		if c.Offset < 0 || c.Offset+int64(len(c.Data)) > first.Size {
			return status.Errorf(codes.DataLoss, "raylet: chunk beyond object %s", id)
		}
		if _, err := f.WriteAt(c.Data, c.Offset); err != nil {
			return status.Errorf(codes.ResourceExhausted, "raylet: write object %s: %v", id, err)
		}
		got += int64(len(c.Data))
		if c, err = stream.Recv(); err == io.EOF {
			break
		} else if err != nil {
			return err
		}
	}
	if got != first.Size {
		return status.Errorf(codes.DataLoss, "raylet: object %s: got %d of %d bytes", id, got, first.Size)
	}
	if err := r.store.Seal(id); err != nil {
		return storeError(err)
	}
	ok = true
	r.om.mu.Lock()
	r.om.pulled += got
	r.om.mu.Unlock()
	return nil
}

// FetchObject streams an object of this node's store to a peer in chunks.
func (r *Raylet) FetchObject(req *rpcpb.ObjectRequest, stream rpcpb.Raylet_FetchObjectServer) error {
	path, size, err := r.store.Acquire(req.ObjectId)
	if err != nil {
		return storeError(err)
	}
	defer r.store.Release(req.ObjectId)
	data, unmap, err := object.Map(path, size)
	if err != nil {
		return status.Errorf(codes.Internal, "raylet: map object %s: %v", req.ObjectId, err)
	}
	defer unmap()
	if size == 0 {
		return stream.Send(&rpcpb.ObjectChunk{Size: 0})
	}
	for off := int64(0); off < size; off += ChunkSize {
		end := min(off+ChunkSize, size)
		if err := stream.Send(&rpcpb.ObjectChunk{Size: size, Offset: off, Data: data[off:end]}); err != nil {
			return err
		}
	}
	return nil
}
