package v1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// JobStatus mirrors the status of the job in the cluster's Jobs API.
type JobStatus string

// The statuses of a job; the last three are terminal.
const (
	JobStatusNew       JobStatus = ""
	JobStatusPending   JobStatus = "PENDING"
	JobStatusRunning   JobStatus = "RUNNING"
	JobStatusStopped   JobStatus = "STOPPED"
	JobStatusSucceeded JobStatus = "SUCCEEDED"
	JobStatusFailed    JobStatus = "FAILED"
)

// IsTerminal tells whether a job in this status can change no more.
func (s JobStatus) IsTerminal() bool {
	return s == JobStatusStopped || s == JobStatusSucceeded || s == JobStatusFailed
}

// JobDeploymentStatus is where the operator is in running a RayJob.
type JobDeploymentStatus string

// The deployment statuses; Complete and Failed are terminal.
const (
	JobDeploymentStatusNew              JobDeploymentStatus = ""
	JobDeploymentStatusInitializing     JobDeploymentStatus = "Initializing"
	JobDeploymentStatusRunning          JobDeploymentStatus = "Running"
	JobDeploymentStatusComplete         JobDeploymentStatus = "Complete"
	JobDeploymentStatusFailed           JobDeploymentStatus = "Failed"
	JobDeploymentStatusValidationFailed JobDeploymentStatus = "ValidationFailed"
	JobDeploymentStatusSuspending       JobDeploymentStatus = "Suspending"
	JobDeploymentStatusSuspended        JobDeploymentStatus = "Suspended"
	JobDeploymentStatusRetrying         JobDeploymentStatus = "Retrying"
	JobDeploymentStatusWaiting          JobDeploymentStatus = "Waiting"
)

// JobFailedReason explains a Failed deployment status.
type JobFailedReason string

// The reasons of a failed RayJob.
const (
	SubmissionFailed           JobFailedReason = "SubmissionFailed"
	DeadlineExceeded           JobFailedReason = "DeadlineExceeded"
	PreRunningDeadlineExceeded JobFailedReason = "PreRunningDeadlineExceeded"
	AppFailed                  JobFailedReason = "AppFailed"
	JobStatusCheckTimeout      JobFailedReason = "JobStatusCheckTimeoutExceeded"
	ValidationFailed           JobFailedReason = "ValidationFailed"
)

// JobSubmissionMode is how the entrypoint reaches the cluster.
// +kubebuilder:validation:Enum=K8sJobMode;HTTPMode;InteractiveMode;SidecarMode
type JobSubmissionMode string

// The submission modes. goray's operator submits through the Jobs REST API
// itself in every mode but InteractiveMode (which waits for spec.jobId).
const (
	K8sJobMode      JobSubmissionMode = "K8sJobMode"
	HTTPMode        JobSubmissionMode = "HTTPMode"
	InteractiveMode JobSubmissionMode = "InteractiveMode"
	SidecarMode     JobSubmissionMode = "SidecarMode"
)

// DeletionPolicyType is what a deletion policy deletes once the job ended.
// +kubebuilder:validation:Enum=DeleteCluster;DeleteWorkers;DeleteSelf;DeleteNone
type DeletionPolicyType string

// The deletion policies (KubeRay's).
const (
	// DeleteCluster deletes the RayCluster the RayJob created.
	DeleteCluster DeletionPolicyType = "DeleteCluster"
	// DeleteWorkers suspends every worker group of that cluster (the
	// head stays, with the job's logs).
	DeleteWorkers DeletionPolicyType = "DeleteWorkers"
	// DeleteSelf deletes the RayJob (and with it what it owns).
	DeleteSelf DeletionPolicyType = "DeleteSelf"
	// DeleteNone deletes nothing.
	DeleteNone DeletionPolicyType = "DeleteNone"
)

// DeletionStrategy says what to delete after the job ended: either both
// legacy policies (onSuccess and onFailure, delayed by
// ttlSecondsAfterFinished) or deletionRules, not both.
//
// +kubebuilder:validation:XValidation:rule="!((has(self.onSuccess) || has(self.onFailure)) && has(self.deletionRules))",message="legacy policies (onSuccess/onFailure) and deletionRules cannot be used together within the same deletionStrategy"
// +kubebuilder:validation:XValidation:rule="((has(self.onSuccess) && has(self.onFailure)) || has(self.deletionRules))",message="deletionStrategy requires either BOTH onSuccess and onFailure, OR the deletionRules field (cannot be empty)"
type DeletionStrategy struct {
	// OnSuccess applies when the job SUCCEEDED (legacy; use deletionRules).
	// +optional
	OnSuccess *DeletionPolicy `json:"onSuccess,omitempty"`
	// OnFailure applies when the job FAILED (legacy; use deletionRules).
	// +optional
	OnFailure *DeletionPolicy `json:"onFailure,omitempty"`
	// DeletionRules each apply a policy ttlSeconds after their condition
	// holds; when several are due, the most destructive goes first.
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +optional
	DeletionRules []DeletionRule `json:"deletionRules,omitempty"`
}

