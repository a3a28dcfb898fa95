// Package rayjob is the RayJob controller: it creates a RayCluster from
// the job's spec (or selects an existing one), waits until it is ready,
// submits the entrypoint through the cluster's Jobs REST API, mirrors the
// job's status, and after the end deletes what spec.deletionStrategy says
// (deletion.go) or, with shutdownAfterJobFinishes, the cluster
// ttlSecondsAfterFinished after the end.
//
// Every submission mode but InteractiveMode is served by the operator
// submitting over HTTP itself (KubeRay's HTTPMode); no submitter Job is run
// and no sidecar added. A RayJob that asks for one (SidecarMode,
// submitterPodTemplate, submitterConfig) is told so once per generation by
// an Event (SubmitterNotUsed).
//
// While the Jobs API does not answer or refuses (head Service not
// resolving, wrong token) the RayJob keeps polling and says why in
// status.message, the log, and a Warning Event for each new problem.
//
// Every RayJob carries the finalizer ray.io/rayjob-finalizer so that
// deleting it stops its Ray job first.
package rayjob

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	rayv1 "github.com/goray/goray/operator/api/v1"
	"github.com/goray/goray/operator/raycluster"
)

// LabelOriginatedFrom marks the clusters a RayJob created (KubeRay's key).
const (
	LabelOriginatedFromName = "ray.io/originated-from-cr-name"
	LabelOriginatedFromKind = "ray.io/originated-from-crd"
)

// Finalizer keeps a deleted RayJob until its Ray job is stopped (KubeRay's
// name).
const Finalizer = "ray.io/rayjob-finalizer"

// EventRecorder records Kubernetes events.
type EventRecorder = raycluster.EventRecorder

// Reconciler reconciles RayJobs.
type Reconciler struct {
	Client   client.Client
	Recorder EventRecorder
	Options  raycluster.Options
	// DashboardURL returns the Jobs API address of a cluster (default:
	// the head Service's dashboard port); tests point it at a head on
	// loopback.
	DashboardURL func(rc *rayv1.RayCluster) string
	// NewDashboard makes the Jobs API client (default HTTPDashboard).
	NewDashboard func(url, token string) Dashboard
	// Poll is how often a running job is looked at (default 3 s).
	Poll time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// StatusCheckTimeout is how long a running job's Jobs API may not
	// answer before the job fails (default RAYJOB_STATUS_CHECK_TIMEOUT_SECONDS,
	// else 300 s).
	StatusCheckTimeout time.Duration
	// StopTimeout bounds how long a deleted RayJob waits for a cluster
	// that exists but does not answer the stop call (default 2 minutes).
	StopTimeout time.Duration
}

// SetupWithManager registers the controller with mgr.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&rayv1.RayJob{}).
		Owns(&rayv1.RayCluster{}).
		Named("rayjob").
		Complete(r)
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Reconciler) poll() time.Duration {
	if r.Poll > 0 {
		return r.Poll
	}
	return 3 * time.Second
}

func (r *Reconciler) statusCheckTimeout() time.Duration {
	if r.StatusCheckTimeout > 0 {
		return r.StatusCheckTimeout
	}
	if n, err := strconv.Atoi(os.Getenv("RAYJOB_STATUS_CHECK_TIMEOUT_SECONDS")); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	return 300 * time.Second
}

func (r *Reconciler) dashboardURL(rc *rayv1.RayCluster) string {
	if r.DashboardURL != nil {
		return r.DashboardURL(rc)
	}
	port := strconv.Itoa(raycluster.DefaultDashboardPort)
	if p := rc.Spec.HeadGroupSpec.RayStartParams["dashboard-port"]; p != "" {
		port = p
	}
	domain := r.Options.ClusterDomain
	if domain == "" {
		domain = "cluster.local"
	}
	return fmt.Sprintf("%s.%s.svc.%s:%s", raycluster.HeadServiceName(rc), rc.Namespace, domain, port)
}

