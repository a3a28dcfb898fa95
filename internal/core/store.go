package core

import (
	"context"
	"sync"

	"github.com/goray/goray/proto/rpcpb"
)

// object is one entry of the owner's in-memory object store.
type object struct {
	ready  chan struct{}
	data   []byte
	appErr bool  // data holds an encoded TaskError
	err    error // system failure (retries exhausted, cancelled, ...)
	// A large value lives in node object stores instead of data.
	plasma    bool
	size      int64
	locations map[string]string // node id → raylet address
}

// memoryStore holds the objects this worker owns. Small values and task
// results live here and are served to borrowers by GetObject.
type memoryStore struct {
	mu      sync.Mutex
	objects map[string]*object
}

func newMemoryStore() *memoryStore { return &memoryStore{objects: map[string]*object{}} }

// pending registers an object whose value will come later.
func (s *memoryStore) pending(id string) {
	s.mu.Lock()
	if s.objects[id] == nil {
		s.objects[id] = &object{ready: make(chan struct{})}
	}
	s.mu.Unlock()
}

func (s *memoryStore) get(id string) *object {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.objects[id]
}

// seal sets an object's value (or failure) once; later seals are ignored.
func (s *memoryStore) seal(id string, data []byte, appErr bool, err error) {
	s.sealWith(id, func(o *object) { o.data, o.appErr, o.err = data, appErr, err })
}

// sealWith fills a pending (or new) object with set and makes it ready,
// once.
func (s *memoryStore) sealWith(id string, set func(*object)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.objects[id]
	if o == nil {
		o = &object{ready: make(chan struct{})}
		s.objects[id] = o
	}
	select {
	case <-o.ready:
		return
	default:
	}
	set(o)
	close(o.ready)
}

// wait blocks until the object is sealed or ctx ends. ok is false for an
// object this store does not know.
func (s *memoryStore) wait(ctx context.Context, id string) (o *object, ok bool, err error) {
	o = s.get(id)
	if o == nil {
		return nil, false, nil
	}
	select {
	case <-o.ready:
		return o, true, nil
	case <-ctx.Done():
		return nil, true, ctx.Err()
	}
}

// sealPlasma records an object whose value is in a node's object store.
func (s *memoryStore) sealPlasma(id string, size int64, nodeID, raylet string) {
	s.sealWith(id, func(o *object) { o.plasma, o.size, o.locations = true, size, map[string]string{nodeID: raylet} })
}

// addLocation records another copy of an object.
func (s *memoryStore) addLocation(id, nodeID, raylet string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o := s.objects[id]; o != nil && o.plasma {
		o.locations[nodeID] = raylet
	}
}

func (s *memoryStore) locations(id string) []*rpcpb.ObjectLocation {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.objects[id]
	if o == nil {
		return nil
	}
	out := make([]*rpcpb.ObjectLocation, 0, len(o.locations))
	for n, a := range o.locations {
		out = append(out, &rpcpb.ObjectLocation{NodeId: n, RayletAddress: a})
	}
	return out
}

// dropNode forgets the copies held by a dead node.
func (s *memoryStore) dropNode(nodeID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.objects {
		delete(o.locations, nodeID)
	}
}

// reset replaces a sealed object by a pending one (reconstruction).
func (s *memoryStore) reset(id string) {
	s.mu.Lock()
	s.objects[id] = &object{ready: make(chan struct{})}
	s.mu.Unlock()
}

func (s *memoryStore) isReady(id string) bool {
	o := s.get(id)
	if o == nil {
		return false
	}
	select {
	case <-o.ready:
		return true
	default:
		return false
	}
}

func (s *memoryStore) free(id string) {
	s.mu.Lock()
	delete(s.objects, id)
	s.mu.Unlock()
}
