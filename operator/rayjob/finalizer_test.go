package rayjob

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rayv1 "github.com/goray/goray/operator/api/v1"
	"github.com/goray/goray/operator/test/testenv"
)

// TestFinalizerLeavesTheSpecAlone: adding the finalizer to a RayJob applied
// as a user writes it (with empty maps such as rayStartParams: {}) changes
// only metadata.finalizers: the spec stays as written and the generation
// stays 1.
func TestFinalizerLeavesTheSpecAlone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const manifest = `apiVersion: ray.io/v1
kind: RayJob
metadata: {name: as-written, namespace: default}
spec:
  entrypoint: echo hi
  metadata: {}
  rayClusterSpec:
    headGroupSpec:
      rayStartParams: {}
      template:
        spec:
          containers: [{name: ray-head, image: goray:test, resources: {}}]
`
	u := &unstructured.Unstructured{}
	if err := yaml.NewYAMLOrJSONDecoder(strings.NewReader(manifest), 4096).Decode(&u.Object); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(ctx, u); err != nil {
		t.Fatal(err)
	}
	r := &Reconciler{Client: env.Client, Recorder: &testenv.Events{}, Poll: time.Hour}
	key := client.ObjectKeyFromObject(u)
	if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: key}); err != nil {
		t.Fatal(err)
	}
	after := &unstructured.Unstructured{}
	after.SetGroupVersionKind(u.GroupVersionKind())
	if err := env.Client.Get(ctx, key, after); err != nil {
		t.Fatal(err)
	}
	if fs := after.GetFinalizers(); len(fs) != 1 || fs[0] != Finalizer {
		t.Fatalf("finalizers %v, want [%s]", fs, Finalizer)
	}
	if g := after.GetGeneration(); g != 1 {
		t.Errorf("generation %d after adding the finalizer, want 1 (the spec was rewritten)", g)
	}
	if _, found, _ := unstructured.NestedMap(after.Object, "spec", "rayClusterSpec", "headGroupSpec", "rayStartParams"); !found {
		t.Errorf("rayStartParams: {} is gone from the spec: %v", after.Object["spec"])
	}
	var job rayv1.RayJob
	if err := env.Client.Get(ctx, key, &job); err == nil {
		env.Client.Delete(ctx, &job)
		r.Reconcile(ctx, ctrl.Request{NamespacedName: key}) // let the finalizer go
	}
}