// DeletionPolicy is a legacy single-stage policy.
type DeletionPolicy struct {
	// +optional
	Policy *DeletionPolicyType `json:"policy,omitempty"`
}

// DeletionRule applies Policy when Condition holds.
type DeletionRule struct {
	Policy    DeletionPolicyType `json:"policy"`
	Condition DeletionCondition  `json:"condition"`
}

// DeletionCondition names exactly one of jobStatus and jobDeploymentStatus.
//
// +kubebuilder:validation:XValidation:rule="!(has(self.jobStatus) && has(self.jobDeploymentStatus))",message="JobStatus and JobDeploymentStatus cannot be used together within the same deletion condition."
// +kubebuilder:validation:XValidation:rule="has(self.jobStatus) || has(self.jobDeploymentStatus)",message="the deletion condition requires either the JobStatus or the JobDeploymentStatus field."
type DeletionCondition struct {
	// JobStatus is the Ray job's terminal status that triggers the rule.
	// +kubebuilder:validation:Enum=SUCCEEDED;FAILED
	// +optional
	JobStatus *JobStatus `json:"jobStatus,omitempty"`
	// JobDeploymentStatus is the RayJob's terminal deployment status that
	// triggers the rule (a job that never ran, e.g. failed submission).
	// +kubebuilder:validation:Enum=Failed
	// +optional
	JobDeploymentStatus *JobDeploymentStatus `json:"jobDeploymentStatus,omitempty"`
	// TTLSeconds is the delay after the job ended.
	// +kubebuilder:validation:Minimum=0
	// +optional
	TTLSeconds int32 `json:"ttlSeconds,omitempty"`
}

// SubmitterConfig configures KubeRay's submitter Job (not used by goray's
// operator, which runs none).
type SubmitterConfig struct {
	// +optional
	BackoffLimit *int32 `json:"backoffLimit,omitempty"`
}

// RayJobSpec is the desired state of a RayJob.
type RayJobSpec struct {
	// Entrypoint is the shell command the job runs.
	// +optional
	Entrypoint string `json:"entrypoint,omitempty"`
	// RuntimeEnvYAML is the job's runtime_env as YAML.
	// +optional
	RuntimeEnvYAML string `json:"runtimeEnvYAML,omitempty"`
	// JobId is the submission id (generated when empty).
	// +optional
	JobId string `json:"jobId,omitempty"`
	// Metadata is passed to the job as its metadata.
	// +optional
	Metadata map[string]string `json:"metadata,omitempty"`
	// +optional
	EntrypointNumCpus float32 `json:"entrypointNumCpus,omitempty"`
	// +optional
	EntrypointNumGpus float32 `json:"entrypointNumGpus,omitempty"`
	// EntrypointResources is a JSON object of resource name → quantity.
	// +optional
	EntrypointResources string `json:"entrypointResources,omitempty"`
	// RayClusterSpec is the cluster to create for the job.
	// +optional
	RayClusterSpec *RayClusterSpec `json:"rayClusterSpec,omitempty"`
	// ClusterSelector picks an existing cluster (label ray.io/cluster)
	// instead of creating one.
	// +optional
	ClusterSelector map[string]string `json:"clusterSelector,omitempty"`
	// SubmissionMode is how the entrypoint reaches the cluster. goray's
	// operator submits it through the cluster's Jobs REST API itself in
	// every mode but InteractiveMode (K8sJobMode, the default, HTTPMode
	// and SidecarMode all act as KubeRay's HTTPMode: no submitter Job is
	// run and no sidecar added); InteractiveMode waits for spec.jobId,
	// submitted by the user. SidecarMode is told so by a Normal Event
	// (SubmitterNotUsed).
	// +kubebuilder:default:=K8sJobMode
	// +optional
	SubmissionMode JobSubmissionMode `json:"submissionMode,omitempty"`
	// SubmitterPodTemplate is accepted for KubeRay compatibility but not
	// used (no submitter Job is run; see submissionMode); a Warning Event
	// (SubmitterNotUsed) says so.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	// +optional
	SubmitterPodTemplate *corev1.PodTemplateSpec `json:"submitterPodTemplate,omitempty"`
	// SubmitterConfig is accepted for KubeRay compatibility but not used,
	// as submitterPodTemplate.
	// +optional
	SubmitterConfig *SubmitterConfig `json:"submitterConfig,omitempty"`
	// ShutdownAfterJobFinishes deletes the cluster once the job is terminal.
	// +optional
	ShutdownAfterJobFinishes bool `json:"shutdownAfterJobFinishes,omitempty"`
	// TTLSecondsAfterFinished delays that deletion.
	// +kubebuilder:default:=0
	// +optional
	TTLSecondsAfterFinished int32 `json:"ttlSecondsAfterFinished,omitempty"`
	// ActiveDeadlineSeconds fails the job when it runs longer.
	// +optional
	ActiveDeadlineSeconds *int32 `json:"activeDeadlineSeconds,omitempty"`
	// PreRunningDeadlineSeconds fails the job when it is not running by then.
	// +optional
	PreRunningDeadlineSeconds *int32 `json:"preRunningDeadlineSeconds,omitempty"`
	// BackoffLimit is the number of retries, each with a new cluster.
	// +kubebuilder:default:=0
	// +optional
	BackoffLimit *int32 `json:"backoffLimit,omitempty"`
	// Suspend holds the job (no cluster) while true.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
	// +optional
	ManagedBy *string `json:"managedBy,omitempty"`
	// DeletionStrategy says what to delete after the job ended; when set
	// it replaces shutdownAfterJobFinishes (and deletionRules exclude it).
	// +optional
	DeletionStrategy *DeletionStrategy `json:"deletionStrategy,omitempty"`
}

