package raycluster

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilrand "k8s.io/apimachinery/pkg/util/rand"

	"github.com/goray/goray/internal/version"
	rayv1 "github.com/goray/goray/operator/api/v1"
)

// Labels the operator puts on every pod it creates (KubeRay's keys).
const (
	LabelCluster    = "ray.io/cluster"
	LabelNodeType   = "ray.io/node-type"
	LabelGroup      = "ray.io/group"
	LabelIsRayNode  = "ray.io/is-ray-node"
	LabelIdentifier = "ray.io/identifier"
	LabelAppName    = "app.kubernetes.io/name"
	LabelCreatedBy  = "app.kubernetes.io/created-by"

	// Multi-host indexing: every worker pod's replica index in its group,
	// and, in groups of numOfHosts > 1, its replica's name and its host
	// index in the replica.
	LabelReplicaIndex = "ray.io/worker-group-replica-index"
	LabelReplicaName  = "ray.io/worker-group-replica-name"
	LabelHostIndex    = "ray.io/replica-host-index"

	// AnnotationPodTemplateHash on a pod is the hash of the template it
	// was built from (KubeRay's key), for upgradeStrategy Recreate.
	AnnotationPodTemplateHash = "ray.io/pod-template-hash"

	// AnnotationAuthTokenHash on a pod is the hash (TokenHash) of the
	// cluster token in the operator's <cluster>-auth Secret when the pod
	// was made: a pod whose hash is not the Secret's started with another
	// token and cannot join the cluster's other pods.
	AnnotationAuthTokenHash = "ray.io/auth-token-hash"

	NodeTypeHead   = "head"
	NodeTypeWorker = "worker"
	HeadGroupName  = "headgroup"
	appName        = "kuberay"
	createdBy      = "kuberay-operator"

	// AuthTokenKey is the Secret key holding the cluster token.
	AuthTokenKey = "auth_token"

	// EnvPodIP holds the pod's IP in the goray containers; the head's
	// GORAY_ADDRESS refers to it as $(GORAY_POD_IP).
	EnvPodIP = "GORAY_POD_IP"
)

// Default ports of the head's services and every node's agent.
const (
	DefaultGCSPort       = 6379
	DefaultDashboardPort = 8265
	DefaultClientPort    = 10001
	DefaultMetricsPort   = 8080
	DefaultAgentPort     = 52365
)

// Options are the operator-wide settings that shape pods.
type Options struct {
	// ClusterDomain is the DNS suffix of services (default cluster.local).
	ClusterDomain string
	// NoInitContainer leaves out the workers' wait-gcs-ready init container.
	NoInitContainer bool
	// NoProbes leaves out the liveness and readiness probes.
	NoProbes bool
	// DeterministicHeadName names the head pod <cluster>-head instead of
	// a generated name (ENABLE_DETERMINISTIC_HEAD_POD_NAME).
	DeterministicHeadName bool
}

func (o Options) domain() string {
	if o.ClusterDomain == "" {
		return "cluster.local"
	}
	return o.ClusterDomain
}

// HeadServiceName is the name of the head Service.
func HeadServiceName(rc *rayv1.RayCluster) string {
	if s := rc.Spec.HeadGroupSpec.HeadService; s != nil && s.Name != "" {
		return s.Name
	}
	return rc.Name + "-head-svc"
}

// AuthSecretName is the Secret holding the cluster token ("" when
// authentication is disabled).
func AuthSecretName(rc *rayv1.RayCluster) string {
	a := rc.Spec.AuthOptions
	switch {
	case a != nil && a.Mode == rayv1.AuthModeDisabled:
		return ""
	case a != nil && a.SecretName != "":
		return a.SecretName
	}
	return rc.Name + "-auth"
}

func gcsPort(rc *rayv1.RayCluster) int {
	if p, err := strconv.Atoi(rc.Spec.HeadGroupSpec.RayStartParams["port"]); err == nil && p > 0 {
		return p
	}
	return DefaultGCSPort
}

func dashboardPort(rc *rayv1.RayCluster) int {
	if p, err := strconv.Atoi(rc.Spec.HeadGroupSpec.RayStartParams["dashboard-port"]); err == nil && p > 0 {
		return p
	}
	return DefaultDashboardPort
}

