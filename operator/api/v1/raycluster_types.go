package v1

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RayClusterSpec is the desired state of a goray cluster: one head pod and
// any number of worker groups.
type RayClusterSpec struct {
	// RayVersion is informational (KubeRay gates features on it).
	// +optional
	RayVersion string `json:"rayVersion,omitempty"`
	// HeadGroupSpec describes the head pod and its service.
	HeadGroupSpec HeadGroupSpec `json:"headGroupSpec"`
	// WorkerGroupSpecs describe the groups of worker pods.
	// +optional
	WorkerGroupSpecs []WorkerGroupSpec `json:"workerGroupSpecs,omitempty"`
	// EnableInTreeAutoscaling runs the autoscaler next to the head
	// (`goray kuberay-autoscaler`); it alone then chooses which workers go.
	// +optional
	EnableInTreeAutoscaling *bool `json:"enableInTreeAutoscaling,omitempty"`
	// AutoscalerOptions tune the autoscaler container and its behaviour.
	// +optional
	AutoscalerOptions *AutoscalerOptions `json:"autoscalerOptions,omitempty"`
	// Suspend deletes every pod of the cluster while true.
	// +optional
	Suspend *bool `json:"suspend,omitempty"`
	// ManagedBy names the controller that reconciles this cluster; another
	// value than ray.io/kuberay-operator makes this operator leave it alone.
	// +optional
	ManagedBy *string `json:"managedBy,omitempty"`
	// HeadServiceAnnotations are put on the head Service.
	// +optional
	HeadServiceAnnotations map[string]string `json:"headServiceAnnotations,omitempty"`
	// AuthOptions configure the cluster token (on by default in goray).
	// +optional
	AuthOptions *AuthOptions `json:"authOptions,omitempty"`
	// UpgradeStrategy says what a change of a pod template does to the
	// running pods: Recreate deletes them all so they come back from the
	// new templates; None (the default) leaves them.
	// +optional
	UpgradeStrategy *RayClusterUpgradeStrategy `json:"upgradeStrategy,omitempty"`
}

// RayClusterUpgradeType is RayClusterUpgradeStrategy.Type.
// +kubebuilder:validation:Enum=Recreate;None
type RayClusterUpgradeType string

const (
	// Recreate deletes every pod when the head's or a group's template
	// changes.
	Recreate RayClusterUpgradeType = "Recreate"
	// UpgradeNone leaves running pods on their old template.
	UpgradeNone RayClusterUpgradeType = "None"
)

// RayClusterUpgradeStrategy is spec.upgradeStrategy.
type RayClusterUpgradeStrategy struct {
	// +optional
	Type *RayClusterUpgradeType `json:"type,omitempty"`
}

// HeadGroupSpec is the head pod's template and start parameters.
type HeadGroupSpec struct {
	// Template is the head pod's template; the goray container is index 0.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	Template corev1.PodTemplateSpec `json:"template"`
	// RayStartParams are `goray start` flags without the leading dashes.
	// +optional
	RayStartParams map[string]string `json:"rayStartParams,omitempty"`
	// ServiceType is the head Service's type (default ClusterIP, headless).
	// +optional
	ServiceType corev1.ServiceType `json:"serviceType,omitempty"`
	// HeadService overrides the head Service's metadata and spec.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	// +optional
	HeadService *corev1.Service `json:"headService,omitempty"`
	// EnableIngress is accepted for KubeRay compatibility: goray's
	// operator creates no Ingress yet and says so in a Warning Event.
	// +optional
	EnableIngress *bool `json:"enableIngress,omitempty"`
	// IngressOptions are accepted for KubeRay compatibility (unused).
	// +optional
	IngressOptions *IngressOptions `json:"ingressOptions,omitempty"`
	// Resources are the node's logical resources (name → quantity); they
	// override the resource flags of RayStartParams.
	// +optional
	Resources map[string]string `json:"resources,omitempty"`
	// Labels are the node's labels (also put on the pod).
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
}

// IngressOptions shape KubeRay's head Ingress (accepted, unused).
type IngressOptions struct {
	// +optional
	Host string `json:"host,omitempty"`
	// +optional
	Path string `json:"path,omitempty"`
	// +optional
	PathType *networkingv1.PathType `json:"pathType,omitempty"`
	// +optional
	TLS []networkingv1.IngressTLS `json:"tls,omitempty"`
}