// RayJobInfo holds the times the Jobs API reports.
type RayJobInfo struct {
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// +optional
	EndTime *metav1.Time `json:"endTime,omitempty"`
}

// RayJobStatus is the observed state of a RayJob.
type RayJobStatus struct {
	// +optional
	JobId string `json:"jobId,omitempty"`
	// +optional
	RayClusterName string `json:"rayClusterName,omitempty"`
	// +optional
	DashboardURL string `json:"dashboardURL,omitempty"`
	// +optional
	JobStatus JobStatus `json:"jobStatus,omitempty"`
	// +optional
	JobDeploymentStatus JobDeploymentStatus `json:"jobDeploymentStatus,omitempty"`
	// +optional
	Reason JobFailedReason `json:"reason,omitempty"`
	// +optional
	Message string `json:"message,omitempty"`
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// +optional
	EndTime *metav1.Time `json:"endTime,omitempty"`
	// +optional
	Succeeded *int32 `json:"succeeded,omitempty"`
	// +optional
	Failed *int32 `json:"failed,omitempty"`
	// +optional
	RayClusterStatus RayClusterStatus `json:"rayClusterStatus,omitempty"`
	// +optional
	RayJobStatusInfo RayJobInfo `json:"rayJobInfo,omitempty"`
	// JobStatusCheckFailureStartTime is when the Jobs API stopped
	// answering about a running job (cleared when it answers again).
	// +optional
	JobStatusCheckFailureStartTime *metav1.Time `json:"jobStatusCheckFailureStartTime,omitempty"`
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// RayJob runs one entrypoint on a goray cluster it creates or selects.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=all
// +kubebuilder:printcolumn:name="job status",type=string,JSONPath=".status.jobStatus"
// +kubebuilder:printcolumn:name="deployment status",type=string,JSONPath=".status.jobDeploymentStatus"
// +kubebuilder:printcolumn:name="ray cluster name",type=string,JSONPath=".status.rayClusterName"
// +kubebuilder:printcolumn:name="start time",type=string,JSONPath=".status.startTime"
// +kubebuilder:printcolumn:name="end time",type=string,JSONPath=".status.endTime"
// +kubebuilder:printcolumn:name="age",type=date,JSONPath=".metadata.creationTimestamp"
type RayJob struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   RayJobSpec   `json:"spec,omitempty"`
	Status RayJobStatus `json:"status,omitempty"`
}

// RayJobList is a list of RayJobs.
//
// +kubebuilder:object:root=true
type RayJobList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RayJob `json:"items"`
}

func init() {
	SchemeBuilder.Register(&RayJob{}, &RayJobList{})
}