func agentPort(params map[string]string) int {
	if p, err := strconv.Atoi(params["dashboard-agent-listen-port"]); err == nil && p > 0 {
		return p
	}
	return DefaultAgentPort
}

// HeadAddress is the GCS address workers join: the head Service's FQDN.
func HeadAddress(rc *rayv1.RayCluster, o Options) string {
	return fmt.Sprintf("%s.%s.svc.%s:%d", HeadServiceName(rc), rc.Namespace, o.domain(), gcsPort(rc))
}

// podLabels are the labels of the pods of one group.
func podLabels(rc *rayv1.RayCluster, nodeType, group string) map[string]string {
	return map[string]string{
		LabelCluster:    rc.Name,
		LabelNodeType:   nodeType,
		LabelGroup:      group,
		LabelIsRayNode:  "yes",
		LabelIdentifier: rc.Name + "-" + nodeType,
		LabelAppName:    appName,
		LabelCreatedBy:  createdBy,
	}
}

// explicitBooleans keep `=true`/`=false` when rendered (as in KubeRay).
var explicitBooleans = map[string]bool{"log-color": true, "include-dashboard": true, "include-log-monitor": true}

// StartCommand renders `goray start` from start parameters as KubeRay
// renders `ray start`: flags in sorted key order, "true" as a bare flag,
// "false" left out, anything else as --key=value, each flag padded with a
// space on both sides.
func StartCommand(head bool, params map[string]string) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("goray start")
	if head {
		b.WriteString(" --head")
	}
	b.WriteString(" ")
	for _, k := range keys {
		v := params[k]
		switch {
		case explicitBooleans[k]:
			fmt.Fprintf(&b, " --%s=%s ", k, v)
		case strings.EqualFold(v, "true"):
			fmt.Fprintf(&b, " --%s ", k)
		case strings.EqualFold(v, "false"):
		default:
			fmt.Fprintf(&b, " --%s=%s ", k, v)
		}
	}
	return b.String()
}

// startParams completes a group's rayStartParams with what the operator
// adds: ports, --block, the head's address, and resources and labels from
// the group's fields or its container's resources.
func startParams(rc *rayv1.RayCluster, head bool, given map[string]string, resources, labels map[string]string, c *corev1.Container, o Options) map[string]string {
	p := make(map[string]string, len(given)+8)
	for k, v := range given {
		p[k] = v
	}
	setDefault := func(k, v string) {
		if _, ok := p[k]; !ok {
			p[k] = v
		}
	}
	if head {
		setDefault("dashboard-host", "0.0.0.0")
		if autoscaling(rc) {
			p["no-monitor"] = "true"
		}
	} else {
		setDefault("address", HeadAddress(rc, o))
	}
	setDefault("metrics-export-port", strconv.Itoa(DefaultMetricsPort))
	setDefault("dashboard-agent-listen-port", strconv.Itoa(DefaultAgentPort))
	p["block"] = "true"

	// Container resources, where the params say nothing.
	lim, req := c.Resources.Limits, c.Resources.Requests
	pick := func(name corev1.ResourceName) (resource.Quantity, bool) {
		if q, ok := lim[name]; ok {
			return q, true
		}
		q, ok := req[name]
		return q, ok
	}
	if q, ok := pick(corev1.ResourceCPU); ok {
		setDefault("num-cpus", strconv.FormatInt(q.Value(), 10))
	}
	if q, ok := lim[corev1.ResourceMemory]; ok {
		setDefault("memory", strconv.FormatInt(q.Value(), 10))
	}
	gpuKeys := make([]string, 0)
	for name := range lim {
		if strings.HasSuffix(string(name), "gpu") {
			gpuKeys = append(gpuKeys, string(name))
		}
	}
	sort.Strings(gpuKeys)
	if len(gpuKeys) > 0 {
		q := lim[corev1.ResourceName(gpuKeys[0])]
		if !q.IsZero() {
			setDefault("num-gpus", strconv.FormatInt(q.Value(), 10))
		}
	}

	// The group's resources field overrides the params.
	if len(resources) > 0 {
		custom := map[string]float64{}
		for name, v := range resources {
			q, err := resource.ParseQuantity(v)
			if err != nil {
				continue // rejected by validate
			}
			switch name {
			case "CPU":
				p["num-cpus"] = formatQuantity(q)
			case "GPU":
				p["num-gpus"] = formatQuantity(q)
			case "memory":
				p["memory"] = strconv.FormatInt(q.Value(), 10)
			default:
				custom[name] = q.AsApproximateFloat64()
			}
		}
		if len(custom) > 0 {
			b, _ := json.Marshal(custom) // sorted keys
			p["resources"] = "'" + string(b) + "'"
		}
	}
	if len(labels) > 0 {
		keys := make([]string, 0, len(labels))
		for k := range labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + "=" + labels[k]
		}
		p["labels"] = strings.Join(parts, ",")
	}
	return p
}

