package core

import (
	"context"
	"runtime"
	"sync"
	"time"

	"github.com/goray/goray/proto/rpcpb"
)

// Reference counting (Ray's ReferenceCounter, reduced). Every process
// counts the refs it holds. An owned object is freed on every node once
// no handle to it is alive in the owner, no pending task or actor call
// takes it as an argument (directly or inside a value), no object
// containing it lives, and no borrower holds it. A borrower (a process
// that decoded a ref it does not own) registers with the owner before it
// uses the ref and unregisters when it holds it no more. A ref that leaves
// inside a value this process cannot follow (a task result, a value
// encoded outside goray) stays pinned for the owner's lifetime.
type refCount struct {
	owner     string // "" when this process owns the object
	local     int    // live handles in this process
	submitted int    // pending tasks and calls taking it as an argument
	contained int    // live objects of this process whose value holds it
	borrowers int    // registrations by other processes (owned objects)
	pinned    bool   // escaped where it cannot be followed
}

func (r *refCount) unused() bool {
	return r.local <= 0 && r.submitted <= 0 && r.contained <= 0 && r.borrowers <= 0 && !r.pinned
}

type refCounter struct {
	mu   sync.Mutex
	refs map[string]*refCount
	// holds maps an owned object to the refs its value contains.
	holds map[string][]Ref
	// plasmaSinceGC counts bytes put in node stores since the last GC:
	// handles of large objects are small, so the Go heap alone would not
	// run the collector (and the cleanups that free objects) often enough.
	plasmaSinceGC int64
}

// entryLocked returns the count of ref, creating it. Caller holds rc.mu.
func (cw *CoreWorker) entryLocked(ref Ref) (r *refCount, created bool) {
	r = cw.rc.refs[ref.ID]
	if r != nil {
		return r, false
	}
	r = &refCount{}
	if ref.Owner != cw.address {
		r.owner = ref.Owner
	}
	cw.rc.refs[ref.ID] = r
	return r, true
}

// AddLocalRef counts a new handle to an object this process owns.
func (cw *CoreWorker) AddLocalRef(id string) {
	cw.rc.mu.Lock()
	defer cw.rc.mu.Unlock()
	r, _ := cw.entryLocked(Ref{ID: id, Owner: cw.address})
	r.local++
}

// AddBorrowedRef counts a handle to a ref decoded from a value. The first
// one registers this process as a borrower with the owner, before the ref
// can be used, so the owner keeps the object.
func (cw *CoreWorker) AddBorrowedRef(ref Ref) {
	if ref.Owner == cw.address {
		cw.AddLocalRef(ref.ID)
		return
	}
	cw.rc.mu.Lock()
	r, created := cw.entryLocked(ref)
	r.local++
	cw.rc.mu.Unlock()
	if created {
		cw.borrow(ref, true)
	}
}

// borrow registers (or unregisters) this process as a borrower of ref.
func (cw *CoreWorker) borrow(ref Ref, add bool) {
	c, err := cw.conn(ref.Owner)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(cw.ctx, 10*time.Second)
	defer cancel()
	client := rpcpb.NewCoreWorkerClient(c)
	req := &rpcpb.BorrowRequest{ObjectId: ref.ID, Borrower: cw.address}
	if add {
		client.AddBorrower(ctx, req) // an owner that is gone makes Get fail later
	} else {
		client.RemoveBorrower(ctx, req)
	}
}

// RemoveLocalRef drops a handle (called when the handle is collected).
func (cw *CoreWorker) RemoveLocalRef(id string) {
	cw.release(id, func(r *refCount) { r.local-- })
}

// release applies dec to a ref's count and, once the ref is unused, frees
// the object (owned) or unregisters from its owner (borrowed).
func (cw *CoreWorker) release(id string, dec func(*refCount)) {
	cw.rc.mu.Lock()
	r := cw.rc.refs[id]
	if r == nil {
		cw.rc.mu.Unlock()
		return
	}
	dec(r)
	done := r.unused()
	if done {
		delete(cw.rc.refs, id)
	}
	cw.rc.mu.Unlock()
	switch {
	case !done:
	case r.owner == "":
		cw.free(id)
	default:
		go cw.borrow(Ref{ID: id, Owner: r.owner}, false)
	}
}

