// Package object is a node's object store, the equivalent of Ray's plasma
// store. It runs inside the raylet. Each object is one file in a
// shared-memory directory (tmpfs, e.g. /dev/shm/goray-<node>), which workers
// on the node map read-only with Map, so reads are zero-copy.
//
// When memory use passes a threshold, sealed primary copies are spilled to
// a disk directory and restored on Get. Secondary copies (ones pulled from
// other nodes) are evicted instead, since another node still has them.
//
// Memory files are only ever unlinked, never truncated or rewritten in
// place: a reader's mapping of an unlinked tmpfs file stays valid until it
// is unmapped, so deleting or spilling an object never makes a reader
// SIGBUS.
package object

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"golang.org/x/sys/unix"
)

var (
	// ErrFull means an object does not fit even after spilling and
	// evicting what could be. Errors wrapping it give the sizes involved.
	ErrFull = errors.New("object store: full")
	// ErrNotFound means the id is unknown, or the object is not sealed.
	ErrNotFound = errors.New("object store: object not found")
	// ErrExists means Create was given an id the store already holds.
	ErrExists = errors.New("object store: object exists")

	errClosed = errors.New("object store: closed")
)

// DefaultSpillThreshold is Ray's object_spilling_threshold.
const DefaultSpillThreshold = 0.8

// Config configures a Store.
type Config struct {
	// Dir is the shared-memory directory of this node's objects. It is
	// created; files left in it by an earlier run are removed at Open.
	Dir string
	// SpillDir is where primary copies spill. It is created; leftover
	// spill files are removed at Open.
	SpillDir string
	// Capacity is the most bytes of objects held in Dir at once
	// (--object-store-memory).
	Capacity int64
	// SpillThreshold is the fraction of Capacity past which sealed
	// objects are spilled or evicted to make room; 0 means 0.8.
	SpillThreshold float64
}

// Stats is a snapshot of a Store.
type Stats struct {
	Capacity, Used int64 // bytes in memory (reserved or sealed)
	NumObjects     int   // sealed + unsealed, in memory or spilled
	NumSpilled     int   // currently spilled
	CreatedBytes   int64 // total bytes ever created here (each Create: one copy into the store)
	SpilledBytes   int64 // total ever spilled
	RestoredBytes  int64 // total ever restored
	Reads          int64 // Get calls that returned an object
	Objects        []ObjectStat
}

// ObjectStat describes one object. Stats.Objects lists them largest first.
type ObjectStat struct {
	ID                       string
	Size                     int64
	Primary, Spilled, Sealed bool
	Reads                    int64
}

type entry struct {
	id      string
	size    int64
	primary bool
	sealed  bool
	spilled bool
	reads   int64
	lastUse uint64 // Store.clock at the last Create, Seal or Get
	pins    int    // readers that mapped it through Acquire and did not Release
}

// pooled is the file of a freed object that no reader maps, kept to hold
// the next object: its pages are already allocated and touched, and
// filling warm pages is an order of magnitude faster than faulting fresh
// ones in (Ray's plasma reuses its arena for the same reason).
type pooled struct {
	path string
	size int64
}

// Store is a node's object store. It is safe for concurrent use.
//
// One mutex guards everything, including the file copies of spill and
// restore: those happen only when the store is near full, and keeping them
// under the lock means no object is ever half spilled while another
// goroutine looks at it.
type Store struct {
	dir, spillDir string
	capacity      int64
	spillAt       int64 // bytes of Used past which Create makes room

	mu      sync.Mutex
	objs    map[string]*entry // nil once closed
	pool    []pooled          // oldest first; their bytes count in used
	poolSeq int
	used    int64
	clock   uint64
	created int64
	spilled int64
	restore int64
	reads   int64
}

// Open creates cfg.Dir and cfg.SpillDir if needed and empties them of
// anything an earlier run left behind.
func Open(cfg Config) (*Store, error) {
	if cfg.Dir == "" || cfg.SpillDir == "" {
		return nil, errors.New("object store: Dir and SpillDir are required")
	}
	if cfg.Capacity <= 0 {
		return nil, fmt.Errorf("object store: capacity %d must be positive", cfg.Capacity)
	}
	th := cfg.SpillThreshold
	if th == 0 {
		th = DefaultSpillThreshold
	}
	if th < 0 || th > 1 {
		return nil, fmt.Errorf("object store: spill threshold %v not in (0, 1]", th)
	}
	for _, d := range []string{cfg.Dir, cfg.SpillDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("object store: %w", err)
		}
		if err := emptyDir(d); err != nil {
			return nil, fmt.Errorf("object store: removing leftovers: %w", err)
		}
	}
	return &Store{
		dir:      cfg.Dir,
		spillDir: cfg.SpillDir,
		capacity: cfg.Capacity,
		spillAt:  int64(th * float64(cfg.Capacity)),
		objs:     make(map[string]*entry),
	}, nil
}

func emptyDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
	}
	return errors.Join(errs...)
}

// checkID refuses ids that are not safe as file names. Ids never contain
// '.', so the store's temporary files (id.tmp) cannot collide with objects.
func checkID(id string) error {
	if id == "" {
		return errors.New("object store: empty object id")
	}
	for _, c := range []byte(id) {
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_', c == '-':
		default:
			return fmt.Errorf("object store: invalid object id %q: want only [0-9a-zA-Z_-]", id)
		}
	}
	return nil
}

func (s *Store) memPath(id string) string   { return filepath.Join(s.dir, id) }
func (s *Store) spillPath(id string) string { return filepath.Join(s.spillDir, id) }

// Create reserves size bytes for a new object and creates its file at the
// returned path, preallocated so that a full tmpfs fails here with ErrFull
// rather than with SIGBUS when the writer touches the pages. The caller
// writes the file and then calls Seal or Abort.
//
// When Used+size would pass the spill threshold, Create first evicts sealed
// secondary copies and then spills sealed primary copies, least recently
// used first. If the object still does not fit within Capacity it returns
// an error wrapping ErrFull (and the spill error, if a spill failed) and
// creates nothing. An id already held gives ErrExists.
func (s *Store) Create(id string, size int64, primary bool) (string, error) {
	if err := checkID(id); err != nil {
		return "", err
	}
	if size < 0 {
		return "", fmt.Errorf("object store: object %s: negative size %d", id, size)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.objs == nil {
		return "", errClosed
	}
	if _, ok := s.objs[id]; ok {
		return "", fmt.Errorf("%w: %s", ErrExists, id)
	}
	p := s.memPath(id)
	if s.reuseLocked(p, size) {
		s.clock++
		s.objs[id] = &entry{id: id, size: size, primary: primary, lastUse: s.clock}
		s.used += size
		s.created += size
		return p, nil
	}
	if err := s.makeRoom(size); err != nil {
		return "", err
	}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", fmt.Errorf("object store: creating %s: %w", id, err)
	}
	err = preallocate(f, size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(p)
		return "", s.memErr(id, size, err)
	}
	s.clock++
	s.objs[id] = &entry{id: id, size: size, primary: primary, lastUse: s.clock}
	s.used += size
	s.created += size
	return p, nil
}