func (r *Reconciler) dashboard(ctx context.Context, rc *rayv1.RayCluster, url string) (Dashboard, error) {
	var token string
	if name := raycluster.AuthSecretName(rc); name != "" {
		var s corev1.Secret
		if err := r.Client.Get(ctx, client.ObjectKey{Namespace: rc.Namespace, Name: name}, &s); err != nil {
			return nil, fmt.Errorf("rayjob: cluster token secret %s: %w", name, err)
		}
		token = string(s.Data[raycluster.AuthTokenKey])
	}
	if r.NewDashboard != nil {
		return r.NewDashboard(url, token), nil
	}
	return &HTTPDashboard{URL: url, Token: token}, nil
}

// Validate checks a RayJob spec.
func Validate(j *rayv1.RayJob) error {
	s := &j.Spec
	switch {
	case s.RayClusterSpec == nil && len(s.ClusterSelector) == 0:
		return errors.New("one of rayClusterSpec and clusterSelector is required")
	case s.RayClusterSpec != nil && len(s.ClusterSelector) > 0:
		return errors.New("rayClusterSpec and clusterSelector exclude each other")
	case s.Entrypoint == "" && s.SubmissionMode != rayv1.InteractiveMode:
		return errors.New("entrypoint is empty")
	case len(s.ClusterSelector) > 0 && s.ClusterSelector[raycluster.LabelCluster] == "":
		return fmt.Errorf("clusterSelector must name the cluster with the label %s", raycluster.LabelCluster)
	case s.ShutdownAfterJobFinishes && len(s.ClusterSelector) > 0:
		return errors.New("shutdownAfterJobFinishes cannot delete a selected cluster")
	case s.TTLSecondsAfterFinished < 0:
		return errors.New("ttlSecondsAfterFinished is negative")
	}
	if err := validateDeletionStrategy(j); err != nil {
		return err
	}
	if s.RuntimeEnvYAML != "" {
		if _, err := runtimeEnv(s.RuntimeEnvYAML); err != nil {
			return err
		}
	}
	if s.EntrypointResources != "" {
		var m map[string]float32
		if err := json.Unmarshal([]byte(s.EntrypointResources), &m); err != nil {
			return fmt.Errorf("entrypointResources: %v", err)
		}
	}
	if s.RayClusterSpec != nil {
		rc := &rayv1.RayCluster{ObjectMeta: metav1.ObjectMeta{Name: "rayjob-cluster", Namespace: j.Namespace}, Spec: *s.RayClusterSpec}
		if err := raycluster.Validate(rc); err != nil {
			return err
		}
	}
	return nil
}

func runtimeEnv(y string) (map[string]any, error) {
	var m map[string]any
	if err := yaml.Unmarshal([]byte(y), &m); err != nil {
		return nil, fmt.Errorf("runtimeEnvYAML: %v", err)
	}
	return m, nil
}

func randomSuffix(n int) string {
	const letters = "bcdfghjklmnpqrstvwxz2456789"
	b := make([]byte, n)
	for i := range b {
		k, _ := rand.Int(rand.Reader, big.NewInt(int64(len(letters))))
		b[i] = letters[k.Int64()]
	}
	return string(b)
}

// Reconcile advances the RayJob through its deployment statuses and writes
// its status once.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var job rayv1.RayJob
	if err := r.Client.Get(ctx, req.NamespacedName, &job); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if job.Spec.ManagedBy != nil && *job.Spec.ManagedBy != raycluster.ManagedBy {
		return ctrl.Result{}, nil
	}
	if job.DeletionTimestamp != nil {
		return r.finalize(ctx, &job)
	}
	if !controllerutil.ContainsFinalizer(&job, Finalizer) {
		// A patch of the finalizers alone: an Update would write back the
		// spec as this type renders it (dropping the user's empty maps)
		// and bump the generation.
		base := job.DeepCopy()
		controllerutil.AddFinalizer(&job, Finalizer)
		if err := r.Client.Patch(ctx, &job, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
			return ctrl.Result{}, fmt.Errorf("rayjob: add finalizer: %w", err)
		}
	}
	if job.Generation != job.Status.ObservedGeneration {
		r.noteSubmitter(&job)
	}
	s := job.Status.DeepCopy()
	res, err := r.step(ctx, &job, s)
	s.ObservedGeneration = job.Generation
	if !equality.Semantic.DeepEqual(s, &job.Status) {
		job.Status = *s
		if uerr := r.Client.Status().Update(ctx, &job); uerr != nil && !apierrors.IsConflict(uerr) && err == nil {
			err = uerr
		}
	}
	return res, err
}

