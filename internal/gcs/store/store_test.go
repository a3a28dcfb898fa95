package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// impls opens a fresh Store of each implementation.
var impls = map[string]func(t *testing.T) Store{
	"memory": func(t *testing.T) Store { return NewMemory() },
	"file": func(t *testing.T) Store {
		s, err := OpenFile(filepath.Join(t.TempDir(), "gcs"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	},
}

func TestConformance(t *testing.T) {
	tests := map[string]func(t *testing.T, s Store){
		"PutGetOverwrite": testPutGetOverwrite,
		"DeleteGetAll":    testDeleteGetAll,
		"Copies":          testCopies,
		"EmptyNames":      testEmptyNames,
		"Concurrent":      testConcurrent,
		"Closed":          testClosed,
	}
	for impl, open := range impls {
		for name, fn := range tests {
			t.Run(impl+"/"+name, func(t *testing.T) {
				s := open(t)
				fn(t, s)
				s.Close()
			})
		}
	}
}

func mustGet(t *testing.T, s Store, table, key string) ([]byte, bool) {
	t.Helper()
	v, ok, err := s.Get(table, key)
	if err != nil {
		t.Fatalf("Get(%s, %s): %v", table, key, err)
	}
	return v, ok
}

func testPutGetOverwrite(t *testing.T, s Store) {
	if v, ok := mustGet(t, s, "nodes", "n1"); ok || v != nil {
		t.Fatalf("missing key: got %q, %v", v, ok)
	}
	steps := []struct{ table, key, val string }{
		{"nodes", "n1", "alive"},
		{"actors", "n1", "other table"},
		{"nodes", "n1", "dead"},
		{"nodes", "n2", ""},
	}
	for _, st := range steps {
		if err := s.Put(st.table, st.key, []byte(st.val)); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []struct{ table, key, val string }{
		{"nodes", "n1", "dead"}, {"actors", "n1", "other table"}, {"nodes", "n2", ""},
	} {
		v, ok := mustGet(t, s, want.table, want.key)
		if !ok || string(v) != want.val || v == nil {
			t.Errorf("Get(%s, %s) = %q, %v; want %q, true", want.table, want.key, v, ok, want.val)
		}
	}
}

func testDeleteGetAll(t *testing.T, s Store) {
	for i := range 3 {
		if err := s.Put("jobs", fmt.Sprint("j", i), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete("jobs", "j1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("jobs", "absent"); err != nil {
		t.Fatalf("delete absent key: %v", err)
	}
	if err := s.Delete("no-such-table", "k"); err != nil {
		t.Fatalf("delete in absent table: %v", err)
	}
	if _, ok := mustGet(t, s, "jobs", "j1"); ok {
		t.Fatal("deleted key still present")
	}
	all, err := s.GetAll("jobs")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all["j0"][0] != 0 || all["j2"][0] != 2 {
		t.Fatalf("GetAll = %v, want j0, j2", all)
	}
	if all, err := s.GetAll("empty"); err != nil || all == nil || len(all) != 0 {
		t.Fatalf("GetAll(empty) = %v, %v; want empty non-nil map", all, err)
	}
}

func testCopies(t *testing.T, s Store) {
	in := []byte("abc")
	if err := s.Put("t", "k", in); err != nil {
		t.Fatal(err)
	}
	in[0] = 'X'
	v, _ := mustGet(t, s, "t", "k")
	if string(v) != "abc" {
		t.Fatalf("Put did not copy: %q", v)
	}
	v[0] = 'Y'
	all, _ := s.GetAll("t")
	all["k"][1] = 'Z'
	all["new"] = []byte("x")
	if v, _ := mustGet(t, s, "t", "k"); string(v) != "abc" {
		t.Fatalf("Get/GetAll results alias storage: %q", v)
	}
	if _, ok := mustGet(t, s, "t", "new"); ok {
		t.Fatal("GetAll map aliases storage")
	}
}

func testEmptyNames(t *testing.T, s Store) {
	for _, tk := range [][2]string{{"", "k"}, {"t", ""}} {
		if err := s.Put(tk[0], tk[1], []byte("v")); err == nil {
			t.Errorf("Put(%q, %q) succeeded, want error", tk[0], tk[1])
		}
	}
}

func testConcurrent(t *testing.T, s Store) {
	const workers, n = 8, 20
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range n {
				key := fmt.Sprintf("w%d-%d", w, i)
				if err := s.Put("t", key, []byte(key)); err != nil {
					t.Error(err)
					return
				}
				if v, ok, err := s.Get("t", key); err != nil || !ok || string(v) != key {
					t.Errorf("Get(%s) = %q, %v, %v", key, v, ok, err)
				}
				if _, err := s.GetAll("t"); err != nil {
					t.Error(err)
				}
				if i%2 == 1 {
					if err := s.Delete("t", key); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	all, err := s.GetAll("t")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != workers*n/2 {
		t.Fatalf("after concurrent writes: %d keys, want %d", len(all), workers*n/2)
	}
}

func testClosed(t *testing.T, s Store) {
	if err := s.Put("t", "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, _, getErr := s.Get("t", "k")
	_, allErr := s.GetAll("t")
	for name, err := range map[string]error{
		"Put":    s.Put("t", "k", nil),
		"Get":    getErr,
		"Delete": s.Delete("t", "k"),
		"GetAll": allErr,
		"Close":  s.Close(),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}

func TestFileSurvivesReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	s, err := OpenFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range [][3]string{{"nodes", "n1", "v1"}, {"nodes", "n2", "v2"}, {"kv", "x", "y"}} {
		if err := s.Put(kv[0], kv[1], []byte(kv[2])); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete("nodes", "n2"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "gcs.db")); err != nil {
		t.Fatalf("gcs.db not created: %v", err)
	}

	s, err = OpenFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	nodes, _ := s.GetAll("nodes")
	if len(nodes) != 1 || string(nodes["n1"]) != "v1" {
		t.Fatalf("nodes after reopen = %q", nodes)
	}
	if v, ok, _ := s.Get("kv", "x"); !ok || string(v) != "y" {
		t.Fatalf("kv/x after reopen = %q, %v", v, ok)
	}
}

func TestFileOpenErrors(t *testing.T) {
	regular := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(regular, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	locked := t.TempDir()
	s, err := OpenFile(locked)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	for name, dir := range map[string]string{"regular file": regular, "already open": locked} {
		t.Run(name, func(t *testing.T) {
			s, err := OpenFile(dir)
			if err == nil {
				s.Close()
				t.Fatal("OpenFile succeeded, want error")
			}
			if !strings.Contains(err.Error(), dir) {
				t.Fatalf("error %q does not name %s", err, dir)
			}
		})
	}
}
