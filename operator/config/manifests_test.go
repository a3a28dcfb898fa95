// Package config_test checks the operator's deployment files: the CRDs in
// the Helm chart are the generated ones, every manifest and the rendered
// chart are accepted by a real API server, and the operator's ClusterRole
// is enough for the operator to do its work.
package config_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"

	"gopkg.in/yaml.v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	sigsyaml "sigs.k8s.io/yaml"

	rayv1 "github.com/goray/goray/operator/api/v1"
	"github.com/goray/goray/operator/manager"
	"github.com/goray/goray/operator/raycluster"
	"github.com/goray/goray/operator/test/testenv"
)

func TestHelmChartCRDsAreTheGeneratedOnes(t *testing.T) {
	files, _ := filepath.Glob("crd/*.yaml")
	if len(files) != 2 {
		t.Fatalf("CRD files %v, want one per CRD (2)", files)
	}
	for _, f := range files {
		want, _ := os.ReadFile(f)
		got, err := os.ReadFile(filepath.Join("..", "helm", "goray-operator", "crds", filepath.Base(f)))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("helm chart's crds/%s differs from %s (run operator/hack/generate.sh): %v", filepath.Base(f), f, err)
		}
	}
}

// renderChart renders the chart's templates with its values.yaml, as
// `helm template` would (the templates use no functions).
func renderChart(t *testing.T, release, namespace string) []byte {
	dir := filepath.Join("..", "helm", "goray-operator")
	b, err := os.ReadFile(filepath.Join(dir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(b, &values); err != nil {
		t.Fatal(err)
	}
	data := map[string]any{"Values": values, "Release": map[string]any{"Name": release, "Namespace": namespace}}
	files, _ := filepath.Glob(filepath.Join(dir, "templates", "*.yaml"))
	var out bytes.Buffer
	for _, f := range files {
		tmpl, err := template.New(filepath.Base(f)).Option("missingkey=error").ParseFiles(f)
		if err != nil {
			t.Fatal(err)
		}
		out.WriteString("---\n")
		if err := tmpl.Execute(&out, data); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	return out.Bytes()
}

func objects(t *testing.T, docs []byte) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	dec := yaml.NewDecoder(bytes.NewReader(docs))
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if m == nil {
			continue
		}
		j, _ := sigsyaml.Marshal(m)
		var u unstructured.Unstructured
		if err := sigsyaml.Unmarshal(j, &u.Object); err != nil {
			t.Fatal(err)
		}
		out = append(out, &u)
	}
	return out
}

func readAll(t *testing.T, globs ...string) []byte {
	var b bytes.Buffer
	for _, g := range globs {
		files, _ := filepath.Glob(g)
		for _, f := range files {
			d, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			b.WriteString("---\n")
			b.Write(d)
		}
	}
	return b.Bytes()
}

// TestDeploymentFilesWorkOnAnAPIServer creates the plain manifests and the
// rendered Helm chart on the test API server, then runs the operator as
// its ServiceAccount (impersonated) to show the ClusterRole covers what it
// does: an autoscaled cluster's pods, Service, Secret and autoscaler RBAC.
func TestDeploymentFilesWorkOnAnAPIServer(t *testing.T) {
	env, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer env.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := env.Client
	create := func(objs []*unstructured.Unstructured) {
		for _, o := range objs {
			if err := c.Create(ctx, o); err != nil {
				t.Fatalf("create %s %s: %v", o.GetKind(), o.GetName(), err)
			}
		}
	}
	var kinds []string
	plain := objects(t, readAll(t, "manager/namespace.yaml", "rbac/*.yaml", "manager/deployment.yaml"))
	create(plain)
	for _, o := range plain {
		kinds = append(kinds, o.GetKind())
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "helm-ns"}}); err != nil {
		t.Fatal(err)
	}
	chart := objects(t, renderChart(t, "goray-helm", "helm-ns"))
	create(chart)
	for _, o := range chart {
		kinds = append(kinds, o.GetKind())
	}
	if got := strings.Join(kinds, ","); got != "Namespace,ClusterRole,ClusterRoleBinding,ServiceAccount,Deployment,ClusterRole,ClusterRoleBinding,Deployment,ServiceAccount" {
		t.Errorf("kinds created: %s", got)
	}

	// The operator as goray-system/goray-operator.
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:goray-system:goray-operator"}
	mgr, err := manager.New(cfg, manager.Config{MetricsAddr: "0", ProbeAddr: "0", SkipNameValidation: true})
	if err != nil {
		t.Fatal(err)
	}
	mctx, mcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	defer func() { mcancel(); <-done }()

	rc := &rayv1.RayCluster{ObjectMeta: metav1.ObjectMeta{Name: "rbac", Namespace: "default"}}
	rc.Spec.EnableInTreeAutoscaling = ptr.To(true)
	rc.Spec.HeadGroupSpec.Template.Spec.Containers = []corev1.Container{{Name: "ray-head", Image: "goray:test"}}
	g := rayv1.WorkerGroupSpec{GroupName: "g", Replicas: ptr.To[int32](1)}
	g.Template.Spec.Containers = []corev1.Container{{Name: "w", Image: "goray:test"}}
	rc.Spec.WorkerGroupSpecs = []rayv1.WorkerGroupSpec{g}
	if err := c.Create(ctx, rc); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var pods corev1.PodList
		c.List(ctx, &pods, client.InNamespace("default"), client.MatchingLabels{raycluster.LabelCluster: "rbac"})
		var cur rayv1.RayCluster
		c.Get(ctx, client.ObjectKeyFromObject(rc), &cur)
		if len(pods.Items) == 2 && cur.Status.DesiredWorkerReplicas == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the operator, with its ClusterRole only, did not make the cluster: %d pods, status %+v", len(pods.Items), cur.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
