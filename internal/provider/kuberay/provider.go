package kuberay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"

	"github.com/goray/goray/internal/provider"
)

// Pod labels the operator sets (KubeRay's).
const (
	labelNodeType = "ray.io/node-type"
	labelGroup    = "ray.io/group"
)

// Provider is the node provider over a RayCluster: nodes are its pods,
// launching and terminating are patches of the RayCluster.
//
// Invariant: mu serialises the read-modify-patch of the RayCluster.
type Provider struct {
	kube      *Kube
	namespace string
	cluster   string
	log       *slog.Logger
	mu        sync.Mutex
	// listed counts each group's worker pods as the last listing showed
	// them: the autoscaler plans on that listing, so a launch of count
	// nodes means listed+count workers even when the operator created
	// more pods since.
	listed map[string]int
}

// New returns the provider of cluster in namespace.
func New(kube *Kube, namespace, cluster string, log *slog.Logger) *Provider {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Provider{kube: kube, namespace: namespace, cluster: cluster, log: log}
}

var _ provider.NodeProvider = (*Provider)(nil)

func podNode(p *Pod) provider.Node {
	kind := p.Metadata.Labels[labelNodeType]
	typ := p.Metadata.Labels[labelGroup]
	if kind == "head" {
		typ = HeadNodeType
	}
	status := provider.StatusUninitialized
	running := false
	if cs := p.Status.ContainerStatuses; len(cs) > 0 {
		switch {
		case cs[0].State["running"] != nil:
			status, running = provider.StatusUpToDate, true
		case cs[0].State["terminated"] != nil:
			status = provider.StatusUpdateFailed
		default:
			status = "waiting"
		}
	}
	return provider.Node{
		ID: p.Metadata.Name, InternalIP: p.Status.PodIP, Running: running,
		Tags: map[string]string{
			provider.TagNodeKind: kind, provider.TagNodeKindName: kind, provider.TagUserNodeType: typ,
			provider.TagNodeStatus: status,
		},
	}
}

func (p *Provider) pods(ctx context.Context) ([]Pod, error) {
	pods, err := p.kube.ListPods(ctx, p.namespace, p.cluster)
	if err != nil {
		return nil, err
	}
	out := pods[:0]
	for _, pod := range pods {
		if pod.Metadata.DeletionTimestamp == nil {
			out = append(out, pod)
		}
	}
	return out, nil
}

// NonTerminatedNodes lists the cluster's pods not being deleted.
func (p *Provider) NonTerminatedNodes(ctx context.Context, tagFilters map[string]string) ([]provider.Node, error) {
	pods, err := p.pods(ctx)
	if err != nil {
		return nil, err
	}
	listed := map[string]int{}
	for i := range pods {
		if pods[i].Metadata.Labels[labelNodeType] == "worker" {
			listed[pods[i].Metadata.Labels[labelGroup]]++
		}
	}
	p.mu.Lock()
	p.listed = listed
	p.mu.Unlock()
	var nodes []provider.Node
	for i := range pods {
		n := podNode(&pods[i])
		if provider.Matches(n.Tags, tagFilters) {
			nodes = append(nodes, n)
		}
	}
	return nodes, nil
}

func groupIndex(rc *RayCluster, name string) int {
	for i, g := range rc.Spec.WorkerGroupSpecs {
		if g.GroupName == name {
			return i
		}
	}
	return -1
}

// ErrScaleInProgress is returned while pods named in a previous
// workersToDelete still exist: the operator has not caught up, and a new
// patch could race with it.
var ErrScaleInProgress = errors.New("kuberay: previous scale-down still in progress")

// safeToScale is Ray's safe_to_scale: when a pod listed in some group's
// workersToDelete still exists, nothing may change this round; when all
// are gone, the lists are emptied (ops returned to add to the next patch).
func safeToScale(rc *RayCluster, pods []Pod) (clear []PatchOp, ok bool) {
	live := map[string]bool{}
	for _, pod := range pods {
		live[pod.Metadata.Name] = true
	}
	for i, g := range rc.Spec.WorkerGroupSpecs {
		if len(g.ScaleStrategy.WorkersToDelete) == 0 {
			continue
		}
		for _, n := range g.ScaleStrategy.WorkersToDelete {
			if live[n] {
				return nil, false
			}
		}
		clear = append(clear, PatchOp{Op: "add", Path: fmt.Sprintf("/spec/workerGroupSpecs/%d/scaleStrategy", i), Value: map[string]any{"workersToDelete": []string{}}})
	}
	return clear, true
}