// noteSubmitter tells with an Event that the submitter settings of the
// spec are not used: the operator submits through the Jobs REST API itself.
func (r *Reconciler) noteSubmitter(job *rayv1.RayJob) {
	var unused []string
	if job.Spec.SubmitterPodTemplate != nil {
		unused = append(unused, "spec.submitterPodTemplate")
	}
	if job.Spec.SubmitterConfig != nil {
		unused = append(unused, "spec.submitterConfig")
	}
	how := "the operator submits the job through the cluster's Jobs REST API itself (as in HTTPMode)"
	if job.Spec.SubmissionMode == rayv1.InteractiveMode {
		how = "in InteractiveMode the job is submitted by the user and named in spec.jobId"
	}
	switch {
	case len(unused) > 0:
		r.Recorder.Eventf(job, nil, corev1.EventTypeWarning, "SubmitterNotUsed", "Submit",
			"%s not used (submissionMode %s): %s; no submitter Job or Pod is run", strings.Join(unused, " and "), job.Spec.SubmissionMode, how)
	case job.Spec.SubmissionMode == rayv1.SidecarMode:
		r.Recorder.Eventf(job, nil, corev1.EventTypeNormal, "SubmitterNotUsed", "Submit",
			"submissionMode SidecarMode: %s; no submitter sidecar is added to the head Pod", how)
	}
}

// report puts a problem that keeps the job from going on into
// status.message; when it is new (not what the stored status says) it is
// also logged with err and recorded as a Warning Event, so that each poll
// that meets it again adds nothing.
func (r *Reconciler) report(ctx context.Context, job *rayv1.RayJob, s *rayv1.RayJobStatus, reason, action, msg string, err error) {
	s.Message = msg
	log := logf.FromContext(ctx)
	if job.Status.Message == msg {
		log.V(1).Info("still "+msg, "reason", reason)
		return
	}
	log.Error(err, msg, "reason", reason)
	r.Recorder.Eventf(job, nil, corev1.EventTypeWarning, reason, action, "%s", msg)
}

// mayRun says whether the Ray job of status s was submitted and may still
// run: its last known status is PENDING or RUNNING, or the RayJob is
// Running and has not heard about it yet. A job that was never submitted
// (Initializing, failed or invalid before the submission) or has ended is
// not to be stopped.
func mayRun(s *rayv1.RayJobStatus) bool {
	if s.JobStatus == rayv1.JobStatusNew {
		return s.JobDeploymentStatus == rayv1.JobDeploymentStatusRunning
	}
	return !s.JobStatus.IsTerminal()
}

// finalize stops the Ray job of a RayJob being deleted, then removes the
// finalizer so the deletion goes on.
func (r *Reconciler) finalize(ctx context.Context, job *rayv1.RayJob) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(job, Finalizer) {
		return ctrl.Result{}, nil
	}
	res, done, err := r.stopOnDelete(ctx, job)
	if !done {
		return res, err
	}
	base := job.DeepCopy()
	controllerutil.RemoveFinalizer(job, Finalizer)
	if err := r.Client.Patch(ctx, job, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("rayjob: remove finalizer: %w", err)
	}
	return ctrl.Result{}, nil
}

