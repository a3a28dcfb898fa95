package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/goray/goray/internal/clusterconfig"
)

// overrideResources applies $GORAY_OVERRIDE_RESOURCES (or Ray's
// $RAY_OVERRIDE_RESOURCES), a JSON map of resources, where no flag set
// them: the cluster launcher hands a worker its node type's resources
// this way, so the default `goray start --address=$RAY_HEAD_IP:6379`
// advertises them.
func overrideResources(f *pflag.FlagSet, res map[string]float64) error {
	name, v := "GORAY_OVERRIDE_RESOURCES", os.Getenv("GORAY_OVERRIDE_RESOURCES")
	if v == "" {
		name, v = "RAY_OVERRIDE_RESOURCES", os.Getenv("RAY_OVERRIDE_RESOURCES")
	}
	if v == "" {
		return nil
	}
	var m map[string]float64
	if err := json.Unmarshal([]byte(v), &m); err != nil {
		return fmt.Errorf("$%s: want a JSON map of resources such as {\"CPU\": 2}: %v", name, err)
	}
	for k, x := range m {
		if x < 0 {
			return fmt.Errorf("$%s: resource %q is negative", name, k)
		}
	}
	c := &clusterconfig.Config{HeadNodeType: "node", AvailableNodeTypes: map[string]*clusterconfig.NodeType{"node": {Resources: m}}}
	var labels map[string]string
	headTypeDefaults(f, c, res, &labels)
	return nil
}