// Pin keeps a ref for the life of this process: it left inside a value
// whose readers this process cannot follow.
func (cw *CoreWorker) Pin(ref Ref) {
	cw.rc.mu.Lock()
	r, created := cw.entryLocked(ref)
	r.pinned = true
	cw.rc.mu.Unlock()
	if created && r.owner != "" {
		cw.borrow(ref, true)
	}
}

// AddBorrower registers a borrower of an owned object.
func (cw *CoreWorker) AddBorrower(ctx context.Context, req *rpcpb.BorrowRequest) (*rpcpb.Empty, error) {
	cw.rc.mu.Lock()
	if r := cw.rc.refs[req.ObjectId]; r != nil && r.owner == "" {
		r.borrowers++
	}
	cw.rc.mu.Unlock()
	return &rpcpb.Empty{}, nil
}

// RemoveBorrower drops a borrower's registration.
func (cw *CoreWorker) RemoveBorrower(ctx context.Context, req *rpcpb.BorrowRequest) (*rpcpb.Empty, error) {
	cw.release(req.ObjectId, func(r *refCount) {
		if r.owner == "" {
			r.borrowers--
		}
	})
	return &rpcpb.Empty{}, nil
}

// argRefs lists the refs an argument list holds: top-level refs and the
// refs inside encoded values.
func argRefs(args []Arg) []Ref {
	var out []Ref
	for _, a := range args {
		if a.Ref != nil {
			out = append(out, *a.Ref)
		}
		out = append(out, a.Contained...)
	}
	return out
}

// pinArgs counts the refs of a pending task's arguments; the returned
// function releases them when the task is done.
func (cw *CoreWorker) pinArgs(args []Arg) func() {
	var ids []string
	cw.rc.mu.Lock()
	for _, ref := range argRefs(args) {
		if r := cw.rc.refs[ref.ID]; r != nil {
			r.submitted++
			ids = append(ids, ref.ID)
		}
	}
	cw.rc.mu.Unlock()
	if len(ids) == 0 {
		return func() {}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			for _, id := range ids {
				cw.release(id, func(r *refCount) { r.submitted-- })
			}
		})
	}
}

// hold records that owned object id's value contains refs: they live as
// long as it does.
func (cw *CoreWorker) hold(id string, refs []Ref) {
	if len(refs) == 0 {
		return
	}
	cw.rc.mu.Lock()
	defer cw.rc.mu.Unlock()
	var kept []Ref
	for _, ref := range refs {
		if r := cw.rc.refs[ref.ID]; r != nil {
			r.contained++
			kept = append(kept, ref)
		}
	}
	cw.rc.holds[id] = kept
}

// referenced reports whether an owned object still has references; a
// task result nobody holds any more is dropped when it arrives.
func (cw *CoreWorker) referenced(id string) bool {
	cw.rc.mu.Lock()
	defer cw.rc.mu.Unlock()
	return cw.rc.refs[id] != nil
}

// free forgets an owned object, releases the refs its value held, and
// deletes its copies in node stores.
func (cw *CoreWorker) free(id string) {
	o := cw.store.get(id)
	cw.store.free(id)
	cw.mu.Lock()
	delete(cw.lineage, id)
	cw.mu.Unlock()
	cw.rc.mu.Lock()
	held := cw.rc.holds[id]
	delete(cw.rc.holds, id)
	cw.rc.mu.Unlock()
	for _, ref := range held {
		cw.release(ref.ID, func(r *refCount) { r.contained-- })
	}
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

// collectBorrows runs the collector in a worker now and then while it
// holds borrowed refs: an idle worker allocates too little for Go to
// collect on its own, and its dropped handles would keep their objects.
func (cw *CoreWorker) collectBorrows(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-cw.ctx.Done():
			return
		case <-t.C:
		}
		cw.rc.mu.Lock()
		borrowing := false
		for _, r := range cw.rc.refs {
			if r.owner != "" && !r.pinned {
				borrowing = true
				break
			}
		}
		cw.rc.mu.Unlock()
		if borrowing {
			runtime.GC()
		}
	}
}