// stopOnDelete stops a job that may still run; done once it is stopped,
// cannot run (never submitted, terminal, its cluster gone), or the
// cluster did not answer for StopTimeout since the deletion. The first
// failed stop is told at once (status.message, log, a Warning Event).
func (r *Reconciler) stopOnDelete(ctx context.Context, job *rayv1.RayJob) (res ctrl.Result, done bool, err error) {
	s := &job.Status
	if !mayRun(s) || s.JobId == "" || s.RayClusterName == "" || s.DashboardURL == "" {
		return ctrl.Result{}, true, nil
	}
	var rc rayv1.RayCluster
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: job.Namespace, Name: s.RayClusterName}, &rc); apierrors.IsNotFound(err) {
		return ctrl.Result{}, true, nil
	} else if err != nil {
		return ctrl.Result{}, false, err
	}
	d, err := r.dashboard(ctx, &rc, s.DashboardURL)
	problem := ""
	if err != nil {
		problem = err.Error()
	} else if err = d.StopJob(ctx, s.JobId); err != nil {
		problem = apiProblem(s.DashboardURL, err)
	}
	switch {
	case err == nil:
		r.Recorder.Eventf(job, nil, corev1.EventTypeNormal, "StoppedJob", "Delete", "Stopped job %s on RayCluster %s before deleting the RayJob", s.JobId, rc.Name)
		return ctrl.Result{}, true, nil
	case errors.Is(err, ErrJobNotFound):
		return ctrl.Result{}, true, nil
	}
	timeout := r.StopTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	waited := r.now().Sub(job.DeletionTimestamp.Time)
	if waited >= timeout {
		logf.FromContext(ctx).Error(err, "gave up stopping the job; deleting the RayJob anyway", "jobId", s.JobId, "rayCluster", rc.Name)
		r.Recorder.Eventf(job, nil, corev1.EventTypeWarning, "StopJobFailed", "Delete",
			"Gave up stopping job %s on RayCluster %s after %s; deleting the RayJob anyway: %s", s.JobId, rc.Name, timeout, problem)
		return ctrl.Result{}, true, nil
	}
	msg := fmt.Sprintf("cannot stop job %s on RayCluster %s before deleting the RayJob (retrying for up to %s): %s", s.JobId, rc.Name, timeout, problem)
	if s.Message != msg {
		st := s.DeepCopy()
		r.report(ctx, job, st, "StopJobFailed", "Delete", msg, err)
		job.Status = *st
		if uerr := r.Client.Status().Update(ctx, job); uerr != nil && !apierrors.IsConflict(uerr) && !apierrors.IsNotFound(uerr) {
			return ctrl.Result{}, false, uerr
		}
	}
	// Back off: wait about as long as we have waited so far (1 s to 30 s).
	return ctrl.Result{RequeueAfter: min(max(waited, time.Second), 30*time.Second, timeout-waited)}, false, nil
}

func (r *Reconciler) fail(job *rayv1.RayJob, s *rayv1.RayJobStatus, reason rayv1.JobFailedReason, msg string) {
	s.JobDeploymentStatus = rayv1.JobDeploymentStatusFailed
	s.Reason, s.Message = reason, msg
	if s.EndTime == nil {
		now := metav1.NewTime(r.now())
		s.EndTime = &now
	}
	s.Failed = ptrInt32(valueOr(s.Failed) + 1)
	r.Recorder.Eventf(job, nil, corev1.EventTypeWarning, string(reason), "Reconcile", "%s", msg)
}

func ptrInt32(v int32) *int32 { return &v }

func valueOr(p *int32) int32 {
	if p == nil {
		return 0
	}
	return *p
}