// WorkerGroupSpec is one group of identical worker pods.
type WorkerGroupSpec struct {
	// GroupName is the group's name: the autoscaler's node type and the
	// pods' ray.io/group label.
	GroupName string `json:"groupName"`
	// Replicas is the desired number of replicas, clamped to
	// [MinReplicas, MaxReplicas].
	// +kubebuilder:default:=0
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
	// +kubebuilder:default:=0
	// +optional
	MinReplicas *int32 `json:"minReplicas,omitempty"`
	// +kubebuilder:default:=2147483647
	// +optional
	MaxReplicas *int32 `json:"maxReplicas,omitempty"`
	// NumOfHosts is the number of pods per replica (multi-host groups).
	// +kubebuilder:default:=1
	// +optional
	NumOfHosts int32 `json:"numOfHosts,omitempty"`
	// IdleTimeoutSeconds is the group's idle timeout for the autoscaler.
	// +optional
	IdleTimeoutSeconds *int32 `json:"idleTimeoutSeconds,omitempty"`
	// Priority is the group's scale-up preference in KubeRay's autoscaler
	// v2; goray accepts it and uses it nowhere yet.
	// +optional
	Priority int32 `json:"priority,omitempty"`
	// RayStartParams are `goray start` flags without the leading dashes.
	// +optional
	RayStartParams map[string]string `json:"rayStartParams,omitempty"`
	// Template is the worker pods' template; the goray container is index 0.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	Template corev1.PodTemplateSpec `json:"template"`
	// ScaleStrategy names the pods to delete (set by the autoscaler).
	// +optional
	ScaleStrategy ScaleStrategy `json:"scaleStrategy,omitempty"`
	// Suspend deletes the group's pods while true (used by RayJob).
	// +optional
	Suspend *bool `json:"suspend,omitempty"`
	// +optional
	Resources map[string]string `json:"resources,omitempty"`
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
}

// ScaleStrategy lists the worker pods to delete.
type ScaleStrategy struct {
	// WorkersToDelete are pod names; the operator deletes each of them,
	// whatever its phase, and no other pod in their place.
	// +optional
	WorkersToDelete []string `json:"workersToDelete,omitempty"`
}

// UpscalingMode is the autoscaler's upscaling speed.
// +kubebuilder:validation:Enum=Default;Aggressive;Conservative
type UpscalingMode string

// AutoscalerVersion selects Ray's autoscaler v1 or v2 (goray has one).
// +kubebuilder:validation:Enum=v1;v2
type AutoscalerVersion string

