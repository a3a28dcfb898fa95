package raycluster

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func pod(name string, deleting bool) corev1.Pod {
	p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if deleting {
		now := metav1.Now()
		p.DeletionTimestamp = &now
	}
	return p
}

// TestExpectationsHoldUntilTheCacheCatchesUp: a create is expected until
// the pod is listed, a delete until it is gone or terminating; unconfirmed
// expectations expire after the TTL.
func TestExpectationsHoldUntilTheCacheCatchesUp(t *testing.T) {
	e := NewExpectations()
	key := GroupKey("ns", "rc", "g")
	if !e.Satisfied(key, nil) {
		t.Fatal("no expectations, not satisfied")
	}
	e.ExpectCreate(key, "a")
	e.ExpectDelete(key, "b")
	if e.Satisfied(key, []corev1.Pod{pod("b", false)}) {
		t.Fatal("satisfied while a is not listed and b still lives")
	}
	if e.Satisfied(key, []corev1.Pod{pod("a", false), pod("b", false)}) {
		t.Fatal("satisfied while b still lives")
	}
	if !e.Satisfied(key, []corev1.Pod{pod("a", false), pod("b", true)}) {
		t.Fatal("not satisfied with a listed and b terminating")
	}
	// Other groups are independent; Forget drops a cluster's.
	other := GroupKey("ns", "rc", "h")
	e.ExpectCreate(other, "c")
	if !e.Satisfied(key, nil) || e.Satisfied(other, nil) {
		t.Fatal("groups not independent")
	}
	e.Forget("ns", "rc")
	if !e.Satisfied(other, nil) {
		t.Fatal("Forget kept the cluster's expectations")
	}
	// A create the cache never shows expires.
	e.TTL = 10 * time.Millisecond
	e.ExpectCreate(key, "lost")
	if e.Satisfied(key, nil) {
		t.Fatal("satisfied at once")
	}
	time.Sleep(20 * time.Millisecond)
	if !e.Satisfied(key, nil) {
		t.Fatal("expired expectation still held")
	}
}
