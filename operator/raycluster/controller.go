// Package raycluster is the RayCluster controller: from a RayCluster it
// makes the head pod, the head Service, the worker pods of each group, the
// cluster token Secret and (with in-tree autoscaling) the autoscaler's RBAC,
// and reports their state in the status.
//
// A reconcile is an ordered list of small steps; the status is computed on
// a copy and written once at the end; an invalid spec becomes an Event and
// no retry; an expectations cache keeps a stale informer cache from making
// the controller create or delete a pod twice.
package raycluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	rayv1 "github.com/goray/goray/operator/api/v1"
)

// ManagedBy is the spec.managedBy value (or absence) this operator serves.
const ManagedBy = "ray.io/kuberay-operator"

// EventRecorder records Kubernetes events (events.k8s.io/v1); the
// manager's GetEventRecorder provides one.
type EventRecorder interface {
	Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// Reconciler reconciles RayClusters.
type Reconciler struct {
	Client   client.Client
	Recorder EventRecorder
	Options  Options
	Expect   *Expectations
	// Requeue is the period of a resync when nothing is pending
	// (default 5 minutes).
	Requeue time.Duration

	// ingressWarned maps namespace/name to the UID of each cluster
	// already told that no Ingress is made, so it is told once.
	ingressWarned sync.Map
}

// SetupWithManager registers the controller with mgr.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return r.watches(mgr).Complete(r)
}

