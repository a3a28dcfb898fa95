package rayjob

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rayv1 "github.com/goray/goray/operator/api/v1"
)

// validateDeletionStrategy refuses strategies that cannot apply, as
// KubeRay's validation does: legacy policies need both onSuccess and
// onFailure; deletionRules exclude shutdownAfterJobFinishes (and its TTL)
// and the legacy fields; a selected cluster is not the job's to delete;
// workers the autoscaler manages cannot be suspended; and rules on one
// condition must delete workers, cluster, then the RayJob, in that order.
func validateDeletionStrategy(j *rayv1.RayJob) error {
	ds := j.Spec.DeletionStrategy
	if ds == nil {
		return nil
	}
	selected := len(j.Spec.ClusterSelector) > 0
	autoscaled := j.Spec.RayClusterSpec != nil && j.Spec.RayClusterSpec.EnableInTreeAutoscaling != nil && *j.Spec.RayClusterSpec.EnableInTreeAutoscaling
	// fits says why policy p cannot apply to this job, or nil.
	fits := func(where string, p rayv1.DeletionPolicyType) error {
		switch {
		case p != rayv1.DeleteCluster && p != rayv1.DeleteWorkers && p != rayv1.DeleteSelf && p != rayv1.DeleteNone:
			return fmt.Errorf("%s: unknown policy %q", where, p)
		case selected && (p == rayv1.DeleteCluster || p == rayv1.DeleteWorkers):
			return fmt.Errorf("%s: %s cannot apply to a cluster chosen by clusterSelector (not the RayJob's own)", where, p)
		case autoscaled && p == rayv1.DeleteWorkers:
			return fmt.Errorf("%s: DeleteWorkers cannot apply with enableInTreeAutoscaling (the autoscaler manages the workers)", where)
		}
		return nil
	}
	legacy := ds.OnSuccess != nil || ds.OnFailure != nil
	if len(ds.DeletionRules) == 0 {
		if !legacy {
			return errors.New("deletionStrategy needs both onSuccess and onFailure, or deletionRules")
		}
		if ds.OnSuccess == nil || ds.OnSuccess.Policy == nil || ds.OnFailure == nil || ds.OnFailure.Policy == nil {
			return errors.New("deletionStrategy: onSuccess and onFailure both need a policy")
		}
		if j.Spec.ShutdownAfterJobFinishes && (*ds.OnSuccess.Policy == rayv1.DeleteNone || *ds.OnFailure.Policy == rayv1.DeleteNone) {
			return errors.New("deletionStrategy: DeleteNone contradicts shutdownAfterJobFinishes=true")
		}
		return errors.Join(fits("deletionStrategy.onSuccess", *ds.OnSuccess.Policy), fits("deletionStrategy.onFailure", *ds.OnFailure.Policy))
	}
	switch {
	case legacy:
		return errors.New("deletionStrategy: onSuccess/onFailure and deletionRules exclude each other")
	case j.Spec.ShutdownAfterJobFinishes:
		return errors.New("shutdownAfterJobFinishes and deletionStrategy.deletionRules exclude each other")
	case j.Spec.TTLSecondsAfterFinished > 0:
		return errors.New("ttlSecondsAfterFinished does not apply to deletionStrategy.deletionRules; give each rule condition.ttlSeconds")
	}
	var errs []error
	ttls := map[string]map[rayv1.DeletionPolicyType]int32{} // condition → policy → ttl
	for i, rule := range ds.DeletionRules {
		where := fmt.Sprintf("deletionRules[%d]", i)
		c := rule.Condition
		var cond string
		switch {
		case (c.JobStatus == nil) == (c.JobDeploymentStatus == nil):
			errs = append(errs, fmt.Errorf("%s: the condition needs exactly one of jobStatus and jobDeploymentStatus", where))
			continue
		case c.JobStatus != nil && *c.JobStatus != rayv1.JobStatusSucceeded && *c.JobStatus != rayv1.JobStatusFailed:
			errs = append(errs, fmt.Errorf("%s: condition.jobStatus %q is not SUCCEEDED or FAILED", where, *c.JobStatus))
			continue
		case c.JobDeploymentStatus != nil && *c.JobDeploymentStatus != rayv1.JobDeploymentStatusFailed:
			errs = append(errs, fmt.Errorf("%s: condition.jobDeploymentStatus %q is not Failed", where, *c.JobDeploymentStatus))
			continue
		case c.TTLSeconds < 0:
			errs = append(errs, fmt.Errorf("%s: condition.ttlSeconds is negative", where))
			continue
		case c.JobStatus != nil:
			cond = "jobStatus " + string(*c.JobStatus)
		default:
			cond = "jobDeploymentStatus " + string(*c.JobDeploymentStatus)
		}
		if err := fits(where, rule.Policy); err != nil {
			errs = append(errs, err)
			continue
		}
		if ttls[cond] == nil {
			ttls[cond] = map[rayv1.DeletionPolicyType]int32{}
		}
		if _, dup := ttls[cond][rule.Policy]; dup {
			errs = append(errs, fmt.Errorf("%s: a second %s rule for %s", where, rule.Policy, cond))
			continue
		}
		ttls[cond][rule.Policy] = c.TTLSeconds
	}
	for cond, byPolicy := range ttls {
		var prev rayv1.DeletionPolicyType
		for _, p := range []rayv1.DeletionPolicyType{rayv1.DeleteWorkers, rayv1.DeleteCluster, rayv1.DeleteSelf} {
			ttl, ok := byPolicy[p]
			if !ok {
				continue
			}
			if prev != "" && ttl < byPolicy[prev] {
				errs = append(errs, fmt.Errorf("deletionRules for %s: %s ttlSeconds (%d) must not be below %s ttlSeconds (%d)", cond, p, ttl, prev, byPolicy[prev]))
			}
			prev = p
		}
	}
	return errors.Join(errs...)
}