// Seal makes a created object readable. It fails with ErrNotFound for an
// unknown id and with an error if the object is already sealed.
func (s *Store) Seal(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.objs[id]
	if !ok {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if e.sealed {
		return fmt.Errorf("object store: object %s already sealed", id)
	}
	e.sealed = true
	s.clock++
	e.lastUse = s.clock
	return nil
}

// Abort removes an unsealed object and frees its reservation. It does
// nothing for unknown or sealed objects.
func (s *Store) Abort(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.objs[id]
	if !ok || e.sealed {
		return
	}
	os.Remove(s.memPath(id))
	s.used -= e.size
	delete(s.objs, id)
}

// Get returns the path and size in bytes of a sealed object's memory file,
// restoring it from the spill directory first if it was spilled (making
// room as Create does, so it may fail with ErrFull). It fails with
// ErrNotFound for unknown or unsealed objects.
//
// The path is valid until the object is spilled, evicted or deleted, so
// map it promptly; a mapping outlives all three. If Map finds the file gone
// (fs.ErrNotExist), call Get again.
func (s *Store) Get(id string) (string, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.objs[id]
	if !ok {
		return "", 0, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if !e.sealed {
		return "", 0, fmt.Errorf("%w: %s is not sealed", ErrNotFound, id)
	}
	if e.spilled {
		if err := s.restoreLocked(e); err != nil {
			return "", 0, err
		}
	}
	s.clock++
	e.lastUse = s.clock
	e.reads++
	s.reads++
	return s.memPath(id), e.size, nil
}

// Contains reports whether id is a sealed object, in memory or spilled.
func (s *Store) Contains(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.objs[id]
	return ok && e.sealed
}

// Delete frees an object, sealed or not: it unlinks its memory file and
// removes its spill file. Existing mappings stay readable. It returns
// ErrNotFound for an unknown id.
func (s *Store) Delete(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.objs[id]
	if !ok {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	delete(s.objs, id)
	if e.spilled {
		return removeFile(s.spillPath(id))
	}
	s.used -= e.size
	if e.pins == 0 && e.sealed && e.size >= minPooled {
		return s.recycleLocked(id, e.size)
	}
	return removeFile(s.memPath(id))
}

// minPooled is the smallest object whose file is kept for reuse; small
// files are cheap to create.
const minPooled = 1 << 20

// Acquire is Get for a reader that maps the object: the object's file is
// not reused for another object until the reader calls Release. A reader
// that never releases (it keeps the bytes) only costs the reuse.
func (s *Store) Acquire(id string) (string, int64, error) {
	p, size, err := s.Get(id)
	if err == nil {
		s.mu.Lock()
		if e := s.objs[id]; e != nil {
			e.pins++
		}
		s.mu.Unlock()
	}
	return p, size, err
}

// Release ends a reader's use of an object mapped through Acquire.
func (s *Store) Release(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.objs[id]; e != nil && e.pins > 0 {
		e.pins--
	}
}

// recycleLocked moves a freed object's file into the pool, dropping the
// oldest pooled files past a quarter of the capacity. s.mu is held.
func (s *Store) recycleLocked(id string, size int64) error {
	s.poolSeq++
	p := filepath.Join(s.dir, fmt.Sprintf(".pool-%d", s.poolSeq))
	if err := os.Rename(s.memPath(id), p); err != nil {
		return removeFile(s.memPath(id))
	}
	s.pool = append(s.pool, pooled{p, size})
	s.used += size
	for s.poolBytes() > s.capacity/4 {
		s.dropPooledLocked()
	}
	return nil
}

func (s *Store) poolBytes() int64 {
	var n int64
	for _, f := range s.pool {
		n += f.size
	}
	return n
}

func (s *Store) dropPooledLocked() {
	f := s.pool[0]
	s.pool = s.pool[1:]
	os.Remove(f.path)
	s.used -= f.size
}

// reuseLocked gives path the pooled file that fits size best (no more
// than twice as large), trimmed to size. s.mu is held.
func (s *Store) reuseLocked(path string, size int64) bool {
	best := -1
	for i, f := range s.pool {
		if f.size >= size && f.size <= 2*size && (best < 0 || f.size < s.pool[best].size) {
			best = i
		}
	}
	if best < 0 {
		return false
	}
	f := s.pool[best]
	s.pool = append(s.pool[:best:best], s.pool[best+1:]...)
	s.used -= f.size
	if os.Truncate(f.path, size) != nil || os.Rename(f.path, path) != nil {
		os.Remove(f.path)
		return false
	}
	return true
}

// NumPrimary counts the primary copies the store holds, in memory or
// spilled; a node holding any is not idle (Ray's idle rule).
func (s *Store) NumPrimary() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.objs {
		if e.primary {
			n++
		}
	}
	return n
}

// Stats returns a snapshot of the store's usage and counters.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{
		Capacity:      s.capacity,
		Used:          s.used,
		NumObjects:    len(s.objs),
		CreatedBytes:  s.created,
		SpilledBytes:  s.spilled,
		RestoredBytes: s.restore,
		Reads:         s.reads,
		Objects:       make([]ObjectStat, 0, len(s.objs)),
	}
	for _, e := range s.objs {
		if e.spilled {
			st.NumSpilled++
		}
		st.Objects = append(st.Objects, ObjectStat{
			ID: e.id, Size: e.size, Primary: e.primary,
			Spilled: e.spilled, Sealed: e.sealed, Reads: e.reads,
		})
	}
	slices.SortFunc(st.Objects, func(a, b ObjectStat) int {
		return cmp.Or(cmp.Compare(b.Size, a.Size), cmp.Compare(a.ID, b.ID))
	})
	return st
}

// Close removes every file of the store, in memory and spilled. Later calls
// fail.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for id, e := range s.objs {
		if e.spilled {
			errs = append(errs, removeFile(s.spillPath(id)))
		} else {
			errs = append(errs, removeFile(s.memPath(id)))
		}
	}
	for len(s.pool) > 0 {
		s.dropPooledLocked()
	}
	s.objs = nil
	s.used = 0
	return errors.Join(errs...)
}

