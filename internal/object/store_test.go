package object

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func openStore(t *testing.T, capacity int64) (*Store, Config) {
	t.Helper()
	root := t.TempDir()
	cfg := Config{Dir: filepath.Join(root, "shm"), SpillDir: filepath.Join(root, "spill"), Capacity: capacity}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, cfg
}

// pattern returns n bytes that differ per id, so a mix-up shows.
func pattern(id string, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ id[i%len(id)]
	}
	return b
}

// put creates, writes through a writable mapping, and seals an object.
func put(t testing.TB, s *Store, id string, data []byte, primary bool) {
	t.Helper()
	if err := tryPut(s, id, data, primary); err != nil {
		t.Fatal(err)
	}
}

// tryPut is put for goroutines.
func tryPut(s *Store, id string, data []byte, primary bool) error {
	p, err := s.Create(id, int64(len(data)), primary)
	if err != nil {
		return err
	}
	w, unmap, err := mapWritable(p, int64(len(data)))
	if err != nil {
		return err
	}
	copy(w, data)
	if err := unmap(); err != nil {
		return err
	}
	return s.Seal(id)
}

// read gets and maps an object and returns a copy of its bytes.
func read(t testing.TB, s *Store, id string) []byte {
	t.Helper()
	data, err := tryRead(s, id)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// tryRead is read for goroutines. A spill by another goroutine between Get
// and Map unlinks the file; Get again then.
func tryRead(s *Store, id string) ([]byte, error) {
	for range 100 {
		p, size, err := s.Get(id)
		if err != nil {
			return nil, err
		}
		data, unmap, err := Map(p, size)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out := bytes.Clone(data)
		return out, unmap()
	}
	return nil, fmt.Errorf("object %s kept vanishing between Get and Map", id)
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func TestRoundTrip(t *testing.T) {
	s, cfg := openStore(t, 1<<20)
	want := pattern("obj1", 10000)
	put(t, s, "obj1", want, true)
	put(t, s, "empty", nil, true)

	p, size, err := s.Get("obj1")
	if err != nil {
		t.Fatal(err)
	}
	if p != filepath.Join(cfg.Dir, "obj1") || size != 10000 {
		t.Fatalf("Get = %s, %d", p, size)
	}
	data, unmap, err := Map(p, size)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, want) {
		t.Fatal("mapped bytes differ from written bytes")
	}
	unmap()

	if got := read(t, s, "empty"); len(got) != 0 {
		t.Fatalf("empty object read %d bytes", len(got))
	}
	if !s.Contains("obj1") || s.Contains("nope") {
		t.Fatal("Contains wrong")
	}
	st := s.Stats()
	if st.Used != 10000 || st.NumObjects != 2 || st.Objects[0].ID != "obj1" || st.Objects[0].Reads != 1 {
		t.Fatalf("stats %+v", st)
	}
	if _, _, err := s.Get("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get unknown: %v", err)
	}
	if _, err := s.Create("obj1", 1, true); !errors.Is(err, ErrExists) {
		t.Fatalf("Create existing: %v", err)
	}
}

func TestUnsealedAndAbort(t *testing.T) {
	s, cfg := openStore(t, 1000)
	if _, err := s.Create("u", 100, true); err != nil {
		t.Fatal(err)
	}
	if s.Contains("u") {
		t.Fatal("unsealed object reported as contained")
	}
	if _, _, err := s.Get("u"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get unsealed: %v", err)
	}
	s.Abort("u")
	if st := s.Stats(); st.Used != 0 || st.NumObjects != 0 {
		t.Fatalf("after Abort: %+v", st)
	}
	if names := dirNames(t, cfg.Dir); len(names) != 0 {
		t.Fatalf("Abort left %v", names)
	}
}