func formatQuantity(q resource.Quantity) string {
	return strconv.FormatFloat(q.AsApproximateFloat64(), 'f', -1, 64)
}

func autoscalerVersion(rc *rayv1.RayCluster) rayv1.AutoscalerVersion {
	if o := rc.Spec.AutoscalerOptions; o != nil && o.Version != nil {
		return *o.Version
	}
	return ""
}

func autoscaling(rc *rayv1.RayCluster) bool {
	return rc.Spec.EnableInTreeAutoscaling != nil && *rc.Spec.EnableInTreeAutoscaling
}

// BuildHeadPod returns the head pod of rc (not yet created).
func BuildHeadPod(rc *rayv1.RayCluster, o Options) *corev1.Pod {
	h := &rc.Spec.HeadGroupSpec
	pod := buildPod(rc, h.Template, podLabels(rc, NodeTypeHead, HeadGroupName), h.Labels, generateName(rc.Name+"-head-"))
	if o.DeterministicHeadName {
		pod.GenerateName, pod.Name = "", strings.ToLower(truncate(rc.Name+"-head", 63))
	}
	c := &pod.Spec.Containers[0]
	if v := autoscalerVersion(rc); v != "" {
		setDefaultEnv(c, "RAY_enable_autoscaler_v2", fmt.Sprint(v == "v2"))
	}
	params := startParams(rc, true, h.RayStartParams, h.Resources, h.Labels, c, o)
	setCommand(rc, c, StartCommand(true, params))
	port := gcsPort(rc)
	addEnv(c, rc, true, params, o)
	// As KubeRay: the GCS listens on every interface of the pod.
	setDefaultEnv(c, "RAY_ADDRESS", fmt.Sprintf("127.0.0.1:%d", port))
	setDefaultEnv(c, "GORAY_ADDRESS", fmt.Sprintf("127.0.0.1:%d", port))
	if len(c.Ports) == 0 {
		c.Ports = []corev1.ContainerPort{
			{Name: "gcs-server", ContainerPort: int32(port)},
			{Name: "dashboard", ContainerPort: int32(dashboardPort(rc))},
			{Name: "client", ContainerPort: DefaultClientPort},
		}
	}
	addMetricsPort(c)
	if !o.NoProbes {
		setProbes(c, agentPort(params), "/api/gcs_healthz", dashboardPort(rc), 5)
	}
	if autoscaling(rc) {
		a := autoscalerContainer(rc, c)
		logs := logsVolume(&pod.Spec, c)
		shared := true
		for _, m := range a.VolumeMounts {
			shared = shared && m.MountPath != logs.MountPath // the user's own mount wins
		}
		if shared {
			a.VolumeMounts = append(a.VolumeMounts, logs)
		}
		pod.Spec.Containers = append(pod.Spec.Containers, a)
		if pod.Spec.ServiceAccountName == "" {
			pod.Spec.ServiceAccountName = rc.Name
		}
	}
	return pod
}

