// Package store keeps the GCS tables (table name → key → value bytes) behind
// one interface, with an in-memory and a bbolt-backed implementation. It
// plays the role of Ray's GCS storage backends (in-memory and Redis).
package store

import (
	"errors"
	"sync"
)

// Store keeps the GCS tables: table name → key → value bytes. Values passed
// in and handed out are copies, so callers may mutate them. Table and key
// must be non-empty. After Close every method returns ErrClosed.
type Store interface {
	Put(table, key string, value []byte) error
	Get(table, key string) (value []byte, ok bool, err error)
	Delete(table, key string) error
	GetAll(table string) (map[string][]byte, error) // a copy
	Close() error
}

// ErrClosed is returned by every Store method after Close.
var ErrClosed = errors.New("gcs store: closed")

var errEmptyName = errors.New("gcs store: empty table or key")

// memory is the in-memory Store; it also serves reads for the file Store.
type memory struct {
	mu     sync.RWMutex
	tables map[string]map[string][]byte
	closed bool
}

// NewMemory returns an in-memory Store, safe for concurrent use.
func NewMemory() Store { return newMemory() }

func newMemory() *memory { return &memory{tables: map[string]map[string][]byte{}} }

func (m *memory) Put(table, key string, value []byte) error {
	if table == "" || key == "" {
		return errEmptyName
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	t := m.tables[table]
	if t == nil {
		t = map[string][]byte{}
		m.tables[table] = t
	}
	t[key] = clone(value)
	return nil
}

func (m *memory) Get(table, key string) ([]byte, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, false, ErrClosed
	}
	v, ok := m.tables[table][key]
	if !ok {
		return nil, false, nil
	}
	return clone(v), true, nil
}

func (m *memory) Delete(table, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	delete(m.tables[table], key)
	return nil
}

func (m *memory) GetAll(table string) (map[string][]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	out := make(map[string][]byte, len(m.tables[table]))
	for k, v := range m.tables[table] {
		out[k] = clone(v)
	}
	return out, nil
}

func (m *memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.closed = true
	m.tables = nil
	return nil
}

// clone copies b into a fresh non-nil slice, so a stored nil or empty value
// reads back as an empty, non-nil slice.
func clone(b []byte) []byte { return append([]byte{}, b...) }