func TestMapsShareMemory(t *testing.T) {
	s, _ := openStore(t, 4<<20)
	const size = 1 << 20
	p, err := s.Create("shared", size, true)
	if err != nil {
		t.Fatal(err)
	}
	w, unmapW, err := mapWritable(p, size)
	if err != nil {
		t.Fatal(err)
	}
	defer unmapW()
	copy(w, pattern("shared", size))
	if err := s.Seal("shared"); err != nil {
		t.Fatal(err)
	}

	var maps [2][]byte
	for i := range maps {
		p, n, err := s.Get("shared")
		if err != nil {
			t.Fatal(err)
		}
		data, unmap, err := Map(p, n)
		if err != nil {
			t.Fatal(err)
		}
		defer unmap()
		maps[i] = data
	}
	if !bytes.Equal(maps[0], maps[1]) || !bytes.Equal(maps[0], w) {
		t.Fatal("mappings differ")
	}
	// Both readers alias the writer's pages: a store that copied on Get
	// would not show this write.
	w[12345] ^= 0xff
	if maps[0][12345] != w[12345] || maps[1][12345] != w[12345] {
		t.Fatal("readers do not see the shared pages")
	}
	st := s.Stats()
	if st.CreatedBytes != size || st.Reads != 2 || st.Objects[0].Reads != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSpillLeastRecentlyUsed(t *testing.T) {
	s, cfg := openStore(t, 1000) // spills past 800
	for _, id := range []string{"a", "b", "c"} {
		put(t, s, id, pattern(id, 250), true)
	}
	read(t, s, "a") // now b is least recently used

	put(t, s, "d", pattern("d", 250), true)
	if !exists(filepath.Join(cfg.SpillDir, "b")) || exists(filepath.Join(cfg.Dir, "b")) {
		t.Fatalf("b not spilled: shm %v spill %v", dirNames(t, cfg.Dir), dirNames(t, cfg.SpillDir))
	}
	st := s.Stats()
	if st.NumSpilled != 1 || st.SpilledBytes != 250 || st.Used != 750 || st.NumObjects != 4 {
		t.Fatalf("after spill: %+v", st)
	}
	if !s.Contains("b") {
		t.Fatal("spilled object not contained")
	}

	// Restoring b needs room in turn: c is now least recently used.
	if got := read(t, s, "b"); !bytes.Equal(got, pattern("b", 250)) {
		t.Fatal("restored bytes differ")
	}
	if exists(filepath.Join(cfg.SpillDir, "b")) || !exists(filepath.Join(cfg.SpillDir, "c")) {
		t.Fatalf("after restore: spill dir %v", dirNames(t, cfg.SpillDir))
	}
	st = s.Stats()
	if st.RestoredBytes != 250 || st.SpilledBytes != 500 || st.NumSpilled != 1 || st.Used != 750 {
		t.Fatalf("after restore: %+v", st)
	}
	for _, o := range st.Objects {
		if o.Spilled != (o.ID == "c") {
			t.Fatalf("object %+v", o)
		}
	}
}

func TestSecondaryEvictedNotSpilled(t *testing.T) {
	s, cfg := openStore(t, 1000)
	put(t, s, "prim", pattern("prim", 300), true)
	put(t, s, "sec", pattern("sec", 300), false)
	// prim is least recently used, but dropping the secondary copy is free.
	put(t, s, "new", pattern("new", 300), true)

	if s.Contains("sec") || exists(filepath.Join(cfg.Dir, "sec")) {
		t.Fatal("secondary copy not evicted")
	}
	if names := dirNames(t, cfg.SpillDir); len(names) != 0 {
		t.Fatalf("spill dir holds %v", names)
	}
	st := s.Stats()
	if st.SpilledBytes != 0 || st.NumObjects != 2 || st.Used != 600 {
		t.Fatalf("stats %+v", st)
	}
	if !bytes.Equal(read(t, s, "prim"), pattern("prim", 300)) {
		t.Fatal("primary damaged")
	}
}

func TestFull(t *testing.T) {
	s, cfg := openStore(t, 1000)
	if _, err := s.Create("huge", 1001, true); !errors.Is(err, ErrFull) {
		t.Fatalf("Create over capacity: %v", err)
	}
	// Unsealed objects are being written and cannot spill.
	if _, err := s.Create("w", 900, true); err != nil {
		t.Fatal(err)
	}
	_, err := s.Create("x", 200, true)
	if !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "need 200 bytes, capacity 1000, used 900 (0 spillable)") {
		t.Fatalf("Create past full: %v", err)
	}
	if names := dirNames(t, cfg.Dir); len(names) != 1 || names[0] != "w" {
		t.Fatalf("shm dir holds %v", names)
	}
	if st := s.Stats(); st.NumObjects != 1 || st.Used != 900 || st.CreatedBytes != 900 {
		t.Fatalf("stats %+v", st)
	}
}

func TestDelete(t *testing.T) {
	s, cfg := openStore(t, 1000)
	put(t, s, "old", pattern("old", 500), true)
	put(t, s, "mem", pattern("mem", 500), true) // spills old
	if !exists(filepath.Join(cfg.SpillDir, "old")) {
		t.Fatal("old not spilled")
	}
	for _, id := range []string{"old", "mem"} {
		if err := s.Delete(id); err != nil {
			t.Fatal(err)
		}
	}
	if a, b := dirNames(t, cfg.Dir), dirNames(t, cfg.SpillDir); len(a)+len(b) != 0 {
		t.Fatalf("left shm %v spill %v", a, b)
	}
	if st := s.Stats(); st.Used != 0 || st.NumObjects != 0 || st.NumSpilled != 0 {
		t.Fatalf("stats %+v", st)
	}
	if err := s.Delete("old"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Delete: %v", err)
	}
}