// applyDeletionStrategy carries out spec.deletionStrategy once the job
// ended (Complete or Failed).
func (r *Reconciler) applyDeletionStrategy(ctx context.Context, job *rayv1.RayJob, s *rayv1.RayJobStatus) (ctrl.Result, error) {
	ds := job.Spec.DeletionStrategy
	if err := validateDeletionStrategy(job); err != nil {
		// Changed after validation: act on nothing rather than guess.
		r.Recorder.Eventf(job, nil, corev1.EventTypeWarning, string(rayv1.ValidationFailed), "Delete", "Not applying deletionStrategy: %v", err)
		return ctrl.Result{}, nil
	}
	if len(ds.DeletionRules) == 0 {
		// Legacy: onSuccess/onFailure after ttlSecondsAfterFinished; a
		// STOPPED job, or one that never ran, matches neither.
		var p rayv1.DeletionPolicyType
		switch s.JobStatus {
		case rayv1.JobStatusSucceeded:
			p = *ds.OnSuccess.Policy
		case rayv1.JobStatusFailed:
			p = *ds.OnFailure.Policy
		default:
			return ctrl.Result{}, nil
		}
		if left := s.EndTime.Add(time.Duration(job.Spec.TTLSecondsAfterFinished) * time.Second).Sub(r.now()); left > 0 {
			return ctrl.Result{RequeueAfter: left}, nil
		}
		if done, err := r.deletionDone(ctx, job, s, p); done || err != nil {
			return ctrl.Result{}, err
		}
		return ctrl.Result{}, r.executeDeletion(ctx, job, s, p)
	}
	// Rules: of those due and not yet done, run the most destructive (a
	// RayJob about to go need not lose its workers first); come back for
	// the rest.
	order := map[rayv1.DeletionPolicyType]int{rayv1.DeleteNone: 1, rayv1.DeleteWorkers: 2, rayv1.DeleteCluster: 3, rayv1.DeleteSelf: 4}
	var next time.Duration
	var due []rayv1.DeletionPolicyType
	for _, rule := range ds.DeletionRules {
		c := rule.Condition
		if c.JobStatus != nil && *c.JobStatus != s.JobStatus || c.JobDeploymentStatus != nil && *c.JobDeploymentStatus != s.JobDeploymentStatus {
			continue
		}
		if left := s.EndTime.Add(time.Duration(c.TTLSeconds) * time.Second).Sub(r.now()); left > 0 {
			if next == 0 || left < next {
				next = left
			}
			continue
		}
		done, err := r.deletionDone(ctx, job, s, rule.Policy)
		if err != nil {
			return ctrl.Result{}, err
		}
		if !done {
			due = append(due, rule.Policy)
		}
	}
	if len(due) > 0 {
		p := due[0]
		for _, q := range due[1:] {
			if order[q] > order[p] {
				p = q
			}
		}
		if err := r.executeDeletion(ctx, job, s, p); err != nil {
			return ctrl.Result{}, err
		}
		if len(due) > 1 {
			next = time.Millisecond
		}
	}
	return ctrl.Result{RequeueAfter: next}, nil
}