// BuildWorkerPod returns a worker pod of group g of rc (not yet created).
func BuildWorkerPod(rc *rayv1.RayCluster, g *rayv1.WorkerGroupSpec, o Options) *corev1.Pod {
	pod := buildPod(rc, g.Template, podLabels(rc, NodeTypeWorker, g.GroupName), g.Labels, workerGenerateName(rc, g))
	c := &pod.Spec.Containers[0]
	params := startParams(rc, false, g.RayStartParams, g.Resources, g.Labels, c, o)
	setCommand(rc, c, StartCommand(false, params))
	addEnv(c, rc, false, params, o)
	fqdn := fmt.Sprintf("%s.%s.svc.%s", HeadServiceName(rc), rc.Namespace, o.domain())
	setDefaultEnv(c, "RAY_ADDRESS", HeadAddress(rc, o))
	setDefaultEnv(c, "GORAY_ADDRESS", HeadAddress(rc, o))
	setDefaultEnv(c, "FQ_RAY_IP", fqdn)
	setDefaultEnv(c, "RAY_IP", HeadServiceName(rc))
	addMetricsPort(c)
	if !o.NoProbes {
		setProbes(c, agentPort(params), "/api/local_raylet_healthz", agentPort(params), 2)
	}
	if !o.NoInitContainer {
		init := corev1.Container{
			Name:            "wait-gcs-ready",
			Image:           c.Image,
			ImagePullPolicy: c.ImagePullPolicy,
			Command:         []string{"/bin/bash", "-c", "--"},
			Args:            []string{fmt.Sprintf("until goray health-check --address=%s >/dev/null 2>&1; do echo waiting for the GCS at %s; sleep 5; done", HeadAddress(rc, o), HeadAddress(rc, o))},
			Env:             []corev1.EnvVar{{Name: "FQ_RAY_IP", Value: fqdn}, {Name: "RAY_IP", Value: HeadServiceName(rc)}},
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m"), corev1.ResourceMemory: resource.MustParse("256Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m"), corev1.ResourceMemory: resource.MustParse("256Mi")},
			},
		}
		pod.Spec.InitContainers = append([]corev1.Container{init}, pod.Spec.InitContainers...)
	}
	return pod
}

// generateName is KubeRay's pod name prefix: at most 50 characters,
// lower case.
func generateName(prefix string) string { return strings.ToLower(truncate(prefix, 50)) }

func workerGenerateName(rc *rayv1.RayCluster, g *rayv1.WorkerGroupSpec) string {
	return generateName(rc.Name + "-" + g.GroupName + "-worker-")
}

// replicaName names a new replica of a multi-host group:
// <group>-<5 random characters>, a valid label value.
func replicaName(g *rayv1.WorkerGroupSpec) string {
	return strings.TrimRight(truncate(g.GroupName, 57), "-_.") + "-" + utilrand.String(5)
}

// TemplateHash is the hash of a head or group pod template (the
// template alone, as KubeRay hashes it: replicas or workersToDelete
// changes roll nothing).
// TokenHash is what AnnotationAuthTokenHash holds for token: a short
// SHA-256 digest, which names the token without giving it away.
func TokenHash(token []byte) string {
	sum := sha256.Sum256(token)
	return hex.EncodeToString(sum[:8])
}

func TemplateHash(tmpl *corev1.PodTemplateSpec) string {
	b, _ := json.Marshal(tmpl)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

func buildPod(rc *rayv1.RayCluster, tmpl corev1.PodTemplateSpec, labels, nodeLabels map[string]string, prefix string) *corev1.Pod {
	t := tmpl.DeepCopy()
	pod := &corev1.Pod{
		ObjectMeta: *t.ObjectMeta.DeepCopy(),
		Spec:       t.Spec,
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[AnnotationPodTemplateHash] = TemplateHash(&tmpl)
	pod.Name = ""
	pod.GenerateName = prefix
	pod.Namespace = rc.Namespace
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	for k, v := range nodeLabels {
		if _, ok := pod.Labels[k]; !ok {
			pod.Labels[k] = v
		}
	}
	for _, k := range []string{LabelIsRayNode, LabelIdentifier, LabelAppName, LabelCreatedBy} {
		if _, ok := pod.Labels[k]; !ok {
			pod.Labels[k] = labels[k]
		}
	}
	for _, k := range []string{LabelCluster, LabelNodeType, LabelGroup} { // not overridable
		pod.Labels[k] = labels[k]
	}
	pod.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(rc, rayv1.GroupVersion.WithKind("RayCluster"))}
	if autoscalerVersion(rc) == "v2" && autoscaling(rc) {
		// Autoscaler v2 replaces a node whose goray ended rather than
		// restarting it in place.
		pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	}
	if pod.Spec.RestartPolicy == "" {
		pod.Spec.RestartPolicy = corev1.RestartPolicyAlways
	}
	// /dev/shm backs the object store.
	hasShm := false
	for _, v := range pod.Spec.Volumes {
		if v.Name == "shared-mem" {
			hasShm = true
		}
	}
	if !hasShm {
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: "shared-mem", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}})
		c := &pod.Spec.Containers[0]
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "shared-mem", MountPath: "/dev/shm"})
	}
	return pod
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// OverwriteContainerCmdAnnotation on a RayCluster, "true", leaves the
// user's command and args alone (KubeRay); the generated command is still
// in KUBERAY_GEN_RAY_START_CMD for the user's command to run.
const OverwriteContainerCmdAnnotation = "ray.io/overwrite-container-cmd"

