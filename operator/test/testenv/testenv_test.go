package testenv

import (
	"context"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rayv1 "github.com/goray/goray/operator/api/v1"
)

// TestAPIServerStoresRayCluster starts the real API server, creates a
// RayCluster through the installed CRD and reads back every field set,
// defaults included (nothing pruned that the types hold).
func TestAPIServerStoresRayCluster(t *testing.T) {
	start := time.Now()
	env, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	defer env.Stop()
	t.Logf("kube-apiserver and etcd up in %v", time.Since(start))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rc := &rayv1.RayCluster{
		ObjectMeta: metav1.ObjectMeta{Name: "smoke", Namespace: "default"},
		Spec: rayv1.RayClusterSpec{
			RayVersion: "2.55.0",
			HeadGroupSpec: rayv1.HeadGroupSpec{
				RayStartParams: map[string]string{"dashboard-host": "0.0.0.0"},
				Template:       corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "ray-head", Image: "goray:latest"}}}},
			},
			WorkerGroupSpecs: []rayv1.WorkerGroupSpec{{
				GroupName: "small", Replicas: ptr.To[int32](2), MinReplicas: ptr.To[int32](1),
				ScaleStrategy: rayv1.ScaleStrategy{WorkersToDelete: []string{"pod-a"}},
				Template:      corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "ray-worker", Image: "goray:latest"}}}},
			}},
			EnableInTreeAutoscaling: ptr.To(true),
		},
	}
	if err := env.Client.Create(ctx, rc); err != nil {
		t.Fatal(err)
	}
	var got rayv1.RayCluster
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(rc), &got); err != nil {
		t.Fatal(err)
	}
	w := got.Spec.WorkerGroupSpecs[0]
	if *w.MaxReplicas != 2147483647 || w.NumOfHosts != 1 || *w.Replicas != 2 || w.ScaleStrategy.WorkersToDelete[0] != "pod-a" {
		t.Errorf("worker group read back as %+v", w)
	}
	if got.Spec.HeadGroupSpec.Template.Spec.Containers[0].Image != "goray:latest" || !*got.Spec.EnableInTreeAutoscaling {
		t.Errorf("spec read back as %+v", got.Spec)
	}
	got.Status.State = rayv1.Ready
	got.Status.DesiredWorkerReplicas = 2
	if err := env.Client.Status().Update(ctx, &got); err != nil {
		t.Fatal(err)
	}
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Log("KUBEBUILDER_ASSETS was unset: used operator/test/assets.sh")
	}
}
