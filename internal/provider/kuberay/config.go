package kuberay

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/goray/goray/internal/clusterconfig"
)

// RayCluster holds the fields of a ray.io/v1 RayCluster the autoscaler
// reads (KubeRay's names).
type RayCluster struct {
	Metadata struct {
		Name            string `json:"name"`
		Namespace       string `json:"namespace"`
		Generation      int64  `json:"generation"`
		ResourceVersion string `json:"resourceVersion"`
	} `json:"metadata"`
	Spec struct {
		HeadGroupSpec     GroupSpec   `json:"headGroupSpec"`
		WorkerGroupSpecs  []GroupSpec `json:"workerGroupSpecs"`
		AutoscalerOptions *struct {
			IdleTimeoutSeconds *int32  `json:"idleTimeoutSeconds"`
			UpscalingMode      *string `json:"upscalingMode"`
		} `json:"autoscalerOptions"`
	} `json:"spec"`
}

// GroupSpec is a head or worker group.
type GroupSpec struct {
	GroupName          string            `json:"groupName"`
	Replicas           *int32            `json:"replicas"`
	MinReplicas        *int32            `json:"minReplicas"`
	MaxReplicas        *int32            `json:"maxReplicas"`
	NumOfHosts         int32             `json:"numOfHosts"`
	IdleTimeoutSeconds *int32            `json:"idleTimeoutSeconds"`
	RayStartParams     map[string]string `json:"rayStartParams"`
	Resources          map[string]string `json:"resources"`
	Labels             map[string]string `json:"labels"`
	ScaleStrategy      struct {
		WorkersToDelete []string `json:"workersToDelete"`
	} `json:"scaleStrategy"`
	Template struct {
		Spec struct {
			Containers []struct {
				Resources struct {
					Limits   map[string]string `json:"limits"`
					Requests map[string]string `json:"requests"`
				} `json:"resources"`
			} `json:"containers"`
		} `json:"spec"`
	} `json:"template"`
}

func (g *GroupSpec) hosts() int {
	if g.NumOfHosts <= 0 {
		return 1
	}
	return int(g.NumOfHosts)
}

// Pod holds the fields of a pod the provider reads.
type Pod struct {
	Metadata struct {
		Name              string            `json:"name"`
		Labels            map[string]string `json:"labels"`
		DeletionTimestamp *string           `json:"deletionTimestamp"`
	} `json:"metadata"`
	Status struct {
		PodIP             string `json:"podIP"`
		ContainerStatuses []struct {
			State map[string]json.RawMessage `json:"state"`
		} `json:"containerStatuses"`
	} `json:"status"`
}

// HeadNodeType is the head's node type in the autoscaling config (Ray's
// KubeRay config uses the same name).
const HeadNodeType = "head-group"

// ProviderType is the provider.type of the autoscaling config.
const ProviderType = "kuberay"

