package raycluster

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/goray/goray/internal/version"
	rayv1 "github.com/goray/goray/operator/api/v1"
)

// TestStartCommandAsKubeRayRendersIt pins the rendering of KubeRay's example
// head (limits cpu=1, memory=2Gi, no params), with goray for ray.
func TestStartCommandAsKubeRayRendersIt(t *testing.T) {
	rc := &rayv1.RayCluster{ObjectMeta: metav1.ObjectMeta{Name: "rc", Namespace: "ns"}}
	rc.Spec.HeadGroupSpec.Template.Spec.Containers = []corev1.Container{{Name: "ray-head", Image: "goray", Resources: corev1.ResourceRequirements{
		Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("2Gi")},
	}}}
	pod := BuildHeadPod(rc, Options{})
	want := "ulimit -n ${RAY_START_ULIMIT_OPEN_FILES:-65536}; goray start --head  --block  --dashboard-agent-listen-port=52365  --dashboard-host=0.0.0.0  --memory=2147483648  --metrics-export-port=8080  --num-cpus=1 "
	if got := pod.Spec.Containers[0].Args[0]; got != want {
		t.Errorf("head args\n got %q\nwant %q", got, want)
	}
	for _, c := range []struct {
		params map[string]string
		want   string
	}{
		{map[string]string{"log-color": "true", "include-dashboard": "false", "disable-usage-stats": "true", "no-monitor": "false", "num-cpus": "0"},
			"goray start  --disable-usage-stats  --include-dashboard=false  --log-color=true  --num-cpus=0 "},
		{map[string]string{"resources": `'{"TPU":4}'`, "address": "h:6379"}, `goray start  --address=h:6379  --resources='{"TPU":4}' `},
	} {
		if got := StartCommand(false, c.params); got != c.want {
			t.Errorf("StartCommand(%v)\n got %q\nwant %q", c.params, got, c.want)
		}
	}
}

// TestWorkerStartParams: the group's resources and labels fields become
// flags; container limits fill what the params leave out.
func TestWorkerStartParams(t *testing.T) {
	rc := &rayv1.RayCluster{ObjectMeta: metav1.ObjectMeta{Name: "rc", Namespace: "ns"}}
	g := rayv1.WorkerGroupSpec{GroupName: "gpu", Resources: map[string]string{"CPU": "3", "TPU": "4", "memory": "1Gi"}, Labels: map[string]string{"zone": "a", "acc": "x"}}
	g.Template.Spec.Containers = []corev1.Container{{Name: "w", Resources: corev1.ResourceRequirements{
		Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), "nvidia.com/gpu": resource.MustParse("2")},
	}}}
	rc.Spec.WorkerGroupSpecs = []rayv1.WorkerGroupSpec{g}
	pod := BuildWorkerPod(rc, &rc.Spec.WorkerGroupSpecs[0], Options{})
	args := pod.Spec.Containers[0].Args[0]
	for _, want := range []string{" --address=rc-head-svc.ns.svc.cluster.local:6379 ", " --num-cpus=3 ", " --num-gpus=2 ", " --memory=1073741824 ",
		` --resources='{"TPU":4}' `, " --labels=acc=x,zone=a ", " --block ", " --metrics-export-port=8080 "} {
		if !strings.Contains(args, want) {
			t.Errorf("worker args %q lack %q", args, want)
		}
	}
	if pod.Labels[LabelGroup] != "gpu" || pod.Labels["zone"] != "a" {
		t.Errorf("labels %v", pod.Labels)
	}
	if len(pod.Spec.InitContainers) != 1 || !strings.Contains(pod.Spec.InitContainers[0].Args[0], "goray health-check --address=rc-head-svc.ns.svc.cluster.local:6379") {
		t.Errorf("init containers %+v", pod.Spec.InitContainers)
	}
}

// TestAutoscalerV2AndDeterministicHeadName: autoscalerOptions.version sets
// the head's RAY_enable_autoscaler_v2 and, for v2, restartPolicy Never;
// ENABLE_DETERMINISTIC_HEAD_POD_NAME names the head <cluster>-head.
func TestAutoscalerV2AndDeterministicHeadName(t *testing.T) {
	v2 := rayv1.AutoscalerVersion("v2")
	on := true
	rc := &rayv1.RayCluster{ObjectMeta: metav1.ObjectMeta{Name: "rc", Namespace: "ns"}}
	rc.Spec.EnableInTreeAutoscaling = &on
	rc.Spec.AutoscalerOptions = &rayv1.AutoscalerOptions{Version: &v2}
	rc.Spec.HeadGroupSpec.Template.Spec.Containers = []corev1.Container{{Name: "h"}}
	pod := BuildHeadPod(rc, Options{DeterministicHeadName: true})
	if e, ok := envValue(&pod.Spec.Containers[0], "RAY_enable_autoscaler_v2"); !ok || e.Value != "true" {
		t.Errorf("RAY_enable_autoscaler_v2 = %+v", e)
	}
	if pod.Spec.RestartPolicy != corev1.RestartPolicyNever || pod.Name != "rc-head" || pod.GenerateName != "" {
		t.Errorf("head pod %s (%q) restartPolicy %s", pod.Name, pod.GenerateName, pod.Spec.RestartPolicy)
	}
	rc.Spec.HeadGroupSpec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "RAY_enable_autoscaler_v2", Value: "1"}}
	if err := Validate(rc); err == nil {
		t.Error("version and RAY_enable_autoscaler_v2 both accepted")
	}
}