// step does what the current deployment status calls for.
func (r *Reconciler) step(ctx context.Context, job *rayv1.RayJob, s *rayv1.RayJobStatus) (ctrl.Result, error) {
	switch s.JobDeploymentStatus {
	case rayv1.JobDeploymentStatusInitializing, rayv1.JobDeploymentStatusWaiting, rayv1.JobDeploymentStatusRunning:
		if job.Spec.Suspend {
			s.JobDeploymentStatus = rayv1.JobDeploymentStatusSuspending
			return ctrl.Result{RequeueAfter: time.Millisecond}, nil
		}
	}
	switch s.JobDeploymentStatus {
	case rayv1.JobDeploymentStatusSuspending:
		// Stop the job, delete the cluster the job made, forget the attempt
		// (Kueue suspends and resumes jobs this way).
		var rc rayv1.RayCluster
		if s.RayClusterName == "" {
			// nothing was made yet
		} else if err := r.Client.Get(ctx, client.ObjectKey{Namespace: job.Namespace, Name: s.RayClusterName}, &rc); err == nil {
			if s.JobId != "" && s.DashboardURL != "" {
				if d, err := r.dashboard(ctx, &rc, s.DashboardURL); err == nil {
					d.StopJob(ctx, s.JobId)
				}
			}
			if job.Spec.RayClusterSpec != nil {
				if err := r.Client.Delete(ctx, &rc); err != nil && !apierrors.IsNotFound(err) {
					return ctrl.Result{}, err
				}
			}
		} else if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
		r.Recorder.Eventf(job, nil, corev1.EventTypeNormal, "Suspended", "Suspend", "Suspended: deleted RayCluster %s", s.RayClusterName)
		*s = rayv1.RayJobStatus{Succeeded: s.Succeeded, Failed: s.Failed, ObservedGeneration: s.ObservedGeneration,
			JobDeploymentStatus: rayv1.JobDeploymentStatusSuspended}
		return ctrl.Result{}, nil

	case rayv1.JobDeploymentStatusNew, rayv1.JobDeploymentStatusSuspended:
		if job.Spec.Suspend {
			s.JobDeploymentStatus = rayv1.JobDeploymentStatusSuspended
			return ctrl.Result{}, nil
		}
		if err := Validate(job); err != nil {
			s.JobDeploymentStatus = rayv1.JobDeploymentStatusValidationFailed
			s.Reason, s.Message = rayv1.ValidationFailed, err.Error()
			r.Recorder.Eventf(job, nil, corev1.EventTypeWarning, string(rayv1.ValidationFailed), "Validate", "%s", err.Error())
			return ctrl.Result{}, nil
		}
		if s.JobId == "" {
			s.JobId = job.Spec.JobId
			if s.JobId == "" {
				s.JobId = job.Name + "-" + randomSuffix(5)
			}
		}
		if s.RayClusterName == "" {
			if name := job.Spec.ClusterSelector[raycluster.LabelCluster]; name != "" {
				s.RayClusterName = name
			} else {
				s.RayClusterName = trimName(job.Name, 47) + "-" + randomSuffix(5)
			}
		}
		now := metav1.NewTime(r.now())
		s.StartTime = &now
		s.JobStatus = rayv1.JobStatusNew
		s.JobDeploymentStatus = rayv1.JobDeploymentStatusInitializing
		return ctrl.Result{RequeueAfter: time.Millisecond}, nil

	case rayv1.JobDeploymentStatusInitializing:
		if r.deadlineExceeded(job, s) {
			return ctrl.Result{}, nil
		}
		rc, err := r.ensureCluster(ctx, job, s)
		if err != nil {
			return ctrl.Result{RequeueAfter: r.poll()}, err
		}
		if rc == nil {
			// The selected cluster may be created later: say why the job
			// waits (one Event, not one a poll) and keep looking.
			msg := fmt.Sprintf("the RayCluster %s was not found in namespace %s", s.RayClusterName, job.Namespace)
			if s.Message != msg {
				s.Message = msg
				r.Recorder.Eventf(job, nil, corev1.EventTypeWarning, "RayClusterNotFound", "Reconcile", "%s; waiting for it", msg)
			}
			return ctrl.Result{RequeueAfter: r.poll()}, nil
		}
		s.Message = ""
		s.RayClusterStatus = rc.Status
		if rc.Status.State != rayv1.Ready {
			return ctrl.Result{RequeueAfter: r.poll()}, nil
		}
		s.DashboardURL = r.dashboardURL(rc)
		if job.Spec.SubmissionMode == rayv1.InteractiveMode && job.Spec.JobId == "" {
			s.JobDeploymentStatus = rayv1.JobDeploymentStatusWaiting
			return ctrl.Result{RequeueAfter: r.poll()}, nil
		}
		d, err := r.dashboard(ctx, rc, s.DashboardURL)
		if err != nil {
			return ctrl.Result{RequeueAfter: r.poll()}, err
		}
		if job.Spec.SubmissionMode != rayv1.InteractiveMode {
			if info, err := d.GetJobInfo(ctx, s.JobId); errors.Is(err, ErrJobNotFound) {
				req := JobRequest{Entrypoint: job.Spec.Entrypoint, SubmissionID: s.JobId, Metadata: job.Spec.Metadata,
					EntrypointNumCPUs: job.Spec.EntrypointNumCpus, EntrypointNumGPUs: job.Spec.EntrypointNumGpus}
				if job.Spec.RuntimeEnvYAML != "" {
					req.RuntimeEnv, _ = runtimeEnv(job.Spec.RuntimeEnvYAML)
				}
				if job.Spec.EntrypointResources != "" {
					json.Unmarshal([]byte(job.Spec.EntrypointResources), &req.EntrypointResources)
				}
				if _, err := d.SubmitJob(ctx, req); err != nil {
					r.report(ctx, job, s, string(rayv1.SubmissionFailed), "Submit", fmt.Sprintf("failed to submit job %s: %s", s.JobId, apiProblem(s.DashboardURL, err)), err)
					return ctrl.Result{RequeueAfter: r.poll()}, nil
				}
				s.JobStatus = rayv1.JobStatusPending // submitted: stop it when the RayJob goes
				r.Recorder.Eventf(job, nil, corev1.EventTypeNormal, "Submitted", "Submit", "Submitted job %s to %s", s.JobId, s.DashboardURL)
			} else if err != nil {
				// Not answering yet, or never (a head Service that does not
				// resolve, a refused token): say why and keep polling.
				r.report(ctx, job, s, "JobsAPIError", "Submit", apiProblem(s.DashboardURL, err), err)
				return ctrl.Result{RequeueAfter: r.poll()}, nil
			} else {
				mirror(s, info) // submitted before (the status write was lost)
			}
		}
		s.JobDeploymentStatus = rayv1.JobDeploymentStatusRunning
		return ctrl.Result{RequeueAfter: time.Millisecond}, nil

	case rayv1.JobDeploymentStatusWaiting:
		if job.Spec.JobId != "" {
			s.JobId = job.Spec.JobId
			s.JobDeploymentStatus = rayv1.JobDeploymentStatusRunning
			return ctrl.Result{RequeueAfter: time.Millisecond}, nil
		}
		return ctrl.Result{RequeueAfter: r.poll()}, nil

	case rayv1.JobDeploymentStatusRunning:
		var rc rayv1.RayCluster
		if err := r.Client.Get(ctx, client.ObjectKey{Namespace: job.Namespace, Name: s.RayClusterName}, &rc); err != nil {
			if apierrors.IsNotFound(err) {
				r.fail(job, s, rayv1.SubmissionFailed, "the RayCluster "+s.RayClusterName+" disappeared")
				return ctrl.Result{}, nil
			}
			return ctrl.Result{}, err
		}
		s.RayClusterStatus = rc.Status
		if r.deadlineExceeded(job, s) {
			r.stopAndMirror(ctx, &rc, s)
			return ctrl.Result{RequeueAfter: time.Millisecond}, nil
		}
		d, err := r.dashboard(ctx, &rc, s.DashboardURL)
		if err != nil {
			return ctrl.Result{RequeueAfter: r.poll()}, err
		}
		info, err := d.GetJobInfo(ctx, s.JobId)
		if err != nil {
			// Remember since when the Jobs API does not answer; past the
			// status check timeout the job fails.
			now := r.now()
			if s.JobStatusCheckFailureStartTime == nil {
				t := metav1.NewTime(now)
				s.JobStatusCheckFailureStartTime = &t
			}
			problem := apiProblem(s.DashboardURL, err)
			if timeout := r.statusCheckTimeout(); now.Sub(s.JobStatusCheckFailureStartTime.Time) > timeout {
				r.fail(job, s, rayv1.JobStatusCheckTimeout, fmt.Sprintf("the Jobs API of RayCluster %s did not answer about job %s for %s: %s", rc.Name, s.JobId, timeout, problem))
				return ctrl.Result{RequeueAfter: time.Millisecond}, nil
			}
			r.report(ctx, job, s, "JobStatusCheckFailed", "Reconcile", fmt.Sprintf("cannot check job %s: %s", s.JobId, problem), err)
			return ctrl.Result{RequeueAfter: r.poll()}, nil
		}
		s.JobStatusCheckFailureStartTime = nil
		mirror(s, info)
		s.Message = info.Message
		if !s.JobStatus.IsTerminal() {
			return ctrl.Result{RequeueAfter: r.poll()}, nil
		}
		if s.JobStatus == rayv1.JobStatusFailed {
			if job.Spec.BackoffLimit != nil && valueOr(s.Failed) < *job.Spec.BackoffLimit {
				// A retry runs the job again on a new cluster.
				s.Failed = ptrInt32(valueOr(s.Failed) + 1)
				s.JobDeploymentStatus = rayv1.JobDeploymentStatusRetrying
				r.Recorder.Eventf(job, nil, corev1.EventTypeWarning, string(rayv1.AppFailed), "Retry",
					"Job %s failed (%s); retry %d of %d on a new cluster", s.JobId, info.Message, valueOr(s.Failed), *job.Spec.BackoffLimit)
				return ctrl.Result{RequeueAfter: time.Millisecond}, nil
			}
			r.fail(job, s, rayv1.AppFailed, "job "+s.JobId+" failed: "+info.Message)
		} else {
			s.JobDeploymentStatus = rayv1.JobDeploymentStatusComplete
			now := metav1.NewTime(r.now())
			s.EndTime = &now
			s.Succeeded = ptrInt32(valueOr(s.Succeeded) + 1)
			r.Recorder.Eventf(job, nil, corev1.EventTypeNormal, "Completed", "Reconcile", "Job %s ended %s", s.JobId, s.JobStatus)
		}
		return ctrl.Result{RequeueAfter: time.Millisecond}, nil

	case rayv1.JobDeploymentStatusRetrying:
		// Delete the failed attempt's cluster, then start over with new
		// names; the counts stay.
		if s.RayClusterName != "" && job.Spec.RayClusterSpec != nil {
			rc := &rayv1.RayCluster{ObjectMeta: metav1.ObjectMeta{Name: s.RayClusterName, Namespace: job.Namespace}}
			if err := r.Client.Delete(ctx, rc); err != nil && !apierrors.IsNotFound(err) {
				return ctrl.Result{}, err
			}
		}
		*s = rayv1.RayJobStatus{Succeeded: s.Succeeded, Failed: s.Failed, ObservedGeneration: s.ObservedGeneration}
		return ctrl.Result{RequeueAfter: time.Millisecond}, nil

	case rayv1.JobDeploymentStatusComplete, rayv1.JobDeploymentStatusFailed:
		return r.cleanUp(ctx, job, s)
	}
	return ctrl.Result{}, nil
}