// AutoscalingConfig turns a RayCluster into the autoscaler's cluster
// config, as Ray's KubeRay autoscaler does: one node type per worker group
// (min and max times numOfHosts), resources from rayStartParams else the
// container's limits (else requests), idle timeout and upscaling speed from
// autoscalerOptions.
func AutoscalingConfig(rc *RayCluster) (*clusterconfig.Config, error) {
	c := &clusterconfig.Config{
		ClusterName:        rc.Metadata.Name,
		UpscalingSpeed:     1000,
		IdleTimeoutMinutes: 1,
		HeadNodeType:       HeadNodeType,
		Provider: clusterconfig.Provider{Type: ProviderType, DisableLaunchConfigCheck: true,
			Raw: map[string]any{"type": ProviderType, "namespace": rc.Metadata.Namespace, "disable_node_updaters": true, "disable_launch_config_check": true}},
		AvailableNodeTypes: map[string]*clusterconfig.NodeType{},
	}
	if o := rc.Spec.AutoscalerOptions; o != nil {
		if o.IdleTimeoutSeconds != nil {
			c.IdleTimeoutMinutes = float64(*o.IdleTimeoutSeconds) / 60
		}
		if o.UpscalingMode != nil && *o.UpscalingMode == "Conservative" {
			c.UpscalingSpeed = 1
		}
	}
	head, err := groupResources(&rc.Spec.HeadGroupSpec)
	if err != nil {
		return nil, fmt.Errorf("headGroupSpec: %w", err)
	}
	c.AvailableNodeTypes[HeadNodeType] = &clusterconfig.NodeType{NodeConfig: map[string]any{}, Resources: head, Labels: rc.Spec.HeadGroupSpec.Labels}
	total := 0
	for i := range rc.Spec.WorkerGroupSpecs {
		g := &rc.Spec.WorkerGroupSpecs[i]
		res, err := groupResources(g)
		if err != nil {
			return nil, fmt.Errorf("workerGroupSpecs[%s]: %w", g.GroupName, err)
		}
		t := &clusterconfig.NodeType{NodeConfig: map[string]any{}, Resources: res, Labels: g.Labels, MaxWorkers: math.MaxInt32}
		if g.MinReplicas != nil {
			t.MinWorkers = int(*g.MinReplicas) * g.hosts()
		}
		if g.MaxReplicas != nil {
			t.MaxWorkers = int(*g.MaxReplicas) * g.hosts()
		}
		if g.IdleTimeoutSeconds != nil {
			t.IdleTimeoutS = float64(*g.IdleTimeoutSeconds)
		}
		c.AvailableNodeTypes[g.GroupName] = t
		total += t.MaxWorkers
		if total > math.MaxInt32 {
			total = math.MaxInt32
		}
	}
	c.MaxWorkers = total
	return c, nil
}

// groupResources are a group's logical resources: the resources field,
// then rayStartParams, then the container's limits or requests.
func groupResources(g *GroupSpec) (map[string]float64, error) {
	res := map[string]float64{}
	if cs := g.Template.Spec.Containers; len(cs) > 0 {
		pick := func(name string) (resource.Quantity, bool, error) {
			v, ok := cs[0].Resources.Limits[name]
			if !ok {
				v, ok = cs[0].Resources.Requests[name]
			}
			if !ok {
				return resource.Quantity{}, false, nil
			}
			q, err := resource.ParseQuantity(v)
			return q, err == nil, err
		}
		if q, ok, err := pick("cpu"); err != nil {
			return nil, err
		} else if ok {
			res["CPU"] = math.Ceil(q.AsApproximateFloat64())
		}
		if q, ok, err := pick("memory"); err != nil {
			return nil, err
		} else if ok {
			res["memory"] = float64(q.Value())
		}
		var gpuKeys []string
		for k := range cs[0].Resources.Limits {
			if strings.HasSuffix(k, "gpu") {
				gpuKeys = append(gpuKeys, k)
			}
		}
		sort.Strings(gpuKeys)
		if len(gpuKeys) > 0 {
			if q, ok, err := pick(gpuKeys[0]); err != nil {
				return nil, err
			} else if ok && !q.IsZero() {
				res["GPU"] = math.Ceil(q.AsApproximateFloat64())
			}
		}
	}
	p := g.RayStartParams
	for flag, name := range map[string]string{"num-cpus": "CPU", "num-gpus": "GPU", "memory": "memory"} {
		if v, ok := p[flag]; ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return nil, fmt.Errorf("rayStartParams[%s] %q is not a number", flag, v)
			}
			res[name] = f
		}
	}
	if v := strings.Trim(p["resources"], `'"`); v != "" {
		var custom map[string]float64
		if err := json.Unmarshal([]byte(v), &custom); err != nil {
			return nil, fmt.Errorf("rayStartParams[resources]: %v", err)
		}
		for k, f := range custom {
			res[k] = f
		}
	}
	for name, v := range g.Resources {
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return nil, fmt.Errorf("resources[%s]: %v", name, err)
		}
		if name == "memory" {
			res[name] = float64(q.Value())
		} else {
			res[name] = q.AsApproximateFloat64()
		}
	}
	for k, v := range res {
		if v == 0 {
			delete(res, k)
		}
	}
	return res, nil
}
