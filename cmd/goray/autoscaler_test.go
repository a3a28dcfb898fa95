package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A bad autoscaling config is refused before anything starts, with the
// offending key named.
func TestStartRefusesBadAutoscalingConfig(t *testing.T) {
	c := newCLI(t)
	base := `cluster_name: t
max_workers: 2
provider: {type: process}
head_node_type: head
available_node_types:
  head: {resources: {CPU: 0}, node_config: {}}
`
	cases := []struct{ name, yaml, want string }{
		{"min above max", base + "  w: {resources: {CPU: 1}, node_config: {}, min_workers: 3, max_workers: 2}\n", "available_node_types.w.min_workers"},
		{"sum of mins above global max", base + "  a: {resources: {CPU: 1}, node_config: {}, min_workers: 2}\n  b: {resources: {CPU: 1}, node_config: {}, min_workers: 1}\n", "sum of min_workers (3) is above max_workers (2)"},
		{"undefined head type", strings.Replace(base, "head_node_type: head", "head_node_type: nope", 1), `head_node_type "nope"`},
		{"unknown key", base + "  w: {resources: {CPU: 1}, node_config: {}, max_worker: 2}\n", `unknown key "max_worker"`},
		{"wrong type", strings.Replace(base, "max_workers: 2", "max_workers: three", 1), "max_workers"},
		{"unknown provider", strings.Replace(base, "type: process", "type: openstack", 1), "openstack"},
		{"provider without an autoscaler here", strings.Replace(base, "type: process", "type: kuberay", 1), `provider.type "kuberay"`},
		{"unknown process node_config key", base + "  w: {resources: {CPU: 1}, node_config: {image: x}}\n", `available_node_types.w.node_config: unknown key "image"`},
		{"bad docker node_config", strings.Replace(base, "type: process", "type: docker", 1) + "  w: {resources: {CPU: 1}, node_config: {shm_size: lots}}\n", `node type "w": node_config shm_size`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "c.yaml")
			os.WriteFile(f, []byte(tc.yaml), 0o644)
			out, err := c.run("start", "--head", "--port=0", "--autoscaling-config="+f)
			if err == nil || !strings.Contains(out, tc.want) {
				t.Fatalf("start with a bad config: err=%v, output %q should name %q", err, out, tc.want)
			}
			if _, err := os.Stat(filepath.Join(c.root, "goray_current_cluster")); err == nil {
				t.Fatal("a head was started despite the bad config")
			}
		})
	}
	if out, err := c.run("start", "--address=127.0.0.1:1", "--autoscaling-config=x.yaml"); err == nil || !strings.Contains(out, "--head") {
		t.Fatalf("--autoscaling-config on a worker node: %v %q", err, out)
	}
	if out, err := c.run("start", "--head", "--autoscaling-config="); err == nil || !strings.Contains(out, "empty path") {
		t.Fatalf("an empty --autoscaling-config: %v %q", err, out)
	}
	for _, bad := range [][]string{
		{"--bundles", `[{"CPU": -1}]`, "non-negative"},
		{"--bundles", `[{}]`, "bundle 0 is empty"},
		{"--num-cpus", "99999999", "between 0 and 10000"},
		{"--num-cpus", "-5", "between 0 and 10000"},
	} {
		if out, err := c.run("request-resources", bad[0], bad[1]); err == nil || !strings.Contains(out, bad[2]) {
			t.Errorf("request-resources %s %s: %v %q, want %q", bad[0], bad[1], err, out, bad[2])
		}
	}
}