// mirror copies the Jobs API's status and times of the job.
func mirror(s *rayv1.RayJobStatus, info *JobInfo) {
	s.JobStatus = rayv1.JobStatus(info.Status)
	if info.StartTime > 0 {
		t := metav1.NewTime(time.UnixMilli(int64(info.StartTime)))
		s.RayJobStatusInfo.StartTime = &t
	}
	if info.EndTime > 0 {
		t := metav1.NewTime(time.UnixMilli(int64(info.EndTime)))
		s.RayJobStatusInfo.EndTime = &t
	}
}

// stopAndMirror stops the job and mirrors its final status: what the Jobs
// API says once it is terminal, else STOPPED when the stop call succeeded
// (the head may mark it a moment later).
func (r *Reconciler) stopAndMirror(ctx context.Context, rc *rayv1.RayCluster, s *rayv1.RayJobStatus) {
	d, err := r.dashboard(ctx, rc, s.DashboardURL)
	if err != nil {
		return
	}
	stopErr := d.StopJob(ctx, s.JobId)
	if info, err := d.GetJobInfo(ctx, s.JobId); err == nil && rayv1.JobStatus(info.Status).IsTerminal() {
		mirror(s, info)
	} else if stopErr == nil {
		s.JobStatus = rayv1.JobStatusStopped
	}
}

