package raycluster

import (
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Expectations remember the pods a reconcile created or deleted until the
// informer cache shows it, so that a reconcile running on a stale cache
// neither creates a pod twice nor deletes one twice (KubeRay's scale
// expectations). Keys name one group of one cluster.
//
// Invariant: mu guards groups; no other lock is taken under it.
type Expectations struct {
	mu     sync.Mutex
	groups map[string]*expected
	// TTL drops expectations the cache never confirmed (a missed event);
	// 0 means 30 s.
	TTL time.Duration
}

type expected struct {
	creates map[string]time.Time // pod name → when created
	deletes map[string]time.Time // pod name → when deleted
}

// NewExpectations returns an empty cache.
func NewExpectations() *Expectations { return &Expectations{groups: map[string]*expected{}} }

// GroupKey names a group of a cluster.
func GroupKey(namespace, cluster, group string) string {
	return namespace + "/" + cluster + "/" + group
}

func (e *Expectations) group(key string) *expected {
	g := e.groups[key]
	if g == nil {
		g = &expected{creates: map[string]time.Time{}, deletes: map[string]time.Time{}}
		e.groups[key] = g
	}
	return g
}

// ExpectCreate records that pod name of group key was created.
func (e *Expectations) ExpectCreate(key, name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.group(key).creates[name] = time.Now()
}

// ExpectDelete records that pod name of group key was deleted.
func (e *Expectations) ExpectDelete(key, name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.group(key).deletes[name] = time.Now()
}

// Satisfied tells whether pods, the group's pods as the cache lists them,
// reflect every create and delete recorded for key; confirmed ones are
// forgotten.
func (e *Expectations) Satisfied(key string, pods []corev1.Pod) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	g := e.groups[key]
	if g == nil {
		return true
	}
	ttl := e.TTL
	if ttl == 0 {
		ttl = 30 * time.Second
	}
	live := make(map[string]bool, len(pods))
	for i := range pods {
		live[pods[i].Name] = pods[i].DeletionTimestamp == nil
	}
	now := time.Now()
	for name, at := range g.creates {
		if _, seen := live[name]; seen || now.Sub(at) > ttl {
			delete(g.creates, name)
		}
	}
	for name, at := range g.deletes {
		if alive, seen := live[name]; !seen || !alive || now.Sub(at) > ttl {
			delete(g.deletes, name)
		}
	}
	if len(g.creates) == 0 && len(g.deletes) == 0 {
		delete(e.groups, key)
		return true
	}
	return false
}

// Forget drops every expectation of the cluster's groups.
func (e *Expectations) Forget(namespace, cluster string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	prefix := namespace + "/" + cluster + "/"
	for k := range e.groups {
		if len(k) > len(prefix) && k[:len(prefix)] == prefix {
			delete(e.groups, k)
		}
	}
}