// TestOverwriteContainerCmdLeavesTheUsersCommand: with the RayCluster's
// ray.io/overwrite-container-cmd "true", the head and worker containers
// keep the user's command and args as written; the generated command is
// in KUBERAY_GEN_RAY_START_CMD. Without it the user's command runs first.
func TestOverwriteContainerCmdLeavesTheUsersCommand(t *testing.T) {
	rc := testCluster("ns", "rc", 1)
	for _, c := range []*corev1.Container{&rc.Spec.HeadGroupSpec.Template.Spec.Containers[0], &rc.Spec.WorkerGroupSpecs[0].Template.Spec.Containers[0]} {
		c.Command = []string{"/bin/sh", "-c"}
		c.Args = []string{"echo hi; $KUBERAY_GEN_RAY_START_CMD"}
	}
	rc.Annotations = map[string]string{OverwriteContainerCmdAnnotation: "true"}
	for _, pod := range []*corev1.Pod{BuildHeadPod(rc, Options{}), BuildWorkerPod(rc, &rc.Spec.WorkerGroupSpecs[0], Options{})} {
		c := &pod.Spec.Containers[0]
		if strings.Join(c.Command, " ") != "/bin/sh -c" || strings.Join(c.Args, " ") != "echo hi; $KUBERAY_GEN_RAY_START_CMD" {
			t.Errorf("%s: command %q args %q, want the user's", pod.GenerateName, c.Command, c.Args)
		}
		if e, ok := envValue(c, "KUBERAY_GEN_RAY_START_CMD"); !ok || !strings.HasPrefix(e.Value, "goray start ") {
			t.Errorf("%s: KUBERAY_GEN_RAY_START_CMD %+v", pod.GenerateName, e)
		}
	}
	rc.Annotations = nil
	c := BuildWorkerPod(rc, &rc.Spec.WorkerGroupSpecs[0], Options{}).Spec.Containers[0]
	if c.Command[0] != "/bin/bash" || !strings.HasPrefix(c.Args[0], "/bin/sh -c echo hi; $KUBERAY_GEN_RAY_START_CMD && ulimit -n ") {
		t.Errorf("without the annotation: command %q args %q", c.Command, c.Args)
	}
}

// TestAutoscaledHeadPod: autoscalerOptions.command and args replace the
// sidecar's (the generated line stays in KUBERAY_GEN_AUTOSCALER_START_CMD);
// the Ray container and the sidecar share the ray-logs emptyDir at
// /tmp/ray, or the user's own mount there; the head carries
// RAY_USAGE_STATS_EXTRA_TAGS and every Ray container
// RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE.
func TestAutoscaledHeadPod(t *testing.T) {
	rc := testCluster("ns", "rc", 1)
	rc.Spec.EnableInTreeAutoscaling = ptr.To(true)
	rc.Spec.AutoscalerOptions = &rayv1.AutoscalerOptions{Command: []string{"/bin/sh", "-c"}, Args: []string{"exec my-autoscaler"}}
	pod := BuildHeadPod(rc, Options{})
	ray, as := &pod.Spec.Containers[0], &pod.Spec.Containers[1]
	if fmt.Sprint(as.Command, as.Args) != "[/bin/sh -c] [exec my-autoscaler]" {
		t.Errorf("autoscaler command %q args %q", as.Command, as.Args)
	}
	if e, _ := envValue(as, "KUBERAY_GEN_AUTOSCALER_START_CMD"); !strings.HasPrefix(e.Value, "goray kuberay-autoscaler ") {
		t.Errorf("KUBERAY_GEN_AUTOSCALER_START_CMD %+v", e)
	}
	mount := func(c *corev1.Container) string {
		for _, m := range c.VolumeMounts {
			if m.MountPath == "/tmp/ray" {
				return m.Name
			}
		}
		return ""
	}
	if mount(ray) != "ray-logs" || mount(as) != "ray-logs" {
		t.Errorf("/tmp/ray mounts: ray %q, autoscaler %q", mount(ray), mount(as))
	}
	found := false
	for _, v := range pod.Spec.Volumes {
		found = found || (v.Name == "ray-logs" && v.EmptyDir != nil)
	}
	if !found {
		t.Errorf("no ray-logs emptyDir in %+v", pod.Spec.Volumes)
	}
	if e, _ := envValue(ray, "RAY_USAGE_STATS_EXTRA_TAGS"); e.Value != "kuberay_version="+version.Version+";kuberay_crd=RayCluster" {
		t.Errorf("RAY_USAGE_STATS_EXTRA_TAGS %+v", e)
	}
	worker := BuildWorkerPod(rc, &rc.Spec.WorkerGroupSpecs[0], Options{})
	for _, c := range []*corev1.Container{ray, &worker.Spec.Containers[0]} {
		if e, _ := envValue(c, "RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE"); e.Value != "1" {
			t.Errorf("%s: RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE %+v", c.Name, e)
		}
	}
	if _, ok := envValue(&worker.Spec.Containers[0], "RAY_USAGE_STATS_EXTRA_TAGS"); ok {
		t.Error("a worker has RAY_USAGE_STATS_EXTRA_TAGS")
	}

	// The user's own volume at /tmp/ray is shared instead; no ray-logs.
	h := &rc.Spec.HeadGroupSpec.Template.Spec
	h.Volumes = []corev1.Volume{{Name: "mine", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	h.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "mine", MountPath: "/tmp/ray"}}
	pod = BuildHeadPod(rc, Options{})
	if a := mount(&pod.Spec.Containers[1]); a != "mine" || len(pod.Spec.Volumes) != 2 {
		t.Errorf("autoscaler mounts %q at /tmp/ray; volumes %+v", a, pod.Spec.Volumes)
	}
}