// CreateNodes raises the group's replicas so the operator creates
// req.Count more pods.
func (p *Provider) CreateNodes(ctx context.Context, req provider.CreateRequest) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	rc, err := p.kube.GetRayCluster(ctx, p.namespace, p.cluster)
	if err != nil {
		return err
	}
	i := groupIndex(rc, req.NodeType)
	if i < 0 {
		return fmt.Errorf("kuberay: RayCluster %s/%s has no worker group %q", p.namespace, p.cluster, req.NodeType)
	}
	pods, err := p.pods(ctx)
	if err != nil {
		return err
	}
	ops, ok := safeToScale(rc, pods)
	if !ok {
		p.log.Info("not scaling up: a previous scale-down is still in progress")
		return nil // the next round plans again
	}
	g := &rc.Spec.WorkerGroupSpecs[i]
	have, ok := p.listed[req.NodeType]
	if !ok && p.listed == nil { // no listing yet: count now
		for _, pod := range pods {
			if pod.Metadata.Labels[labelNodeType] == "worker" && pod.Metadata.Labels[labelGroup] == req.NodeType {
				have++
			}
		}
	}
	cur := int32(0)
	if g.Replicas != nil {
		cur = *g.Replicas
	}
	want := int32((have + req.Count + g.hosts() - 1) / g.hosts())
	if want < cur {
		want = cur
	}
	if g.MaxReplicas != nil && want > *g.MaxReplicas {
		want = *g.MaxReplicas
	}
	ops = append(ops, PatchOp{Op: "add", Path: "/spec/workerGroupSpecs/" + strconv.Itoa(i) + "/replicas", Value: want})
	p.log.Info("scaling up", "group", req.NodeType, "replicas", want, "from", cur)
	return p.kube.PatchRayCluster(ctx, p.namespace, p.cluster, ops)
}

// TerminateNodes lowers each group's replicas by its pods in ids and names
// them in workersToDelete, in one patch.
func (p *Provider) TerminateNodes(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	rc, err := p.kube.GetRayCluster(ctx, p.namespace, p.cluster)
	if err != nil {
		return err
	}
	pods, err := p.pods(ctx)
	if err != nil {
		return err
	}
	ops, ok := safeToScale(rc, pods)
	if !ok {
		return ErrScaleInProgress
	}
	group := map[string]string{}
	for _, pod := range pods {
		if pod.Metadata.Labels[labelNodeType] == "worker" {
			group[pod.Metadata.Name] = pod.Metadata.Labels[labelGroup]
		}
	}
	byGroup := map[int][]string{}
	for _, id := range ids {
		g, ok := group[id]
		if !ok {
			continue // gone already, or not a worker
		}
		if i := groupIndex(rc, g); i >= 0 {
			byGroup[i] = append(byGroup[i], id)
		}
	}
	if len(byGroup) == 0 {
		return nil
	}
	// Ours replace safeToScale's clearing op of the same group.
	var final []PatchOp
	for _, op := range ops {
		touched := false
		for i := range byGroup {
			touched = touched || op.Path == fmt.Sprintf("/spec/workerGroupSpecs/%d/scaleStrategy", i)
		}
		if !touched {
			final = append(final, op)
		}
	}
	for i, victims := range byGroup {
		g := &rc.Spec.WorkerGroupSpecs[i]
		cur := int32(0)
		if g.Replicas != nil {
			cur = *g.Replicas
		}
		want := cur - int32(len(victims)/g.hosts())
		if want < 0 {
			want = 0
		}
		final = append(final,
			PatchOp{Op: "add", Path: fmt.Sprintf("/spec/workerGroupSpecs/%d/replicas", i), Value: want},
			PatchOp{Op: "add", Path: fmt.Sprintf("/spec/workerGroupSpecs/%d/scaleStrategy", i), Value: map[string]any{"workersToDelete": victims}})
		p.log.Info("scaling down", "group", g.GroupName, "replicas", want, "from", cur, "workersToDelete", victims)
	}
	return p.kube.PatchRayCluster(ctx, p.namespace, p.cluster, final)
}

// SetNodeTags is a no-op: a pod's state is read from the pod itself.
func (p *Provider) SetNodeTags(context.Context, string, map[string]string) error { return nil }

// InternalIP is the pod's IP.
func (p *Provider) InternalIP(ctx context.Context, id string) (string, error) {
	pods, err := p.pods(ctx)
	if err != nil {
		return "", err
	}
	for _, pod := range pods {
		if pod.Metadata.Name == id {
			return pod.Status.PodIP, nil
		}
	}
	return "", fmt.Errorf("kuberay: no pod %s", id)
}

// ExternalIP is the pod's IP too (pods have no other).
func (p *Provider) ExternalIP(ctx context.Context, id string) (string, error) {
	return p.InternalIP(ctx, id)
}

// Close does nothing: the provider holds no resources.
func (p *Provider) Close() error { return nil }
