package core

import (
	"context"
	"sync"
)

// object is one entry of the owner's in-memory object store.
type object struct {
	ready  chan struct{}
	data   []byte
	appErr bool  // data holds an encoded TaskError
	err    error // system failure (retries exhausted, cancelled, ...)
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
	s.mu.Lock()
	o := s.objects[id]
	if o == nil {
		o = &object{ready: make(chan struct{})}
		s.objects[id] = o
	}
	select {
	case <-o.ready:
		s.mu.Unlock()
		return
	default:
	}
	o.data, o.appErr, o.err = data, appErr, err
	close(o.ready)
	s.mu.Unlock()
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
