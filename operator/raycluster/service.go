package raycluster

import (
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	rayv1 "github.com/goray/goray/operator/api/v1"
)

// BuildHeadService returns the head Service of rc: the head container's
// named ports (gcs-server 6379, dashboard 8265, client 10001, metrics 8080
// by default), headless for ClusterIP as in KubeRay.
func BuildHeadService(rc *rayv1.RayCluster, o Options) *corev1.Service {
	svc := &corev1.Service{}
	if h := rc.Spec.HeadGroupSpec.HeadService; h != nil {
		svc = h.DeepCopy()
	}
	svc.Name = HeadServiceName(rc)
	svc.Namespace = rc.Namespace
	labels := podLabels(rc, NodeTypeHead, HeadGroupName)
	if svc.Labels == nil {
		svc.Labels = map[string]string{}
	}
	svc.Labels[LabelCluster] = rc.Name
	svc.Labels[LabelNodeType] = NodeTypeHead
	if len(rc.Spec.HeadServiceAnnotations) > 0 && svc.Annotations == nil {
		svc.Annotations = map[string]string{}
	}
	for k, v := range rc.Spec.HeadServiceAnnotations {
		svc.Annotations[k] = v
	}
	svc.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(rc, rayv1.GroupVersion.WithKind("RayCluster"))}
	svc.Spec.Selector = map[string]string{
		LabelCluster: rc.Name, LabelNodeType: NodeTypeHead, LabelIdentifier: labels[LabelIdentifier],
		LabelAppName: appName, LabelCreatedBy: createdBy,
	}
	if t := rc.Spec.HeadGroupSpec.ServiceType; t != "" {
		svc.Spec.Type = t
	}
	if svc.Spec.Type == "" {
		svc.Spec.Type = corev1.ServiceTypeClusterIP
	}
	if svc.Spec.Type == corev1.ServiceTypeClusterIP && svc.Spec.ClusterIP == "" {
		svc.Spec.ClusterIP = corev1.ClusterIPNone
		svc.Spec.PublishNotReadyAddresses = true
	}
	if len(svc.Spec.Ports) == 0 {
		svc.Spec.Ports = headServicePorts(rc)
	}
	return svc
}

func headServicePorts(rc *rayv1.RayCluster) []corev1.ServicePort {
	ports := map[string]int32{}
	if cs := rc.Spec.HeadGroupSpec.Template.Spec.Containers; len(cs) > 0 {
		for _, p := range cs[0].Ports {
			name := p.Name
			if name == "" {
				name = fmt.Sprintf("%d-port", p.ContainerPort)
			}
			ports[name] = p.ContainerPort
		}
	}
	if len(ports) == 0 {
		ports = map[string]int32{
			"gcs-server": int32(gcsPort(rc)),
			"dashboard":  int32(dashboardPort(rc)),
			"client":     DefaultClientPort,
		}
	}
	if _, ok := ports["metrics"]; !ok {
		ports["metrics"] = DefaultMetricsPort
	}
	names := make([]string, 0, len(ports))
	for n := range ports {
		names = append(names, n)
	}
	sort.Strings(names)
	tcp := "tcp"
	out := make([]corev1.ServicePort, len(names))
	for i, n := range names {
		out[i] = corev1.ServicePort{Name: n, Port: ports[n], TargetPort: intstr.FromInt32(ports[n]), AppProtocol: &tcp}
	}
	return out
}

// HeadlessServiceName is the headless worker Service of a cluster with
// multi-host groups.
func HeadlessServiceName(rc *rayv1.RayCluster) string { return rc.Name + "-headless" }

// BuildHeadlessWorkerService returns the headless Service over rc's
// worker pods (KubeRay's, for multi-host groups): each pod gets a DNS
// record its hosts can find one another by, ready or not.
func BuildHeadlessWorkerService(rc *rayv1.RayCluster) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name: HeadlessServiceName(rc), Namespace: rc.Namespace,
			Labels:          map[string]string{LabelCluster: rc.Name, LabelNodeType: NodeTypeWorker},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(rc, rayv1.GroupVersion.WithKind("RayCluster"))},
		},
		Spec: corev1.ServiceSpec{
			ClusterIP:                corev1.ClusterIPNone,
			Selector:                 map[string]string{LabelCluster: rc.Name, LabelNodeType: NodeTypeWorker},
			PublishNotReadyAddresses: true,
		},
	}
}

func multiHost(rc *rayv1.RayCluster) bool {
	for i := range rc.Spec.WorkerGroupSpecs {
		if hosts(&rc.Spec.WorkerGroupSpecs[i]) > 1 {
			return true
		}
	}
	return false
}