func TestOpenRemovesLeftovers(t *testing.T) {
	root := t.TempDir()
	cfg := Config{Dir: filepath.Join(root, "shm"), SpillDir: filepath.Join(root, "spill"), Capacity: 1000}
	for _, p := range []string{
		filepath.Join(cfg.Dir, "stale"),
		filepath.Join(cfg.Dir, "x.tmp"),
		filepath.Join(cfg.SpillDir, "stale"),
		filepath.Join(cfg.SpillDir, "sub", "deep"),
	} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("old run"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if a, b := dirNames(t, cfg.Dir), dirNames(t, cfg.SpillDir); len(a)+len(b) != 0 {
		t.Fatalf("left shm %v spill %v", a, b)
	}
	// A leftover must not block an object of the same name.
	put(t, s, "stale", []byte("new"), true)
}

func TestCloseRemovesFiles(t *testing.T) {
	s, cfg := openStore(t, 1000)
	put(t, s, "a", pattern("a", 600), true)
	put(t, s, "b", pattern("b", 600), true) // spills a
	if _, err := s.Create("c", 10, true); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if a, b := dirNames(t, cfg.Dir), dirNames(t, cfg.SpillDir); len(a)+len(b) != 0 {
		t.Fatalf("left shm %v spill %v", a, b)
	}
	if _, err := s.Create("d", 1, true); err == nil {
		t.Fatal("Create after Close succeeded")
	}
}

func TestMappingOutlivesDeleteAndSpill(t *testing.T) {
	s, cfg := openStore(t, 1000)
	want := pattern("m", 600)
	put(t, s, "m", want, true)
	p, size, err := s.Get("m")
	if err != nil {
		t.Fatal(err)
	}
	data, unmap, err := Map(p, size)
	if err != nil {
		t.Fatal(err)
	}
	defer unmap()

	put(t, s, "n", pattern("n", 600), true) // spills m: its file is unlinked
	if exists(p) {
		t.Fatal("spilled object's memory file still linked")
	}
	if err := s.Delete("m"); err != nil {
		t.Fatal(err)
	}
	if a, b := dirNames(t, cfg.Dir), dirNames(t, cfg.SpillDir); len(a) != 1 || len(b) != 0 {
		t.Fatalf("shm %v spill %v", a, b)
	}
	if !bytes.Equal(data, want) {
		t.Fatal("mapping changed after delete")
	}
}

func TestBadIDs(t *testing.T) {
	s, cfg := openStore(t, 1000)
	for _, id := range []string{"", "a/b", "..", "../x", "a.b", "x y", "é", "a\x00"} {
		_, err := s.Create(id, 1, true)
		if err == nil || (id != "" && !strings.Contains(err.Error(), fmt.Sprintf("%q", id))) {
			t.Errorf("Create(%q) = %v", id, err)
		}
	}
	if names := dirNames(t, filepath.Dir(cfg.Dir)); len(names) != 2 {
		t.Fatalf("files appeared beside the store: %v", names)
	}
	put(t, s, "Az09_-", []byte("ok"), true)
}

// TestSpillDirFull spills into a 1 MiB tmpfs (or, without root, a directory
// the store may not write) and expects a clear error, not a retry loop.
func TestSpillDirFull(t *testing.T) {
	s, cfg := openStore(t, 4<<20)
	wantNoSpace := true
	if os.Geteuid() == 0 {
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", cfg.SpillDir).CombinedOutput(); err != nil {
			t.Skipf("cannot mount a small tmpfs (%v: %s); as root a read-only directory would not stop writes", err, out)
		}
		t.Cleanup(func() { unix.Unmount(cfg.SpillDir, unix.MNT_DETACH) })
	} else {
		wantNoSpace = false
		if err := os.Chmod(cfg.SpillDir, 0o500); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(cfg.SpillDir, 0o755) })
	}

	want := pattern("a", 2<<20)
	put(t, s, "a", want, true)
	_, err := s.Create("b", 3<<20, true)
	if !errors.Is(err, ErrFull) {
		t.Fatalf("Create = %v, want ErrFull", err)
	}
	if wantNoSpace {
		if !errors.Is(err, unix.ENOSPC) || !strings.Contains(err.Error(), "spill directory "+cfg.SpillDir+" is full") {
			t.Fatalf("Create = %v, want a full spill directory", err)
		}
	} else if !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), "spilling a") {
		t.Fatalf("Create = %v, want a failed spill", err)
	}
	t.Log(err)

	if names := dirNames(t, cfg.SpillDir); len(names) != 0 {
		t.Fatalf("failed spill left %v", names)
	}
	if names := dirNames(t, cfg.Dir); len(names) != 1 {
		t.Fatalf("shm dir holds %v", names)
	}
	if st := s.Stats(); st.NumSpilled != 0 || st.SpilledBytes != 0 || st.NumObjects != 1 {
		t.Fatalf("stats %+v", st)
	}
	if !bytes.Equal(read(t, s, "a"), want) {
		t.Fatal("object damaged by failed spill")
	}
	// Below the threshold no spill is needed, so small objects still fit.
	put(t, s, "small", pattern("small", 1<<20), true)
}