// AutoscalerOptions configure the autoscaler container of the head pod.
type AutoscalerOptions struct {
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`
	// +optional
	Image *string `json:"image,omitempty"`
	// +optional
	ImagePullPolicy *corev1.PullPolicy `json:"imagePullPolicy,omitempty"`
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	// +optional
	SecurityContext *corev1.SecurityContext `json:"securityContext,omitempty"`
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	// +optional
	Env []corev1.EnvVar `json:"env,omitempty"`
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	// +optional
	EnvFrom []corev1.EnvFromSource `json:"envFrom,omitempty"`
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	// +optional
	VolumeMounts []corev1.VolumeMount `json:"volumeMounts,omitempty"`
	// Command replaces the autoscaler container's command.
	// +optional
	Command []string `json:"command,omitempty"`
	// Args replace the autoscaler container's args.
	// +optional
	Args []string `json:"args,omitempty"`
	// IdleTimeoutSeconds before an idle worker is removed (default 60).
	// +optional
	IdleTimeoutSeconds *int32 `json:"idleTimeoutSeconds,omitempty"`
	// +optional
	UpscalingMode *UpscalingMode `json:"upscalingMode,omitempty"`
	// +optional
	Version *AutoscalerVersion `json:"version,omitempty"`
}

// AuthMode is the cluster's authentication mode.
// +kubebuilder:validation:Enum=disabled;token
type AuthMode string

const (
	// AuthModeDisabled turns token authentication off.
	AuthModeDisabled AuthMode = "disabled"
	// AuthModeToken requires the cluster token (goray's default).
	AuthModeToken AuthMode = "token"
)

// AuthOptions configure the cluster token.
type AuthOptions struct {
	// +optional
	Mode AuthMode `json:"mode,omitempty"`
	// SecretName names an existing Secret whose key auth_token holds the
	// token; empty: the operator generates <cluster>-auth.
	// +optional
	SecretName string `json:"secretName,omitempty"`
}

// ClusterState is RayClusterStatus.State.
type ClusterState string

const (
	// Ready: the head and every desired worker pod run.
	Ready ClusterState = "ready"
	// Suspended: spec.suspend is true and every pod is gone.
	Suspended ClusterState = "suspended"
)

// Condition types of a RayCluster.
const (
	RayClusterProvisioned    = "RayClusterProvisioned"
	HeadPodReady             = "HeadPodReady"
	RayClusterReplicaFailure = "ReplicaFailure"
	RayClusterSuspending     = "RayClusterSuspending"
	RayClusterSuspended      = "RayClusterSuspended"
)

// Condition reasons of a RayCluster.
const (
	AllPodRunningAndReadyFirstTime = "AllPodRunningAndReadyFirstTime"
	RayClusterPodsProvisioning     = "RayClusterPodsProvisioning"
	HeadPodNotFound                = "HeadPodNotFound"
	HeadPodRunningAndReady         = "HeadPodRunningAndReady"
	HeadPodNotReady                = "HeadPodNotReady"
	FailedCreateHeadPod            = "FailedCreateHeadPod"
	FailedCreateWorkerPod          = "FailedCreateWorkerPod"
	FailedDeleteWorkerPod          = "FailedDeleteWorkerPod"
	InvalidSpec                    = "InvalidRayClusterSpec"
)

// HeadInfo locates the head pod and service.
type HeadInfo struct {
	// +optional
	PodIP string `json:"podIP,omitempty"`
	// +optional
	ServiceIP string `json:"serviceIP,omitempty"`
	// +optional
	PodName string `json:"podName,omitempty"`
	// +optional
	ServiceName string `json:"serviceName,omitempty"`
}

// RayClusterStatus is the observed state of a RayCluster.
type RayClusterStatus struct {
	// +optional
	State ClusterState `json:"state,omitempty"`
	// +optional
	Reason string `json:"reason,omitempty"`
	// ReadyWorkerReplicas counts worker pods that are Ready.
	// +optional
	ReadyWorkerReplicas int32 `json:"readyWorkerReplicas,omitempty"`
	// AvailableWorkerReplicas counts worker pods that are running.
	// +optional
	AvailableWorkerReplicas int32 `json:"availableWorkerReplicas,omitempty"`
	// DesiredWorkerReplicas is the sum over groups of clamped replicas
	// times numOfHosts.
	// +optional
	DesiredWorkerReplicas int32 `json:"desiredWorkerReplicas,omitempty"`
	// +optional
	MinWorkerReplicas int32 `json:"minWorkerReplicas,omitempty"`
	// +optional
	MaxWorkerReplicas int32 `json:"maxWorkerReplicas,omitempty"`
	// +optional
	DesiredCPU resource.Quantity `json:"desiredCPU,omitempty"`
	// +optional
	DesiredMemory resource.Quantity `json:"desiredMemory,omitempty"`
	// +optional
	DesiredGPU resource.Quantity `json:"desiredGPU,omitempty"`
	// +optional
	DesiredTPU resource.Quantity `json:"desiredTPU,omitempty"`
	// +optional
	LastUpdateTime *metav1.Time `json:"lastUpdateTime,omitempty"`
	// StateTransitionTimes records when State last took each value.
	// +optional
	StateTransitionTimes map[ClusterState]*metav1.Time `json:"stateTransitionTimes,omitempty"`
	// Endpoints maps the head Service's port names to ports.
	// +optional
	Endpoints map[string]string `json:"endpoints,omitempty"`
	// +optional
	Head HeadInfo `json:"head,omitempty"`
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// RayCluster is a goray cluster on Kubernetes.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=all
// +kubebuilder:printcolumn:name="desired workers",type=integer,JSONPath=".status.desiredWorkerReplicas"
// +kubebuilder:printcolumn:name="available workers",type=integer,JSONPath=".status.availableWorkerReplicas"
// +kubebuilder:printcolumn:name="cpus",type=string,JSONPath=".status.desiredCPU"
// +kubebuilder:printcolumn:name="memory",type=string,JSONPath=".status.desiredMemory"
// +kubebuilder:printcolumn:name="gpus",type=string,JSONPath=".status.desiredGPU"
// +kubebuilder:printcolumn:name="status",type=string,JSONPath=".status.state"
// +kubebuilder:printcolumn:name="age",type=date,JSONPath=".metadata.creationTimestamp"
// +kubebuilder:printcolumn:name="head pod IP",type=string,JSONPath=".status.head.podIP",priority=1
// +kubebuilder:printcolumn:name="head service IP",type=string,JSONPath=".status.head.serviceIP",priority=1
type RayCluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   RayClusterSpec   `json:"spec,omitempty"`
	Status RayClusterStatus `json:"status,omitempty"`
}

// RayClusterList is a list of RayClusters.
//
// +kubebuilder:object:root=true
type RayClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RayCluster `json:"items"`
}

func init() {
	SchemeBuilder.Register(&RayCluster{}, &RayClusterList{})
}
