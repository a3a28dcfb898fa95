package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// file is the bbolt-backed Store. Reads are served from mem, loaded at open;
// writes go to bbolt (fsynced per transaction) and then to mem, serialised by
// wmu so both see the same order.
type file struct {
	wmu  sync.Mutex
	db   *bolt.DB // nil after Close
	mem  *memory
	path string
}

// OpenFile opens (creating if needed) the directory dir and the bbolt file
// dir/gcs.db in it, one bucket per table, and loads every table into memory.
// bbolt holds an exclusive file lock, so opening a dir that is already open
// (by this or another process) fails after about a second with an error
// naming the path.
func OpenFile(dir string) (Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("gcs store: create dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, "gcs.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("gcs store: open %s: locked by another open store: %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("gcs store: open %s: %w", path, err)
	}
	mem := newMemory()
	err = db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			t := map[string][]byte{}
			mem.tables[string(name)] = t
			return b.ForEach(func(k, v []byte) error {
				t[string(k)] = clone(v)
				return nil
			})
		})
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("gcs store: load %s: %w", path, err)
	}
	return &file{db: db, mem: mem, path: path}, nil
}

func (f *file) Put(table, key string, value []byte) error {
	if table == "" || key == "" {
		return errEmptyName
	}
	f.wmu.Lock()
	defer f.wmu.Unlock()
	if f.db == nil {
		return ErrClosed
	}
	err := f.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(table))
		if err != nil {
			return err
		}
		return b.Put([]byte(key), value)
	})
	if err != nil {
		return fmt.Errorf("gcs store: put %s/%s: %w", table, key, err)
	}
	return f.mem.Put(table, key, value)
}

func (f *file) Delete(table, key string) error {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	if f.db == nil {
		return ErrClosed
	}
	if _, ok, _ := f.mem.Get(table, key); !ok {
		return nil // nothing to delete; skip the fsync
	}
	err := f.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(table)).Delete([]byte(key))
	})
	if err != nil {
		return fmt.Errorf("gcs store: delete %s/%s: %w", table, key, err)
	}
	return f.mem.Delete(table, key)
}

func (f *file) Get(table, key string) ([]byte, bool, error) { return f.mem.Get(table, key) }

func (f *file) GetAll(table string) (map[string][]byte, error) { return f.mem.GetAll(table) }

func (f *file) Close() error {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	if f.db == nil {
		return ErrClosed
	}
	err := f.db.Close()
	f.db = nil
	f.mem.Close()
	if err != nil {
		return fmt.Errorf("gcs store: close %s: %w", f.path, err)
	}
	return nil
}