func TestConcurrent(t *testing.T) {
	const (
		workers = 8
		rounds  = 40
		keep    = 16 // one worker alone holds 128 KiB, past the threshold
		size    = 8 << 10
	)
	s, cfg := openStore(t, 128<<10)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			var live []string
			for i := range rounds {
				id := fmt.Sprintf("w%d-%d", w, i)
				if err := tryPut(s, id, pattern(id, size), i%3 != 0); err != nil {
					t.Error(err)
					return
				}
				live = append(live, id)
				for _, r := range []string{id, live[0]} {
					data, err := tryRead(s, r)
					if errors.Is(err, ErrNotFound) {
						continue // an evicted secondary copy
					}
					if err != nil {
						t.Error(err)
					} else if !bytes.Equal(data, pattern(r, size)) {
						t.Errorf("object %s corrupted", r)
					}
				}
				if len(live) == keep {
					if err := s.Delete(live[0]); err != nil && !errors.Is(err, ErrNotFound) {
						t.Error(err)
					}
					live = live[1:]
				}
				s.Stats()
			}
			for _, id := range live {
				if err := s.Delete(id); err != nil && !errors.Is(err, ErrNotFound) {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()

	st := s.Stats()
	if st.Used != 0 || st.NumObjects != 0 || st.CreatedBytes != workers*rounds*size {
		t.Fatalf("stats %+v", st)
	}
	if st.SpilledBytes == 0 || st.RestoredBytes == 0 {
		t.Fatalf("no spilling exercised: %+v", st)
	}
	if a, b := dirNames(t, cfg.Dir), dirNames(t, cfg.SpillDir); len(a)+len(b) != 0 {
		t.Fatalf("left shm %v spill %v", a, b)
	}
}

// mapWritable maps an object's file for writing, as a writer sharing the
// memory would (goray's writers write through the file instead).
func mapWritable(path string, size int64) ([]byte, func() error, error) {
	return mapFile(path, size, os.O_RDWR, unix.PROT_READ|unix.PROT_WRITE)
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func TestFreedFilesAreReusedUnlessMapped(t *testing.T) {
	s, _ := openStore(t, 64<<20)
	const size = 2 << 20
	put(t, s, "a", pattern("a", size), true)
	p, _, _ := s.Get("a")
	ino := inode(t, p)
	if err := s.Delete("a"); err != nil {
		t.Fatal(err)
	}
	// The next object of a similar size takes the freed file.
	put(t, s, "b", pattern("b", size-100), true)
	pb, n, _ := s.Get("b")
	if inode(t, pb) != ino || n != size-100 {
		t.Fatalf("freed file not reused (inode %d vs %d, size %d)", inode(t, pb), ino, n)
	}
	if !bytes.Equal(read(t, s, "b"), pattern("b", size-100)) {
		t.Fatal("reused file holds the wrong bytes")
	}
	// A reader that acquired it keeps its file out of the pool.
	pa, _, err := s.Acquire("b")
	if err != nil {
		t.Fatal(err)
	}
	m, unmap, err := Map(pa, size-100)
	if err != nil {
		t.Fatal(err)
	}
	defer unmap()
	s.Delete("b")
	put(t, s, "c", pattern("c", size), true)
	pc, _, _ := s.Get("c")
	if inode(t, pc) == ino {
		t.Fatal("a file still mapped by a reader was reused")
	}
	if !bytes.Equal(m, pattern("b", size-100)) {
		t.Fatal("the reader's mapping changed")
	}
	if st := s.Stats(); st.NumObjects != 1 {
		t.Fatalf("objects: %d", st.NumObjects)
	}
}
