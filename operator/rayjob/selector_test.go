package rayjob

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rayv1 "github.com/goray/goray/operator/api/v1"
	"github.com/goray/goray/operator/raycluster"
)

// TestRayJobWaitsForASelectedCluster: a clusterSelector naming a missing
// RayCluster leaves the job Initializing with a message and one Warning
// (not one a poll); once the cluster appears the job runs on it.
func TestRayJobWaitsForASelectedCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h := newHarness(t)
	name := fmt.Sprintf("later-%d", time.Now().UnixNano()%100000)
	key := h.create(ctx, "sel", rayv1.RayJobSpec{Entrypoint: "echo hi", ClusterSelector: map[string]string{raycluster.LabelCluster: name}})
	var cur *rayv1.RayJob
	for range 4 {
		cur, _ = h.reconcile(ctx, key)
	}
	want := "the RayCluster " + name + " was not found in namespace default"
	if cur.Status.JobDeploymentStatus != rayv1.JobDeploymentStatusInitializing || cur.Status.Message != want {
		t.Fatalf("status %+v, want Initializing with message %q", cur.Status, want)
	}
	if w := h.ev.Like("Warning RayClusterNotFound"); len(w) != 1 {
		t.Fatalf("events %v, want one Warning RayClusterNotFound", h.ev.All())
	}

	rc := &rayv1.RayCluster{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}}
	rc.Spec.HeadGroupSpec.Template.Spec.Containers = []corev1.Container{{Name: "ray-head", Image: "goray:test"}}
	if err := env.Client.Create(ctx, rc); err != nil {
		t.Fatal(err)
	}
	cur = h.until(ctx, key, "the job complete", func(j *rayv1.RayJob) bool {
		return j.Status.JobDeploymentStatus == rayv1.JobDeploymentStatusComplete
	})
	if cur.Status.JobStatus != rayv1.JobStatusSucceeded || cur.Status.RayClusterName != name || cur.Status.Message == want {
		t.Errorf("final status %+v", cur.Status)
	}
	if w := h.ev.Like("RayClusterNotFound"); len(w) != 1 {
		t.Errorf("events %v, want still one RayClusterNotFound", h.ev.All())
	}
}

// TestRayJobSelectorMustNameTheCluster: a clusterSelector without
// ray.io/cluster could never match; it fails validation.
func TestRayJobSelectorMustNameTheCluster(t *testing.T) {
	err := Validate(&rayv1.RayJob{Spec: rayv1.RayJobSpec{Entrypoint: "true", ClusterSelector: map[string]string{"team": "a"}}})
	if err == nil {
		t.Fatal("a selector without ray.io/cluster passed validation")
	}
}