// watches are the controller's sources. The RayCluster is watched for
// spec, label and annotation changes only (KubeRay's predicates): a
// status-only update, such as the operator's own status write, must not
// trigger a reconcile, or a failing reconcile would bypass the rate
// limiter's backoff and loop.
func (r *Reconciler) watches(mgr ctrl.Manager) *builder.Builder {
	if r.Expect == nil {
		r.Expect = NewExpectations()
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&rayv1.RayCluster{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Owns(&corev1.Pod{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.Secret{}).
		Named("raycluster")
}

// state is what one reconcile learns and hands from step to step.
type state struct {
	rc      *rayv1.RayCluster
	pods    []corev1.Pod
	service *corev1.Service
	pending bool // expectations not yet met: look again soon

	// tokenHash is TokenHash of the token in the operator's
	// <cluster>-auth Secret ("" when the cluster has none: auth disabled
	// or the user's own Secret); secretRecreated tells that this
	// reconcile made that Secret anew while pods of the cluster existed.
	tokenHash       string
	secretRecreated bool
}

// Reconcile brings the cluster's pods, Service and Secret to its spec and
// writes its status once.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if r.Expect == nil {
		r.Expect = NewExpectations()
	}
	var rc rayv1.RayCluster
	if err := r.Client.Get(ctx, req.NamespacedName, &rc); err != nil {
		if apierrors.IsNotFound(err) {
			r.Expect.Forget(req.Namespace, req.Name)
			r.ingressWarned.Delete(req.String())
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if rc.DeletionTimestamp != nil {
		return ctrl.Result{}, nil
	}
	if rc.Spec.ManagedBy != nil && *rc.Spec.ManagedBy != ManagedBy {
		return ctrl.Result{}, nil
	}
	st := &state{rc: &rc}
	if err := Validate(&rc); err != nil {
		r.Recorder.Eventf(&rc, nil, corev1.EventTypeWarning, rayv1.InvalidSpec, "Validate", "%s", err.Error())
		status := rc.Status.DeepCopy()
		status.Reason = err.Error()
		status.ObservedGeneration = rc.Generation
		return ctrl.Result{}, r.writeStatus(ctx, &rc, status)
	}
	var reconcileErr error
	for _, step := range []func(context.Context, *state) error{
		r.warnIngress,
		r.reconcileAuthSecret,
		r.reconcileAutoscalerRBAC,
		r.reconcileHeadService,
		r.reconcileHeadlessService,
		r.recreateStaleTokenPods,
		r.recreateOutdatedPods,
		r.reconcileHeadPod,
		r.reconcileWorkerPods,
	} {
		if reconcileErr = step(ctx, st); reconcileErr != nil {
			break
		}
	}
	status := r.computeStatus(ctx, st, reconcileErr)
	if err := r.writeStatus(ctx, &rc, status); err != nil && reconcileErr == nil {
		reconcileErr = err
	}
	if reconcileErr != nil {
		return ctrl.Result{}, reconcileErr
	}
	if st.pending {
		return ctrl.Result{RequeueAfter: 2 * time.Second}, nil
	}
	if r.Requeue > 0 {
		return ctrl.Result{RequeueAfter: r.Requeue}, nil
	}
	return ctrl.Result{RequeueAfter: 5 * time.Minute}, nil
}

func ownerRef(rc *rayv1.RayCluster) []metav1.OwnerReference {
	return []metav1.OwnerReference{*metav1.NewControllerRef(rc, rayv1.GroupVersion.WithKind("RayCluster"))}
}

// warnIngress tells, once per cluster, that headGroupSpec.enableIngress
// is not acted on rather than ignoring it silently.
func (r *Reconciler) warnIngress(_ context.Context, st *state) error {
	rc := st.rc
	key := client.ObjectKeyFromObject(rc).String()
	if on := rc.Spec.HeadGroupSpec.EnableIngress; on == nil || !*on {
		r.ingressWarned.Delete(key)
		return nil
	}
	if uid, ok := r.ingressWarned.Load(key); ok && uid == rc.UID {
		return nil
	}
	r.ingressWarned.Store(key, rc.UID)
	r.Recorder.Eventf(rc, nil, corev1.EventTypeWarning, "IngressNotSupported", "Reconcile",
		"headGroupSpec.enableIngress is set but goray's operator does not create Ingresses yet: expose the head Service %s yourself", HeadServiceName(rc))
	return nil
}

// reconcileAuthSecret generates the cluster token into <cluster>-auth
// when that Secret is missing, and notes the hash of its token. A Secret
// made anew while the cluster has pods (the user deleted it) holds a token
// none of them has: recreateStaleTokenPods then replaces them all.
func (r *Reconciler) reconcileAuthSecret(ctx context.Context, st *state) error {
	rc := st.rc
	name := AuthSecretName(rc)
	if name == "" || (rc.Spec.AuthOptions != nil && rc.Spec.AuthOptions.SecretName != "") {
		return nil // disabled, or the user's own Secret
	}
	var s corev1.Secret
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: rc.Namespace, Name: name}, &s)
	if err == nil {
		st.tokenHash = TokenHash(s.Data[AuthTokenKey])
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return err
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	s = corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: rc.Namespace, OwnerReferences: ownerRef(rc),
			Labels: map[string]string{LabelCluster: rc.Name}},
		Data: map[string][]byte{AuthTokenKey: []byte(hex.EncodeToString(b))},
	}
	if err := r.Client.Create(ctx, &s); err != nil {
		if apierrors.IsAlreadyExists(err) {
			// Made meanwhile (by another reconcile): read its token.
			if err := r.Client.Get(ctx, client.ObjectKeyFromObject(&s), &s); err != nil {
				return err
			}
			st.tokenHash = TokenHash(s.Data[AuthTokenKey])
			return nil
		}
		return fmt.Errorf("raycluster: create token secret: %w", err)
	}
	st.tokenHash = TokenHash(s.Data[AuthTokenKey])
	if err := r.listPods(ctx, st); err != nil {
		return err
	}
	for i := range st.pods {
		if st.pods[i].DeletionTimestamp == nil {
			st.secretRecreated = true
			r.Recorder.Eventf(rc, nil, corev1.EventTypeWarning, "AuthSecretRecreated", "Create",
				"Secret %s was deleted; created a new cluster token and recreating the cluster's pods so they share it", name)
			break
		}
	}
	return nil
}

// recreateStaleTokenPods deletes the pods that started with another
// cluster token than the Secret's, so the next steps create them anew
// with it: those whose ray.io/auth-token-hash differs (the user changed
// the token) and, when reconcileAuthSecret has just made the Secret anew,
// every pod (all hold the lost token). Otherwise pods without the
// annotation (made by an older operator) are left alone.
func (r *Reconciler) recreateStaleTokenPods(ctx context.Context, st *state) error {
	rc := st.rc
	if st.tokenHash == "" {
		return nil
	}
	if err := r.listPods(ctx, st); err != nil {
		return err
	}
	var stale []*corev1.Pod
	for i := range st.pods {
		p := &st.pods[i]
		if p.DeletionTimestamp != nil {
			continue
		}
		if h, ok := p.Annotations[AnnotationAuthTokenHash]; (ok && h != st.tokenHash) || (!ok && st.secretRecreated) {
			stale = append(stale, p)
		}
	}
	if len(stale) == 0 {
		return nil
	}
	// Confirm every group's expectations against this listing first, as
	// recreateOutdatedPods does: a pod deleted before its create was seen
	// would leave an expectation no listing ever meets. A Secret made anew
	// is acted on at once (the next reconcile could not tell the
	// unannotated pods of an older operator apart); pods made meanwhile
	// carry the old hash and go on a later pass.
	satisfied := true
	for _, group := range podGroups(rc, st.pods) {
		nodeType, label := NodeTypeWorker, group
		if group == HeadGroupName {
			nodeType, label = NodeTypeHead, ""
		}
		if !r.Expect.Satisfied(GroupKey(rc.Namespace, rc.Name, group), podsOf(st.pods, nodeType, label)) {
			satisfied = false
		}
	}
	if !satisfied && !st.secretRecreated {
		st.pending = true
		return nil
	}
	if !st.secretRecreated {
		r.Recorder.Eventf(rc, nil, corev1.EventTypeWarning, "AuthTokenChanged", "Update",
			"The token in Secret %s changed: recreating the %d pods started with another token so they share it", AuthSecretName(rc), len(stale))
	}
	for _, p := range stale {
		group := podGroup(p)
		if err := r.deletePod(ctx, rc, GroupKey(rc.Namespace, rc.Name, group), p, "started with another cluster token"); err != nil {
			return err
		}
	}
	return nil
}

