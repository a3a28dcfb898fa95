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
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
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
// `helm template` would, with set deep-merged over the values as
// `--set` does; the templates use Helm's toYaml and nindent, given here.
func renderChart(t *testing.T, release, namespace string, set map[string]any) []byte {
	dir := filepath.Join("..", "helm", "goray-operator")
	b, err := os.ReadFile(filepath.Join(dir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(b, &values); err != nil {
		t.Fatal(err)
	}
	merge(values, set)
	data := map[string]any{"Values": values, "Release": map[string]any{"Name": release, "Namespace": namespace}}
	funcs := template.FuncMap{
		"toYaml": func(v any) (string, error) {
			b, err := sigsyaml.Marshal(v)
			return strings.TrimSuffix(string(b), "\n"), err
		},
		"nindent": func(n int, s string) string {
			pad := strings.Repeat(" ", n)
			return "\n" + pad + strings.ReplaceAll(s, "\n", "\n"+pad)
		},
	}
	files, _ := filepath.Glob(filepath.Join(dir, "templates", "*.yaml"))
	var out bytes.Buffer
	for _, f := range files {
		tmpl, err := template.New(filepath.Base(f)).Funcs(funcs).Option("missingkey=error").ParseFiles(f)
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

// merge sets src's values into dst, map by map, as Helm merges --set.
func merge(dst, src map[string]any) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				merge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
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
	chart := objects(t, renderChart(t, "goray-helm", "helm-ns", nil))
	create(chart)
	for _, o := range chart {
		kinds = append(kinds, o.GetKind())
	}
	if got := strings.Join(kinds, ","); got != "Namespace,ClusterRole,ClusterRoleBinding,ServiceAccount,Deployment,ClusterRole,ClusterRoleBinding,Deployment,ServiceAccount" {
		t.Errorf("kinds created: %s", got)
	}
	checkChartValues(ctx, t, c, create)

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

// checkChartValues installs a second release of the same name in another
// namespace with the scheduling and resource values set (as --set would):
// its cluster-wide objects do not collide with the first's, and the
// Deployment the API server stored carries the values.
func checkChartValues(ctx context.Context, t *testing.T, c client.Client, create func([]*unstructured.Unstructured)) {
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "helm-ns2"}}); err != nil {
		t.Fatal(err)
	}
	set := map[string]any{}
	for _, kv := range []string{
		"resources:\n  limits:\n    cpu: \"2\"",
		"nodeSelector:\n  kubernetes.io/os: linux",
		"tolerations:\n- {key: dedicated, operator: Equal, value: ray, effect: NoSchedule}",
		"affinity:\n  nodeAffinity:\n    requiredDuringSchedulingIgnoredDuringExecution:\n      nodeSelectorTerms:\n      - matchExpressions:\n        - {key: pool, operator: In, values: [ops]}",
		"imagePullSecrets:\n- name: regcred",
	} {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(kv), &m); err != nil {
			t.Fatal(err)
		}
		merge(set, m)
	}
	create(objects(t, renderChart(t, "goray-helm", "helm-ns2", set)))

	var crb rbacv1.ClusterRoleBinding
	if err := c.Get(ctx, client.ObjectKey{Name: "helm-ns2-goray-helm"}, &crb); err != nil {
		t.Fatal(err)
	}
	if crb.RoleRef.Name != "helm-ns2-goray-helm" || crb.Subjects[0].Namespace != "helm-ns2" {
		t.Errorf("second release's ClusterRoleBinding %+v", crb)
	}
	var d appsv1.Deployment
	if err := c.Get(ctx, client.ObjectKey{Namespace: "helm-ns2", Name: "goray-helm"}, &d); err != nil {
		t.Fatal(err)
	}
	spec := d.Spec.Template.Spec
	res := spec.Containers[0].Resources
	if res.Limits.Cpu().String() != "2" || res.Limits.Memory().String() != "512Mi" || res.Requests.Cpu().String() != "100m" {
		t.Errorf("resources %+v, want limits cpu 2 over the defaults", res)
	}
	if spec.NodeSelector["kubernetes.io/os"] != "linux" || len(spec.Tolerations) != 1 || spec.Tolerations[0].Key != "dedicated" ||
		spec.Affinity == nil || spec.Affinity.NodeAffinity == nil || len(spec.ImagePullSecrets) != 1 || spec.ImagePullSecrets[0].Name != "regcred" {
		t.Errorf("scheduling of the second release: nodeSelector %v, tolerations %+v, affinity %+v, imagePullSecrets %v",
			spec.NodeSelector, spec.Tolerations, spec.Affinity, spec.ImagePullSecrets)
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "helm-ns", Name: "goray-helm"}, &d); err != nil {
		t.Fatal(err)
	}
	if spec := d.Spec.Template.Spec; spec.NodeSelector != nil || spec.Affinity != nil || spec.Tolerations != nil || spec.ImagePullSecrets != nil ||
		spec.Containers[0].Resources.Limits.Cpu().String() != "1" {
		t.Errorf("defaults rendered %+v", spec)
	}
}
