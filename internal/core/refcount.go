package core

import (
	"context"
	"runtime"
	"sync"
	"time"

	"github.com/goray/goray/proto/rpcpb"
)

// Reference counting of owned objects (Ray's ReferenceCounter, reduced):
// an owned object is freed on every node once no handle to it is alive in
// the owner, no pending task or actor call takes it as an argument, and it
// never escaped inside a value to another process. Refs that escape are
// pinned for the owner's lifetime: the borrower protocol that would let
// them be freed is not implemented.
type refCount struct {
	local     int  // live handles in this process
	submitted int  // pending tasks taking it as an argument
	escaped   bool // serialized into a value another process may hold
}

type refCounter struct {
	mu   sync.Mutex
	refs map[string]*refCount
	// plasmaSinceGC counts bytes put in node stores since the last GC:
	// handles of large objects are small, so the Go heap alone would not
	// run the collector (and the cleanups that free objects) often enough.
	plasmaSinceGC int64
}

// AddLocalRef counts a new handle to an object this process owns.
func (cw *CoreWorker) AddLocalRef(id string) {
	cw.rc.mu.Lock()
	defer cw.rc.mu.Unlock()
	r := cw.rc.refs[id]
	if r == nil {
		r = &refCount{}
		cw.rc.refs[id] = r
	}
	r.local++
}

// RemoveLocalRef drops a handle (called when the handle is collected).
func (cw *CoreWorker) RemoveLocalRef(id string) {
	cw.rc.mu.Lock()
	r := cw.rc.refs[id]
	if r == nil {
		cw.rc.mu.Unlock()
		return
	}
	r.local--
	free := r.local <= 0 && r.submitted <= 0 && !r.escaped
	if free {
		delete(cw.rc.refs, id)
	}
	cw.rc.mu.Unlock()
	if free {
		cw.free(id)
	}
}

// MarkEscaped pins an owned object whose ref was serialized into a value.
func (cw *CoreWorker) MarkEscaped(id string) {
	cw.rc.mu.Lock()
	defer cw.rc.mu.Unlock()
	if r := cw.rc.refs[id]; r != nil {
		r.escaped = true
	}
}

// pinArgs counts owned ref arguments of a pending task; the returned
// function releases them when the task is done.
func (cw *CoreWorker) pinArgs(args []Arg) func() {
	var ids []string
	cw.rc.mu.Lock()
	for _, a := range args {
		if a.Ref != nil && a.Ref.Owner == cw.address {
			if r := cw.rc.refs[a.Ref.ID]; r != nil {
				r.submitted++
				ids = append(ids, a.Ref.ID)
			}
		}
	}
	cw.rc.mu.Unlock()
	if len(ids) == 0 {
		return func() {}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			var freed []string
			cw.rc.mu.Lock()
			for _, id := range ids {
				r := cw.rc.refs[id]
				if r == nil {
					continue
				}
				r.submitted--
				if r.local <= 0 && r.submitted <= 0 && !r.escaped {
					delete(cw.rc.refs, id)
					freed = append(freed, id)
				}
			}
			cw.rc.mu.Unlock()
			for _, id := range freed {
				cw.free(id)
			}
		})
	}
}

// referenced reports whether an owned object still has references; a
// task result nobody holds any more is dropped when it arrives.
func (cw *CoreWorker) referenced(id string) bool {
	cw.rc.mu.Lock()
	defer cw.rc.mu.Unlock()
	return cw.rc.refs[id] != nil
}

// free forgets an owned object and deletes its copies in node stores.
func (cw *CoreWorker) free(id string) {
	o := cw.store.get(id)
	cw.store.free(id)
	cw.mu.Lock()
	delete(cw.lineage, id)
	cw.mu.Unlock()
	if o == nil || !o.plasma {
		return
	}
	select {
	case <-o.ready:
	default:
		return
	}
	cw.store.mu.Lock()
	locs := make(map[string]string, len(o.locations))
	for n, a := range o.locations {
		locs[n] = a
	}
	cw.store.mu.Unlock()
	go cw.deleteCopies(id, locs)
}

func (cw *CoreWorker) deleteCopies(id string, locations map[string]string) {
	for _, addr := range locations {
		c, err := cw.conn(addr)
		if err != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(cw.ctx, 5*time.Second)
		rpcpb.NewRayletClient(c).DeleteObjects(ctx, &rpcpb.DeleteObjectsRequest{ObjectIds: []string{id}})
		cancel()
	}
}

// notePlasmaPut runs the collector after every GiB put in node stores so
// that dropped handles free their objects before the store has to spill.
func (cw *CoreWorker) notePlasmaPut(size int64) {
	cw.rc.mu.Lock()
	cw.rc.plasmaSinceGC += size
	run := cw.rc.plasmaSinceGC >= 1<<30
	if run {
		cw.rc.plasmaSinceGC = 0
	}
	cw.rc.mu.Unlock()
	if run {
		go runtime.GC()
	}
}