// podGroup is the expectations group of p: its worker group, or the head's.
func podGroup(p *corev1.Pod) string {
	if p.Labels[LabelNodeType] == NodeTypeHead {
		return HeadGroupName
	}
	return p.Labels[LabelGroup]
}

// podGroups are the groups of the spec and of pods, the head's first.
func podGroups(rc *rayv1.RayCluster, pods []corev1.Pod) []string {
	out := []string{HeadGroupName}
	seen := map[string]bool{HeadGroupName: true}
	add := func(g string) {
		if !seen[g] {
			seen[g] = true
			out = append(out, g)
		}
	}
	for i := range rc.Spec.WorkerGroupSpecs {
		add(rc.Spec.WorkerGroupSpecs[i].GroupName)
	}
	for i := range pods {
		add(podGroup(&pods[i]))
	}
	return out
}

// reconcileAutoscalerRBAC gives the head pod's service account what
// `goray kuberay-autoscaler` needs: read pods, read and patch the cluster.
func (r *Reconciler) reconcileAutoscalerRBAC(ctx context.Context, st *state) error {
	rc := st.rc
	if !autoscaling(rc) || rc.Spec.HeadGroupSpec.Template.Spec.ServiceAccountName != "" {
		return nil
	}
	meta := metav1.ObjectMeta{Name: rc.Name, Namespace: rc.Namespace, OwnerReferences: ownerRef(rc), Labels: map[string]string{LabelCluster: rc.Name}}
	objs := []client.Object{
		&corev1.ServiceAccount{ObjectMeta: meta},
		&rbacv1.Role{ObjectMeta: meta, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch", "patch"}},
			{APIGroups: []string{""}, Resources: []string{"pods/resize"}, Verbs: []string{"patch"}},
			{APIGroups: []string{rayv1.GroupVersion.Group}, Resources: []string{"rayclusters"}, Verbs: []string{"get", "patch"}},
		}},
		&rbacv1.RoleBinding{ObjectMeta: meta,
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: rc.Name, Namespace: rc.Namespace}},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: rc.Name}},
	}
	for _, o := range objs {
		o := o
		if err := r.Client.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("raycluster: create autoscaler %T: %w", o, err)
		}
	}
	return nil
}

// reconcileHeadService creates the head Service once.
func (r *Reconciler) reconcileHeadService(ctx context.Context, st *state) error {
	rc := st.rc
	var svc corev1.Service
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: rc.Namespace, Name: HeadServiceName(rc)}, &svc)
	if err == nil {
		st.service = &svc
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return err
	}
	want := BuildHeadService(rc, r.Options)
	if err := r.Client.Create(ctx, want); err != nil {
		return fmt.Errorf("raycluster: create head service: %w", err)
	}
	r.Recorder.Eventf(rc, nil, corev1.EventTypeNormal, "CreatedService", "Create", "Created head service %s/%s", want.Namespace, want.Name)
	st.service = want
	return nil
}

// reconcileHeadlessService creates the headless worker Service once a
// group is multi-host (it stays if the group shrinks back to one host).
func (r *Reconciler) reconcileHeadlessService(ctx context.Context, st *state) error {
	rc := st.rc
	if !multiHost(rc) {
		return nil
	}
	var svc corev1.Service
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: rc.Namespace, Name: HeadlessServiceName(rc)}, &svc)
	if err == nil || !apierrors.IsNotFound(err) {
		return err
	}
	want := BuildHeadlessWorkerService(rc)
	if err := r.Client.Create(ctx, want); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("raycluster: create headless worker service: %w", err)
	}
	r.Recorder.Eventf(rc, nil, corev1.EventTypeNormal, "CreatedService", "Create", "Created headless worker service %s/%s", want.Namespace, want.Name)
	return nil
}