func trimName(s string, n int) string {
	if len(s) > n {
		return strings.TrimRight(s[:n], "-")
	}
	return s
}

// deadlineExceeded fails the job past activeDeadlineSeconds (from the
// start) or, before it runs, preRunningDeadlineSeconds.
func (r *Reconciler) deadlineExceeded(job *rayv1.RayJob, s *rayv1.RayJobStatus) bool {
	if s.StartTime == nil {
		return false
	}
	elapsed := r.now().Sub(s.StartTime.Time)
	if d := job.Spec.ActiveDeadlineSeconds; d != nil && elapsed > time.Duration(*d)*time.Second {
		r.fail(job, s, rayv1.DeadlineExceeded, fmt.Sprintf("the job ran past activeDeadlineSeconds (%d)", *d))
		return true
	}
	if d := job.Spec.PreRunningDeadlineSeconds; d != nil && s.JobDeploymentStatus == rayv1.JobDeploymentStatusInitializing && elapsed > time.Duration(*d)*time.Second {
		r.fail(job, s, rayv1.PreRunningDeadlineExceeded, fmt.Sprintf("the job was not running after preRunningDeadlineSeconds (%d)", *d))
		return true
	}
	return false
}

// ensureCluster returns the job's cluster, creating it from
// rayClusterSpec the first time; nil while a selected one is missing.
func (r *Reconciler) ensureCluster(ctx context.Context, job *rayv1.RayJob, s *rayv1.RayJobStatus) (*rayv1.RayCluster, error) {
	var rc rayv1.RayCluster
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: job.Namespace, Name: s.RayClusterName}, &rc)
	if err == nil {
		return &rc, nil
	}
	if !apierrors.IsNotFound(err) || job.Spec.RayClusterSpec == nil {
		return nil, client.IgnoreNotFound(err)
	}
	rc = rayv1.RayCluster{
		ObjectMeta: metav1.ObjectMeta{
			Name: s.RayClusterName, Namespace: job.Namespace,
			Labels:          map[string]string{LabelOriginatedFromName: job.Name, LabelOriginatedFromKind: "RayJob"},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(job, rayv1.GroupVersion.WithKind("RayJob"))},
		},
		Spec: *job.Spec.RayClusterSpec.DeepCopy(),
	}
	if err := r.Client.Create(ctx, &rc); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("rayjob: create RayCluster: %w", err)
	}
	r.Recorder.Eventf(job, &rc, corev1.EventTypeNormal, "CreatedRayCluster", "Create", "Created RayCluster %s", rc.Name)
	return &rc, nil
}