// makeRoom evicts and spills sealed objects until need more bytes fit under
// the spill threshold, or nothing more can go; it fails with ErrFull if need
// does not fit within capacity. s.mu is held.
func (s *Store) makeRoom(need int64) error {
	if need > s.capacity {
		return fmt.Errorf("%w: need %d bytes, capacity %d", ErrFull, need, s.capacity)
	}
	for s.used+need > s.spillAt && len(s.pool) > 0 {
		s.dropPooledLocked()
	}
	var spillErr error
	for s.used+need > s.spillAt {
		v := s.victim()
		if v == nil {
			break
		}
		if !v.primary {
			// Another node holds the primary copy; dropping ours is free.
			os.Remove(s.memPath(v.id))
			s.used -= v.size
			delete(s.objs, v.id)
			continue
		}
		if spillErr = s.spillLocked(v); spillErr != nil {
			// Past the threshold is still within capacity; only give
			// up if the object does not fit at all.
			break
		}
	}
	if s.used+need <= s.capacity {
		return nil
	}
	if spillErr != nil {
		return fmt.Errorf("%w: need %d bytes, capacity %d, used %d: %w", ErrFull, need, s.capacity, s.used, spillErr)
	}
	return fmt.Errorf("%w: need %d bytes, capacity %d, used %d (%d spillable)", ErrFull, need, s.capacity, s.used, s.spillable())
}

// victim returns the least recently used sealed secondary copy in memory,
// else the least recently used sealed primary copy in memory, else nil.
func (s *Store) victim() *entry {
	var best *entry
	for _, e := range s.objs {
		if !e.sealed || e.spilled {
			continue
		}
		if best == nil || (!e.primary && best.primary) ||
			(e.primary == best.primary && e.lastUse < best.lastUse) {
			best = e
		}
	}
	return best
}

func (s *Store) spillable() int64 {
	var n int64
	for _, e := range s.objs {
		if e.sealed && !e.spilled {
			n += e.size
		}
	}
	return n
}

// spillLocked copies e's memory file to the spill directory and unlinks the
// memory file. On failure nothing changes. s.mu is held.
func (s *Store) spillLocked(e *entry) error {
	dst := s.spillPath(e.id)
	if err := copyFile(s.memPath(e.id), dst, e.size); err != nil {
		if isNoSpace(err) {
			return fmt.Errorf("object store: spill directory %s is full: spilling %s (%d bytes): %w", s.spillDir, e.id, e.size, err)
		}
		return fmt.Errorf("object store: spilling %s (%d bytes) to %s: %w", e.id, e.size, s.spillDir, err)
	}
	if err := os.Remove(s.memPath(e.id)); err != nil {
		os.Remove(dst)
		return fmt.Errorf("object store: spilling %s: %w", e.id, err)
	}
	e.spilled = true
	s.used -= e.size
	s.spilled += e.size
	return nil
}

// restoreLocked makes room for e, copies its spill file back into memory
// and removes the spill file. s.mu is held.
func (s *Store) restoreLocked(e *entry) error {
	if err := s.makeRoom(e.size); err != nil {
		return fmt.Errorf("object store: restoring %s: %w", e.id, err)
	}
	if err := copyFile(s.spillPath(e.id), s.memPath(e.id), e.size); err != nil {
		return s.memErr(e.id, e.size, fmt.Errorf("restoring %s: %w", e.id, err))
	}
	os.Remove(s.spillPath(e.id))
	e.spilled = false
	s.used += e.size
	s.restore += e.size
	return nil
}

// memErr turns a failure to allocate an object's memory file into ErrFull
// when the shared-memory filesystem itself is full.
func (s *Store) memErr(id string, size int64, err error) error {
	if isNoSpace(err) {
		return fmt.Errorf("%w: shared-memory directory %s has no room for %s (%d bytes): %w", ErrFull, s.dir, id, size, err)
	}
	return fmt.Errorf("object store: object %s: %w", id, err)
}

// copyFile copies size bytes from src to dst by way of dst+".tmp" and a
// rename, so dst never exists half written (a reader may open it by path
// at any time). On failure dst does not exist.
func copyFile(src, dst string, size int64) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	err = preallocate(out, size)
	if err == nil {
		_, err = io.CopyN(out, in, size)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// preallocate reserves size bytes of disk (or tmpfs memory) for f, so that
// running out of space fails here with ENOSPC instead of at a later write
// or, for a mapped file, with SIGBUS.
func preallocate(f *os.File, size int64) error {
	if size == 0 {
		return nil
	}
	err := unix.Fallocate(int(f.Fd()), 0, 0, size)
	if errors.Is(err, unix.EOPNOTSUPP) {
		// Filesystems without fallocate: size the file, unreserved.
		err = f.Truncate(size)
	}
	if err != nil {
		return &os.PathError{Op: "fallocate", Path: f.Name(), Err: err}
	}
	return nil
}

func isNoSpace(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)
}

func removeFile(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("object store: %w", err)
	}
	return nil
}