func (r *Reconciler) listPods(ctx context.Context, st *state) error {
	var pods corev1.PodList
	if err := r.Client.List(ctx, &pods, client.InNamespace(st.rc.Namespace), client.MatchingLabels{LabelCluster: st.rc.Name}); err != nil {
		return err
	}
	st.pods = pods.Items
	return nil
}

func podsOf(pods []corev1.Pod, nodeType, group string) []corev1.Pod {
	var out []corev1.Pod
	for _, p := range pods {
		if p.Labels[LabelNodeType] == nodeType && (group == "" || p.Labels[LabelGroup] == group) {
			out = append(out, p)
		}
	}
	return out
}

// unhealthy pods are deleted and replaced: finished ones, and ones whose
// goray container ended for good.
func unhealthy(p *corev1.Pod) bool {
	if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
		return true
	}
	if p.Spec.RestartPolicy == corev1.RestartPolicyNever && len(p.Spec.Containers) > 0 {
		for _, cs := range p.Status.ContainerStatuses {
			if cs.Name == p.Spec.Containers[0].Name && cs.State.Terminated != nil {
				return true
			}
		}
	}
	return false
}

func (r *Reconciler) deletePod(ctx context.Context, rc *rayv1.RayCluster, key string, p *corev1.Pod, why string) error {
	if err := r.Client.Delete(ctx, p); err != nil && !apierrors.IsNotFound(err) {
		r.Recorder.Eventf(rc, p, corev1.EventTypeWarning, rayv1.FailedDeleteWorkerPod, "Delete", "Failed to delete pod %s: %v", p.Name, err)
		return fmt.Errorf("raycluster: delete pod %s: %w", p.Name, err)
	}
	r.Expect.ExpectDelete(key, p.Name)
	r.Recorder.Eventf(rc, p, corev1.EventTypeNormal, "DeletedPod", "Delete", "Deleted pod %s (%s)", p.Name, why)
	return nil
}

// createPod creates p of the given group. A refused create is an error
// (so the rate limiter backs off) whose text names the group and the
// generateName prefix, never the random name the API server drew: the
// status and the Event then stay the same from one retry to the next.
func (r *Reconciler) createPod(ctx context.Context, rc *rayv1.RayCluster, key, group, tokenHash string, p *corev1.Pod, failReason string) error {
	if tokenHash != "" {
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[AnnotationAuthTokenHash] = tokenHash
	}
	if err := r.Client.Create(ctx, p); err != nil {
		msg := createError(err, p)
		r.Recorder.Eventf(rc, nil, corev1.EventTypeWarning, failReason, "Create", "Failed to create pod of group %s (%s): %s", group, podNameOrPrefix(p), msg)
		return fmt.Errorf("raycluster: create pod of group %s (%s): %s", group, podNameOrPrefix(p), msg)
	}
	r.Expect.ExpectCreate(key, p.Name)
	r.Recorder.Eventf(rc, p, corev1.EventTypeNormal, "CreatedPod", "Create", "Created pod %s", p.Name)
	return nil
}

func podNameOrPrefix(p *corev1.Pod) string {
	if p.Name != "" {
		return p.Name
	}
	return p.GenerateName + "*"
}

// createError is err's text with the name the API server generated for p
// (a refused create reports it) replaced by p's generateName prefix.
func createError(err error, p *corev1.Pod) string {
	msg := err.Error()
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		if d := st.Status().Details; d != nil && d.Name != "" && p.Name == "" {
			msg = strings.ReplaceAll(msg, d.Name, p.GenerateName+"*")
		}
	}
	return msg
}

func suspended(rc *rayv1.RayCluster) bool { return rc.Spec.Suspend != nil && *rc.Spec.Suspend }

