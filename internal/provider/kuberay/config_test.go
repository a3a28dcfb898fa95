package kuberay

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestAutoscalingConfigFromRayCluster: a RayCluster becomes the node types
// Ray's KubeRay autoscaler derives (min/max times numOfHosts, resources from
// rayStartParams over container limits, idle timeout and upscaling speed).
func TestAutoscalingConfigFromRayCluster(t *testing.T) {
	var rc RayCluster
	err := json.Unmarshal([]byte(`{
	  "metadata": {"name": "rc", "namespace": "ns"},
	  "spec": {
	    "autoscalerOptions": {"idleTimeoutSeconds": 30, "upscalingMode": "Conservative"},
	    "headGroupSpec": {"rayStartParams": {"num-cpus": "0"},
	      "template": {"spec": {"containers": [{"resources": {"limits": {"cpu": "2", "memory": "4Gi"}}}]}}},
	    "workerGroupSpecs": [
	      {"groupName": "cpu", "minReplicas": 1, "maxReplicas": 5, "numOfHosts": 2,
	       "template": {"spec": {"containers": [{"resources": {"limits": {"cpu": "1500m", "memory": "1Gi", "nvidia.com/gpu": "1"}}}]}}},
	      {"groupName": "custom", "maxReplicas": 2, "idleTimeoutSeconds": 7,
	       "rayStartParams": {"num-cpus": "3", "resources": "'{\"TPU\": 4}'"},
	       "resources": {"disk": "2"},
	       "template": {"spec": {"containers": [{"resources": {"requests": {"cpu": "1"}}}]}}}
	    ]
	  }}`), &rc)
	if err != nil {
		t.Fatal(err)
	}
	c, err := AutoscalingConfig(&rc)
	if err != nil {
		t.Fatal(err)
	}
	if c.ClusterName != "rc" || c.HeadNodeType != HeadNodeType || c.IdleTimeoutMinutes != 0.5 || c.UpscalingSpeed != 1 || c.MaxWorkers != 12 || c.Provider.Type != "kuberay" {
		t.Errorf("config %+v", c)
	}
	for name, want := range map[string]struct {
		res      map[string]float64
		min, max int
		idle     float64
	}{
		HeadNodeType: {map[string]float64{"memory": 4 << 30}, 0, 0, 0},
		"cpu":        {map[string]float64{"CPU": 2, "memory": 1 << 30, "GPU": 1}, 2, 10, 0},
		"custom":     {map[string]float64{"CPU": 3, "TPU": 4, "disk": 2}, 0, 2, 7},
	} {
		got := c.AvailableNodeTypes[name]
		if got == nil {
			t.Errorf("no node type %s", name)
			continue
		}
		if !reflect.DeepEqual(got.Resources, want.res) || got.MinWorkers != want.min || (name != HeadNodeType && got.MaxWorkers != want.max) || got.IdleTimeoutS != want.idle {
			t.Errorf("%s: %+v, want %+v", name, got, want)
		}
	}
}