// setCommand runs cmd through bash after raising the open-files limit; a
// user command is run first, and one that already starts goray (or ray),
// or any with the overwrite annotation, is left alone.
func setCommand(rc *rayv1.RayCluster, c *corev1.Container, start string) {
	setDefaultEnv(c, "KUBERAY_GEN_RAY_START_CMD", start)
	if strings.EqualFold(rc.Annotations[OverwriteContainerCmdAnnotation], "true") {
		return
	}
	user := strings.TrimSpace(strings.Join(append(append([]string{}, c.Command...), c.Args...), " "))
	if strings.Contains(user, "goray start") || strings.Contains(user, "ray start") {
		return
	}
	cmd := "ulimit -n ${RAY_START_ULIMIT_OPEN_FILES:-65536}; " + start
	if user != "" {
		cmd = user + " && " + cmd
	}
	c.Command = []string{"/bin/bash", "-c", "--"}
	c.Args = []string{cmd}
}

func setDefaultEnv(c *corev1.Container, name, value string) {
	for _, e := range c.Env {
		if e.Name == name {
			return
		}
	}
	c.Env = append(c.Env, corev1.EnvVar{Name: name, Value: value})
}

func fieldEnv(c *corev1.Container, name, path string) {
	for _, e := range c.Env {
		if e.Name == name {
			return
		}
	}
	c.Env = append(c.Env, corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}})
}

// addEnv gives the goray container the cluster's identity and token.
func addEnv(c *corev1.Container, rc *rayv1.RayCluster, head bool, params map[string]string, o Options) {
	fieldEnv(c, EnvPodIP, "status.podIP")
	fieldEnv(c, "RAY_CLUSTER_NAME", "metadata.labels['"+LabelCluster+"']")
	fieldEnv(c, "RAY_CLUSTER_NAMESPACE", "metadata.namespace")
	fieldEnv(c, "RAY_CLOUD_INSTANCE_ID", "metadata.name")
	fieldEnv(c, "RAY_NODE_TYPE_NAME", "metadata.labels['"+LabelGroup+"']")
	setDefaultEnv(c, "RAY_PORT", strconv.Itoa(gcsPort(rc)))
	setDefaultEnv(c, "RAY_USAGE_STATS_KUBERAY_IN_USE", "1")
	setDefaultEnv(c, "RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE", "1")
	if head {
		setDefaultEnv(c, "RAY_USAGE_STATS_EXTRA_TAGS", fmt.Sprintf("kuberay_version=%s;kuberay_crd=%s", version.Version, originCRD(rc)))
	}
	if secret := AuthSecretName(rc); secret != "" {
		setDefaultEnv(c, "RAY_AUTH_MODE", "token")
		for _, name := range []string{"GORAY_AUTH_TOKEN", "RAY_AUTH_TOKEN"} {
			found := false
			for _, e := range c.Env {
				found = found || e.Name == name
			}
			if !found {
				c.Env = append(c.Env, corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
					LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: AuthTokenKey,
				}}})
			}
		}
	} else {
		setDefaultEnv(c, "GORAY_AUTH_MODE", "disabled")
		setDefaultEnv(c, "RAY_AUTH_MODE", "disabled")
	}
}

func addMetricsPort(c *corev1.Container) {
	for _, p := range c.Ports {
		if p.Name == "metrics" {
			return
		}
	}
	c.Ports = append(c.Ports, corev1.ContainerPort{Name: "metrics", ContainerPort: DefaultMetricsPort})
}