// recreateOutdatedPods, with upgradeStrategy Recreate, deletes every pod
// once one was built from another head or group template than the spec's
// (its ray.io/pod-template-hash differs); the next steps create them anew.
// Pods without the annotation (made before it existed) are left alone,
// as are pods of groups no longer in the spec.
func (r *Reconciler) recreateOutdatedPods(ctx context.Context, st *state) error {
	rc := st.rc
	if s := rc.Spec.UpgradeStrategy; s == nil || s.Type == nil || *s.Type != rayv1.Recreate {
		return nil
	}
	if err := r.listPods(ctx, st); err != nil {
		return err
	}
	want := map[string]string{HeadGroupName: TemplateHash(&rc.Spec.HeadGroupSpec.Template)}
	for i := range rc.Spec.WorkerGroupSpecs {
		g := &rc.Spec.WorkerGroupSpecs[i]
		want[g.GroupName] = TemplateHash(&g.Template)
	}
	changed := ""
	for _, p := range st.pods {
		group := p.Labels[LabelGroup]
		if p.Labels[LabelNodeType] == NodeTypeHead {
			group = HeadGroupName
		}
		if h, ok := p.Annotations[AnnotationPodTemplateHash]; ok && want[group] != "" && h != want[group] {
			changed = group
			break
		}
	}
	if changed == "" {
		return nil
	}
	// Only on a cache that shows this operator's last creates and
	// deletes: a pod deleted before its create was seen would leave an
	// expectation no listing ever meets.
	for group := range want {
		nodeType, label := NodeTypeWorker, group
		if group == HeadGroupName {
			nodeType, label = NodeTypeHead, ""
		}
		if !r.Expect.Satisfied(GroupKey(rc.Namespace, rc.Name, group), podsOf(st.pods, nodeType, label)) {
			st.pending = true
			return nil
		}
	}
	r.Recorder.Eventf(rc, nil, corev1.EventTypeNormal, "RecreatingPods", "Upgrade", "The pod template of %s changed: recreating every pod (upgradeStrategy Recreate)", changed)
	for i := range st.pods {
		p := &st.pods[i]
		if p.DeletionTimestamp != nil {
			continue
		}
		group := p.Labels[LabelGroup]
		if p.Labels[LabelNodeType] == NodeTypeHead {
			group = HeadGroupName
		}
		if err := r.deletePod(ctx, rc, GroupKey(rc.Namespace, rc.Name, group), p, "upgradeStrategy Recreate"); err != nil {
			return err
		}
	}
	return nil
}

// reconcileHeadPod keeps exactly one healthy head pod (none when suspended).
func (r *Reconciler) reconcileHeadPod(ctx context.Context, st *state) error {
	if err := r.listPods(ctx, st); err != nil {
		return err
	}
	rc := st.rc
	key := GroupKey(rc.Namespace, rc.Name, HeadGroupName)
	heads := podsOf(st.pods, NodeTypeHead, "")
	if !r.Expect.Satisfied(key, heads) {
		st.pending = true
		return nil
	}
	live := 0
	for i := range heads {
		p := &heads[i]
		if p.DeletionTimestamp != nil {
			continue
		}
		if suspended(rc) || unhealthy(p) {
			if err := r.deletePod(ctx, rc, key, p, "suspended or unhealthy head"); err != nil {
				return err
			}
			continue
		}
		live++
	}
	if live == 0 && !suspended(rc) {
		return r.createPod(ctx, rc, key, HeadGroupName, st.tokenHash, BuildHeadPod(rc, r.Options), rayv1.FailedCreateHeadPod)
	}
	return nil
}

// Replicas returns a group's desired replicas clamped to [min, max].
func Replicas(g *rayv1.WorkerGroupSpec) int32 {
	n := int32(0)
	if g.Replicas != nil {
		n = *g.Replicas
	}
	if g.MinReplicas != nil && n < *g.MinReplicas {
		n = *g.MinReplicas
	}
	if g.MaxReplicas != nil && n > *g.MaxReplicas {
		n = *g.MaxReplicas
	}
	return n
}

func hosts(g *rayv1.WorkerGroupSpec) int32 {
	if g.NumOfHosts <= 0 {
		return 1
	}
	return g.NumOfHosts
}

func groupSuspended(rc *rayv1.RayCluster, g *rayv1.WorkerGroupSpec) bool {
	return suspended(rc) || (g.Suspend != nil && *g.Suspend)
}

