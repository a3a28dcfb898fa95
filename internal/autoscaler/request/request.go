// Package request is the format of request_resources, shared by the
// goray API and CLI that write it and the autoscaler that reads it: a JSON
// list of {"resources": {...}} bundles in the GCS internal KV, overwritten
// by each call, as Ray's autoscaler SDK stores it.
package request

import (
	"encoding/json"
	"fmt"
	"math"
)

// The KV namespace and key the bundles live under (Ray's
// AUTOSCALER_RESOURCE_REQUEST_CHANNEL).
const (
	Namespace = "__autoscaler"
	Key       = "autoscaler_resource_request"
)

// Bundle is one resource bundle the cluster must be able to hold.
type Bundle struct {
	Resources     map[string]float64 `json:"resources"`
	LabelSelector map[string]string  `json:"label_selector,omitempty"`
}

// MaxBundles caps one request, as Ray caps the demand vector the
// autoscaler considers (AUTOSCALER_MAX_RESOURCE_DEMAND_VECTOR_SIZE is 1000;
// requests are bundles, so a little more room).
const MaxBundles = 10000

// Encode validates bundles (at most MaxBundles, none empty, non-negative
// finite amounts, no empty resource names) and returns the stored form.
// No bundles clears the request.
func Encode(bundles []map[string]float64) ([]byte, error) {
	if len(bundles) > MaxBundles {
		return nil, fmt.Errorf("request_resources: %d bundles; at most %d", len(bundles), MaxBundles)
	}
	out := make([]Bundle, 0, len(bundles))
	for i, b := range bundles {
		if len(b) == 0 {
			return nil, fmt.Errorf("request_resources: bundle %d is empty", i)
		}
		for k, v := range b {
			if k == "" {
				return nil, fmt.Errorf("request_resources: bundle %d has an empty resource name", i)
			}
			if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("request_resources: bundle %d: %s = %v must be a non-negative number", i, k, v)
			}
		}
		out = append(out, Bundle{Resources: b})
	}
	return json.Marshal(out)
}

// Decode parses the stored form.
func Decode(b []byte) ([]Bundle, error) {
	var out []Bundle
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("request_resources: stored request is not a JSON list of bundles: %w", err)
	}
	return out, nil
}

// CPUs is Ray's num_cpus=N shorthand: N bundles of {"CPU": 1}, for
// 0 <= n <= MaxBundles.
func CPUs(n int) ([]map[string]float64, error) {
	if n < 0 || n > MaxBundles {
		return nil, fmt.Errorf("request_resources: num_cpus %d must be between 0 and %d", n, MaxBundles)
	}
	out := make([]map[string]float64, n)
	for i := range out {
		out[i] = map[string]float64{"CPU": 1}
	}
	return out, nil
}