// cleanUp carries out spec.deletionStrategy or, without one, deletes the
// job's own cluster ttlSecondsAfterFinished after the end, when
// shutdownAfterJobFinishes.
func (r *Reconciler) cleanUp(ctx context.Context, job *rayv1.RayJob, s *rayv1.RayJobStatus) (ctrl.Result, error) {
	if job.Spec.DeletionStrategy != nil && s.EndTime != nil {
		return r.applyDeletionStrategy(ctx, job, s)
	}
	if !job.Spec.ShutdownAfterJobFinishes || job.Spec.RayClusterSpec == nil || s.EndTime == nil || s.RayClusterName == "" {
		return ctrl.Result{}, nil
	}
	left := s.EndTime.Add(time.Duration(job.Spec.TTLSecondsAfterFinished) * time.Second).Sub(r.now())
	if left > 0 {
		return ctrl.Result{RequeueAfter: left}, nil
	}
	rc := &rayv1.RayCluster{ObjectMeta: metav1.ObjectMeta{Name: s.RayClusterName, Namespace: job.Namespace}}
	policy := metav1.DeletePropagationBackground
	if err := r.Client.Delete(ctx, rc, &client.DeleteOptions{PropagationPolicy: &policy}); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	r.Recorder.Eventf(job, nil, corev1.EventTypeNormal, "DeletedRayCluster", "Delete", "Deleted RayCluster %s %ds after the job ended", s.RayClusterName, job.Spec.TTLSecondsAfterFinished)
	return ctrl.Result{}, nil
}