// reconcileWorkerPods, per group: delete unhealthy pods, delete every pod
// named in workersToDelete, then create the missing pods; surplus pods are
// deleted only without the autoscaler (which alone chooses its victims).
// A multi-host group (numOfHosts > 1) does all this by whole replicas.
func (r *Reconciler) reconcileWorkerPods(ctx context.Context, st *state) error {
	rc := st.rc
	for i := range rc.Spec.WorkerGroupSpecs {
		g := &rc.Spec.WorkerGroupSpecs[i]
		key := GroupKey(rc.Namespace, rc.Name, g.GroupName)
		pods := podsOf(st.pods, NodeTypeWorker, g.GroupName)
		if !r.Expect.Satisfied(key, pods) {
			st.pending = true
			continue
		}
		var err error
		if hosts(g) > 1 {
			err = r.reconcileMultiHostGroup(ctx, rc, g, key, st.tokenHash, pods)
		} else {
			err = r.reconcileGroup(ctx, rc, g, key, st.tokenHash, pods)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (r *Reconciler) reconcileGroup(ctx context.Context, rc *rayv1.RayCluster, g *rayv1.WorkerGroupSpec, key, tokenHash string, pods []corev1.Pod) error {
	toDelete := map[string]bool{}
	for _, n := range g.ScaleStrategy.WorkersToDelete {
		toDelete[n] = true
	}
	var running []*corev1.Pod
	for j := range pods {
		p := &pods[j]
		if p.DeletionTimestamp != nil {
			continue
		}
		if why := deleteReason(rc, g, p, toDelete); why != "" {
			if err := r.deletePod(ctx, rc, key, p, why); err != nil {
				return err
			}
			continue
		}
		running = append(running, p)
	}
	if groupSuspended(rc, g) {
		return nil
	}
	diff := int(Replicas(g)) - len(running)
	used := replicaIndices(running)
	for ; diff > 0; diff-- {
		p := BuildWorkerPod(rc, g, r.Options)
		p.Labels[LabelReplicaIndex] = strconv.Itoa(nextIndex(used))
		if err := r.createPod(ctx, rc, key, g.GroupName, tokenHash, p, rayv1.FailedCreateWorkerPod); err != nil {
			return err
		}
	}
	if diff < 0 && !autoscaling(rc) {
		sortVictims(running)
		for _, p := range running[:-diff] {
			if err := r.deletePod(ctx, rc, key, p, "more pods than replicas"); err != nil {
				return err
			}
		}
	}
	return nil
}

// reconcileMultiHostGroup keeps Replicas(g) complete replicas of
// numOfHosts pods each, told apart by their ray.io/worker-group-replica-name
// label: a replica with a pod to delete (unhealthy, named in
// workersToDelete) or a pod missing goes whole, as in KubeRay.
func (r *Reconciler) reconcileMultiHostGroup(ctx context.Context, rc *rayv1.RayCluster, g *rayv1.WorkerGroupSpec, key, tokenHash string, pods []corev1.Pod) error {
	toDelete := map[string]bool{}
	for _, n := range g.ScaleStrategy.WorkersToDelete {
		toDelete[n] = true
	}
	byName := map[string][]*corev1.Pod{}
	var replicaNames []string
	for j := range pods {
		p := &pods[j]
		if p.DeletionTimestamp != nil {
			continue
		}
		n := p.Labels[LabelReplicaName]
		if n == "" {
			n = "pod/" + p.Name // made before replicas had names: a replica of one, incomplete
		}
		if byName[n] == nil {
			replicaNames = append(replicaNames, n)
		}
		byName[n] = append(byName[n], p)
	}
	sort.Strings(replicaNames)
	var complete [][]*corev1.Pod
	for _, n := range replicaNames {
		replica := byName[n]
		why := ""
		for _, p := range replica {
			if why = deleteReason(rc, g, p, toDelete); why != "" {
				break
			}
		}
		if why == "" && len(replica) < int(hosts(g)) {
			why = fmt.Sprintf("replica %s has %d of its %d hosts", n, len(replica), hosts(g))
		}
		if why == "" {
			complete = append(complete, replica)
			continue
		}
		if err := r.deleteReplica(ctx, rc, key, replica, why); err != nil {
			return err
		}
	}
	if groupSuspended(rc, g) {
		return nil
	}
	diff := int(Replicas(g)) - len(complete)
	var firsts []*corev1.Pod
	for _, replica := range complete {
		firsts = append(firsts, replica[0])
	}
	used := replicaIndices(firsts)
	for ; diff > 0; diff-- {
		index, name := nextIndex(used), replicaName(g)
		for host := 0; host < int(hosts(g)); host++ {
			p := BuildWorkerPod(rc, g, r.Options)
			p.Labels[LabelReplicaIndex] = strconv.Itoa(index)
			p.Labels[LabelReplicaName] = name
			p.Labels[LabelHostIndex] = strconv.Itoa(host)
			if err := r.createPod(ctx, rc, key, g.GroupName, tokenHash, p, rayv1.FailedCreateWorkerPod); err != nil {
				return err
			}
		}
	}
	if diff < 0 && !autoscaling(rc) {
		// Replicas go in the order their first pod would.
		byFirst := map[*corev1.Pod][]*corev1.Pod{}
		for _, replica := range complete {
			byFirst[replica[0]] = replica
		}
		sortVictims(firsts)
		for _, p := range firsts[:-diff] {
			if err := r.deleteReplica(ctx, rc, key, byFirst[p], "more replicas than wanted"); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r *Reconciler) deleteReplica(ctx context.Context, rc *rayv1.RayCluster, key string, replica []*corev1.Pod, why string) error {
	for _, p := range replica {
		if err := r.deletePod(ctx, rc, key, p, why); err != nil {
			return err
		}
	}
	return nil
}

// deleteReason says why p must go ("" when it stays).
func deleteReason(rc *rayv1.RayCluster, g *rayv1.WorkerGroupSpec, p *corev1.Pod, toDelete map[string]bool) string {
	switch {
	case groupSuspended(rc, g):
		return "suspended"
	case toDelete[p.Name]:
		return "listed in workersToDelete"
	case unhealthy(p):
		return "unhealthy: " + string(p.Status.Phase)
	}
	return ""
}

// sortVictims orders surplus pods: pending ones first, then the newest.
func sortVictims(pods []*corev1.Pod) {
	sort.SliceStable(pods, func(a, b int) bool {
		pa, pb := pods[a].Status.Phase == corev1.PodRunning, pods[b].Status.Phase == corev1.PodRunning
		if pa != pb {
			return !pa
		}
		return pods[a].CreationTimestamp.After(pods[b].CreationTimestamp.Time)
	})
}

// replicaIndices are the ray.io/worker-group-replica-index values in use.
func replicaIndices(pods []*corev1.Pod) map[int]bool {
	used := map[int]bool{}
	for _, p := range pods {
		if i, err := strconv.Atoi(p.Labels[LabelReplicaIndex]); err == nil {
			used[i] = true
		}
	}
	return used
}

// nextIndex takes the lowest index not in used.
func nextIndex(used map[int]bool) int {
	i := 0
	for used[i] {
		i++
	}
	used[i] = true
	return i
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// computeStatus derives the status from what the reconcile saw; it reads
// the pods again so the counts include this reconcile's changes.
func (r *Reconciler) computeStatus(ctx context.Context, st *state, reconcileErr error) *rayv1.RayClusterStatus {
	rc := st.rc
	s := rc.Status.DeepCopy()
	s.ObservedGeneration = rc.Generation
	s.Reason = ""
	if reconcileErr == nil {
		if err := r.listPods(ctx, st); err != nil {
			reconcileErr = err
		}
	}
	var desired, minR, maxR int32
	var cpu, mem, gpu, tpu = newQuantities()
	addPod := func(spec *corev1.PodSpec, n int32) {
		for _, c := range spec.Containers {
			for i := int32(0); i < n; i++ {
				addContainer(&cpu, &mem, &gpu, &tpu, &c)
			}
		}
	}
	addPod(&rc.Spec.HeadGroupSpec.Template.Spec, 1)
	for i := range rc.Spec.WorkerGroupSpecs {
		g := &rc.Spec.WorkerGroupSpecs[i]
		h := hosts(g)
		if !groupSuspended(rc, g) {
			desired += Replicas(g) * h
			addPod(&g.Template.Spec, Replicas(g)*h)
		}
		if g.MinReplicas != nil {
			minR += *g.MinReplicas * h
		}
		mx := int64(2147483647)
		if g.MaxReplicas != nil {
			mx = int64(*g.MaxReplicas) * int64(h)
		}
		if int64(maxR)+mx > 2147483647 {
			maxR = 2147483647
		} else {
			maxR += int32(mx)
		}
	}
	s.DesiredWorkerReplicas, s.MinWorkerReplicas, s.MaxWorkerReplicas = desired, minR, maxR
	s.DesiredCPU, s.DesiredMemory, s.DesiredGPU, s.DesiredTPU = cpu, mem, gpu, tpu

	var ready, available int32
	var head *corev1.Pod
	allRunning := true
	live := 0
	for i := range st.pods {
		p := &st.pods[i]
		if p.DeletionTimestamp != nil {
			continue
		}
		live++
		running := p.Status.Phase == corev1.PodRunning
		allRunning = allRunning && running && podReady(p)
		if p.Labels[LabelNodeType] == NodeTypeHead {
			head = p
			continue
		}
		if running {
			available++
		}
		if running && podReady(p) {
			ready++
		}
	}
	s.ReadyWorkerReplicas, s.AvailableWorkerReplicas = ready, available

	s.Head = rayv1.HeadInfo{ServiceName: HeadServiceName(rc)}
	if head != nil {
		s.Head.PodName, s.Head.PodIP = head.Name, head.Status.PodIP
	}
	s.Endpoints = nil
	if st.service != nil {
		s.Head.ServiceIP = st.service.Spec.ClusterIP
		if s.Head.ServiceIP == corev1.ClusterIPNone {
			s.Head.ServiceIP = s.Head.PodIP
		}
		s.Endpoints = map[string]string{}
		for _, p := range st.service.Spec.Ports {
			port := p.TargetPort.String()
			if p.NodePort != 0 {
				port = fmt.Sprint(p.NodePort)
			}
			s.Endpoints[p.Name] = port
		}
	}

	gen := rc.Generation
	switch {
	case head == nil:
		meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: rayv1.HeadPodReady, Status: metav1.ConditionFalse, Reason: rayv1.HeadPodNotFound, Message: "no head pod", ObservedGeneration: gen})
	case head.Status.Phase == corev1.PodRunning && podReady(head):
		meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: rayv1.HeadPodReady, Status: metav1.ConditionTrue, Reason: rayv1.HeadPodRunningAndReady, ObservedGeneration: gen})
	default:
		meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: rayv1.HeadPodReady, Status: metav1.ConditionFalse, Reason: rayv1.HeadPodNotReady, Message: "head pod " + head.Name + " is not running and ready", ObservedGeneration: gen})
	}
	provisioned := reconcileErr == nil && head != nil && allRunning && int32(live) == desired+1 && !suspended(rc)
	if provisioned {
		meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: rayv1.RayClusterProvisioned, Status: metav1.ConditionTrue, Reason: rayv1.AllPodRunningAndReadyFirstTime, ObservedGeneration: gen})
	} else if !meta.IsStatusConditionTrue(s.Conditions, rayv1.RayClusterProvisioned) {
		meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: rayv1.RayClusterProvisioned, Status: metav1.ConditionFalse, Reason: rayv1.RayClusterPodsProvisioning, ObservedGeneration: gen})
	}
	if reconcileErr != nil {
		s.Reason = reconcileErr.Error()
		meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: rayv1.RayClusterReplicaFailure, Status: metav1.ConditionTrue, Reason: "ReconcileFailed", Message: reconcileErr.Error(), ObservedGeneration: gen})
	} else {
		meta.RemoveStatusCondition(&s.Conditions, rayv1.RayClusterReplicaFailure)
	}
	if suspended(rc) {
		if live == 0 {
			meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: rayv1.RayClusterSuspended, Status: metav1.ConditionTrue, Reason: rayv1.RayClusterSuspended, ObservedGeneration: gen})
			meta.RemoveStatusCondition(&s.Conditions, rayv1.RayClusterSuspending)
			setState(s, rayv1.Suspended)
		} else {
			meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: rayv1.RayClusterSuspending, Status: metav1.ConditionTrue, Reason: rayv1.RayClusterSuspending, ObservedGeneration: gen})
		}
	} else {
		meta.RemoveStatusCondition(&s.Conditions, rayv1.RayClusterSuspended)
		meta.RemoveStatusCondition(&s.Conditions, rayv1.RayClusterSuspending)
		switch {
		case provisioned:
			setState(s, rayv1.Ready)
		case s.State == rayv1.Suspended:
			setState(s, "")
		}
	}
	return s
}

func setState(s *rayv1.RayClusterStatus, to rayv1.ClusterState) {
	if s.State == to {
		return
	}
	s.State = to
	if to == "" {
		return
	}
	if s.StateTransitionTimes == nil {
		s.StateTransitionTimes = map[rayv1.ClusterState]*metav1.Time{}
	}
	now := metav1.Now()
	s.StateTransitionTimes[to] = &now
}

// writeStatus updates the status subresource when it changed (ignoring
// the update time), once per reconcile.
func (r *Reconciler) writeStatus(ctx context.Context, rc *rayv1.RayCluster, s *rayv1.RayClusterStatus) error {
	old := rc.Status.DeepCopy()
	old.LastUpdateTime, s.LastUpdateTime = nil, nil
	if equality.Semantic.DeepEqual(old, s) {
		return nil
	}
	now := metav1.Now()
	s.LastUpdateTime = &now
	rc.Status = *s
	// A conflict is an error too: a status-only update of the cluster
	// queues no reconcile (the watch's predicates), so only the rate
	// limiter's retry recomputes the status.
	if err := r.Client.Status().Update(ctx, rc); err != nil {
		return fmt.Errorf("raycluster: update status: %w", err)
	}
	return nil
}