// deletionDone tells whether what policy p deletes is already gone, so
// each rule acts once.
func (r *Reconciler) deletionDone(ctx context.Context, job *rayv1.RayJob, s *rayv1.RayJobStatus, p rayv1.DeletionPolicyType) (bool, error) {
	switch p {
	case rayv1.DeleteNone:
		return true, nil
	case rayv1.DeleteSelf:
		return job.DeletionTimestamp != nil, nil
	}
	if job.Spec.RayClusterSpec == nil || s.RayClusterName == "" {
		return true, nil // no cluster of its own
	}
	var rc rayv1.RayCluster
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: job.Namespace, Name: s.RayClusterName}, &rc); apierrors.IsNotFound(err) {
		return true, nil
	} else if err != nil {
		return false, err
	}
	if rc.DeletionTimestamp != nil || p == rayv1.DeleteCluster {
		return rc.DeletionTimestamp != nil, nil
	}
	for _, g := range rc.Spec.WorkerGroupSpecs {
		if g.Suspend == nil || !*g.Suspend {
			return false, nil
		}
	}
	return true, nil
}

// executeDeletion deletes what policy p names.
func (r *Reconciler) executeDeletion(ctx context.Context, job *rayv1.RayJob, s *rayv1.RayJobStatus, p rayv1.DeletionPolicyType) error {
	switch p {
	case rayv1.DeleteSelf:
		if err := r.Client.Delete(ctx, job); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("rayjob: delete the RayJob (DeleteSelf): %w", err)
		}
		r.Recorder.Eventf(job, nil, corev1.EventTypeNormal, "DeletedRayJob", "Delete", "Deleting the RayJob %s after the job ended (DeleteSelf)", job.Name)
	case rayv1.DeleteCluster:
		rc := &rayv1.RayCluster{ObjectMeta: metav1.ObjectMeta{Name: s.RayClusterName, Namespace: job.Namespace}}
		policy := metav1.DeletePropagationBackground
		if err := r.Client.Delete(ctx, rc, &client.DeleteOptions{PropagationPolicy: &policy}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("rayjob: delete RayCluster %s (DeleteCluster): %w", s.RayClusterName, err)
		}
		r.Recorder.Eventf(job, nil, corev1.EventTypeNormal, "DeletedRayCluster", "Delete", "Deleted RayCluster %s after the job ended (DeleteCluster)", s.RayClusterName)
	case rayv1.DeleteWorkers:
		// Suspended worker groups lose their pods; the head stays.
		var rc rayv1.RayCluster
		if err := r.Client.Get(ctx, client.ObjectKey{Namespace: job.Namespace, Name: s.RayClusterName}, &rc); err != nil {
			return client.IgnoreNotFound(err)
		}
		for i := range rc.Spec.WorkerGroupSpecs {
			rc.Spec.WorkerGroupSpecs[i].Suspend = new(true)
		}
		if err := r.Client.Update(ctx, &rc); err != nil {
			return fmt.Errorf("rayjob: suspend the worker groups of RayCluster %s (DeleteWorkers): %w", rc.Name, err)
		}
		r.Recorder.Eventf(job, &rc, corev1.EventTypeNormal, "DeletedWorkers", "Delete", "Suspended every worker group of RayCluster %s after the job ended (DeleteWorkers)", rc.Name)
	}
	return nil
}