// setProbes adds probes where the user set none: liveness is the agent's
// /api/healthz, readiness the given endpoint (the head's /api/gcs_healthz on
// the dashboard, a worker's /api/local_raylet_healthz on the agent). They
// are HTTP GETs on the pod's IP, where goray listens (no shell or wget
// needed in the image).
func setProbes(c *corev1.Container, agent int, readyPath string, readyPort int, timeout int32) {
	if c.LivenessProbe == nil {
		c.LivenessProbe = &corev1.Probe{
			ProbeHandler:        corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/api/healthz", Port: intstr.FromInt32(int32(agent))}},
			InitialDelaySeconds: 30, PeriodSeconds: 5, TimeoutSeconds: timeout, SuccessThreshold: 1, FailureThreshold: 120,
		}
	}
	if c.ReadinessProbe == nil {
		c.ReadinessProbe = &corev1.Probe{
			ProbeHandler:        corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: readyPath, Port: intstr.FromInt32(int32(readyPort))}},
			InitialDelaySeconds: 10, PeriodSeconds: 5, TimeoutSeconds: timeout, SuccessThreshold: 1, FailureThreshold: 10,
		}
	}
}

// originCRD is the kind of the resource the cluster was made for:
// RayCluster, or RayJob for a RayJob's cluster (its label
// ray.io/originated-from-crd).
func originCRD(rc *rayv1.RayCluster) string {
	if k := rc.Labels["ray.io/originated-from-crd"]; k != "" {
		return k
	}
	return "RayCluster"
}

// logsVolume is where the Ray container keeps /tmp/ray, which the
// autoscaler reads too (KubeRay's ray-logs emptyDir): the user's mount
// there if any, else an added ray-logs emptyDir.
func logsVolume(spec *corev1.PodSpec, c *corev1.Container) corev1.VolumeMount {
	const path = "/tmp/ray"
	for _, m := range c.VolumeMounts {
		if m.MountPath == path {
			return m
		}
	}
	m := corev1.VolumeMount{Name: "ray-logs", MountPath: path}
	spec.Volumes = append(spec.Volumes, corev1.Volume{Name: m.Name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	c.VolumeMounts = append(c.VolumeMounts, m)
	return m
}

// autoscalerContainer is the head pod's `goray kuberay-autoscaler` sidecar.
func autoscalerContainer(rc *rayv1.RayCluster, head *corev1.Container) corev1.Container {
	o := rc.Spec.AutoscalerOptions
	if o == nil {
		o = &rayv1.AutoscalerOptions{}
	}
	cmd := "goray kuberay-autoscaler --cluster-name $(RAY_CLUSTER_NAME) --cluster-namespace $(RAY_CLUSTER_NAMESPACE)"
	c := corev1.Container{
		Name:            "autoscaler",
		Image:           head.Image,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Command:         []string{"/bin/bash", "-c", "--"},
		Args:            []string{cmd},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("512Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("512Mi")},
		},
	}
	if o.Image != nil {
		c.Image = *o.Image
	}
	if o.ImagePullPolicy != nil {
		c.ImagePullPolicy = *o.ImagePullPolicy
	}
	if o.Resources != nil {
		c.Resources = *o.Resources.DeepCopy()
	}
	// The user's command and args replace the generated ones (KubeRay);
	// KUBERAY_GEN_AUTOSCALER_START_CMD still holds the generated line.
	if len(o.Command) > 0 {
		c.Command = append([]string(nil), o.Command...)
	}
	if len(o.Args) > 0 {
		c.Args = append([]string(nil), o.Args...)
	}
	c.SecurityContext = o.SecurityContext.DeepCopy()
	c.Env = append(c.Env, o.Env...)
	c.EnvFrom = append(c.EnvFrom, o.EnvFrom...)
	c.VolumeMounts = append(c.VolumeMounts, o.VolumeMounts...)
	fieldEnv(&c, "RAY_CLUSTER_NAME", "metadata.labels['"+LabelCluster+"']")
	fieldEnv(&c, "RAY_CLUSTER_NAMESPACE", "metadata.namespace")
	fieldEnv(&c, "RAY_HEAD_POD_NAME", "metadata.name")
	setDefaultEnv(&c, "KUBERAY_CRD_VER", "v1")
	setDefaultEnv(&c, "KUBERAY_GEN_AUTOSCALER_START_CMD", cmd)
	fieldEnv(&c, EnvPodIP, "status.podIP")
	setDefaultEnv(&c, "GORAY_ADDRESS", fmt.Sprintf("$(%s):%d", EnvPodIP, gcsPort(rc)))
	for _, e := range head.Env { // the token, so the autoscaler reaches the GCS
		if e.Name == "GORAY_AUTH_TOKEN" || e.Name == "GORAY_AUTH_MODE" {
			c.Env = append(c.Env, e)
		}
	}
	return c
}
