package clusterconfig

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// minimal is a valid process config that leaves every default open.
const minimal = `
provider: {type: process}
available_node_types:
  head: {node_config: {}}
  worker: {node_config: {}}
head_node_type: head
`

func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	c, err := Parse([]byte(src))
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, src)
	}
	return c
}

func TestDefaults(t *testing.T) {
	c := mustParse(t, minimal)
	checks := []struct {
		name      string
		got, want any
	}{
		{"cluster_name", c.ClusterName, "default"},
		{"max_workers", c.MaxWorkers, 2},
		{"upscaling_speed", c.UpscalingSpeed, 1.0},
		{"idle_timeout_minutes", c.IdleTimeoutMinutes, 5.0},
		{"auth", c.Auth, Auth{}},
		{"docker", c.Docker, Docker{}},
		{"file_mounts", c.FileMounts, map[string]string{}},
		{"cluster_synced_files", c.ClusterSyncedFiles, []string{}},
		{"file_mounts_sync_continuously", c.FileMountsSyncContinuously, false},
		{"rsync_exclude", c.RsyncExclude, []string{}},
		{"rsync_filter", c.RsyncFilter, []string{}},
		{"initialization_commands", c.InitializationCommands, []string{}},
		{"setup_commands", c.SetupCommands, []string{}},
		{"head_setup_commands", c.HeadSetupCommands, []string{}},
		{"worker_setup_commands", c.WorkerSetupCommands, []string{}},
		{"head_start_ray_commands", c.HeadStartRayCommands, []string{"goray stop", "goray start --head --port=6379 --autoscaling-config=~/goray_bootstrap_config.yaml"}},
		{"worker_start_ray_commands", c.WorkerStartRayCommands, []string{"goray stop", "goray start --address=$RAY_HEAD_IP:6379"}},
		{"metadata", c.Metadata, map[string]any(nil)},
		{"provider.raw", c.Provider.Raw, map[string]any{"type": "process"}},
		{"head.max_workers", c.AvailableNodeTypes["head"].MaxWorkers, 0},
		{"worker.max_workers", c.AvailableNodeTypes["worker"].MaxWorkers, 2},
		{"worker.min_workers", c.AvailableNodeTypes["worker"].MinWorkers, 0},
		{"worker.resources", c.AvailableNodeTypes["worker"].Resources, map[string]float64{}},
		{"worker.labels", c.AvailableNodeTypes["worker"].Labels, map[string]string{}},
		{"worker.node_config", c.AvailableNodeTypes["worker"].NodeConfig, map[string]any{}},
		{"worker.idle_timeout_s", c.AvailableNodeTypes["worker"].IdleTimeoutS, 0.0},
		{"worker.worker_setup_commands", c.AvailableNodeTypes["worker"].WorkerSetupCommands, []string(nil)},
		{"worker.initialization_commands", c.AvailableNodeTypes["worker"].InitializationCommands, []string(nil)},
		{"worker.docker", c.AvailableNodeTypes["worker"].Docker, (*Docker)(nil)},
		{"WorkerTypes", c.WorkerTypes(), []string{"worker"}},
	}
	for _, ck := range checks {
		if !reflect.DeepEqual(ck.got, ck.want) {
			t.Errorf("%s = %#v, want %#v", ck.name, ck.got, ck.want)
		}
	}

	// A worker type's max_workers follows an explicit global max_workers;
	// the head type stays at 0.
	c = mustParse(t, "max_workers: 7\n"+minimal)
	if got := c.AvailableNodeTypes["worker"].MaxWorkers; got != 7 {
		t.Errorf("worker max_workers = %d, want the global 7", got)
	}
	if got := c.AvailableNodeTypes["head"].MaxWorkers; got != 0 {
		t.Errorf("head max_workers = %d, want 0", got)
	}

	// The docker provider's image and network.
	c = mustParse(t, strings.Replace(minimal, "{type: process}", "{type: docker}", 1)+"cluster_name: c1\n")
	if c.Provider.Image != "goray:latest" || c.Provider.Network != "goray_c1" || c.Provider.Subnet != "" {
		t.Errorf("docker provider defaults: %+v", c.Provider)
	}

	// A present docker section pulls before run unless told not to; a
	// type's override inherits the global flags.
	c = mustParse(t, minimal+`
docker: {image: img, container_name: ctr, disable_shm_size_detection: true}
`)
	if !c.Docker.PullBeforeRun {
		t.Error("docker.pull_before_run: want the default true")
	}
	c = mustParse(t, `
provider: {type: process}
docker: {image: img, container_name: ctr, pull_before_run: false, disable_shm_size_detection: true}
available_node_types:
  head: {node_config: {}}
  worker: {node_config: {}, docker: {worker_image: w:1}}
head_node_type: head
`)
	want := &Docker{WorkerImage: "w:1", PullBeforeRun: false, DisableShmSizeDetection: true}
	if got := c.AvailableNodeTypes["worker"].Docker; !reflect.DeepEqual(got, want) {
		t.Errorf("type docker = %+v, want %+v", got, want)
	}
	eff := c.DockerFor("worker")
	if eff.Image != "img" || eff.WorkerImage != "w:1" || eff.PullBeforeRun || !eff.DisableShmSizeDetection {
		t.Errorf("DockerFor(worker) = %+v", eff)
	}
}

func TestLegacyLocal(t *testing.T) {
	c, err := Load("testdata/local-legacy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.HeadNodeType != LegacyHeadType {
		t.Errorf("head_node_type = %q", c.HeadNodeType)
	}
	if got := c.WorkerTypes(); !slices.Equal(got, []string{LegacyWorkerType}) {
		t.Errorf("WorkerTypes() = %v", got)
	}
	if c.MaxWorkers != 3 {
		t.Errorf("max_workers = %d, want len(worker_ips) 3", c.MaxWorkers)
	}
	w := c.AvailableNodeTypes[LegacyWorkerType]
	if w.MinWorkers != 3 || w.MaxWorkers != 3 {
		t.Errorf("worker min/max = %d/%d, want 3/3", w.MinWorkers, w.MaxWorkers)
	}
	h := c.AvailableNodeTypes[LegacyHeadType]
	if h.MaxWorkers != 0 || len(h.Resources) != 0 || h.NodeConfig == nil {
		t.Errorf("head type = %+v", h)
	}
	if c.Provider.HeadIP != "10.0.0.1" || len(c.Provider.WorkerIPs) != 3 || c.Auth.SSHUser != "ubuntu" {
		t.Errorf("provider/auth = %+v / %+v", c.Provider, c.Auth)
	}

	cases := []struct {
		name     string
		src      string
		min, max int
	}{
		{"explicit max caps min", "max_workers: 1\n", 1, 1},
		{"top-level min_workers", "min_workers: 2\n", 2, 3},
	}
	base := `
provider: {type: local, head_ip: h, worker_ips: [a, b, c]}
auth: {ssh_user: u}
worker_nodes: {InstanceType: x}
head_node: {InstanceType: y}
`
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := mustParse(t, base+tc.src)
			w := c.AvailableNodeTypes[LegacyWorkerType]
			if w.MinWorkers != tc.min || w.MaxWorkers != tc.max {
				t.Errorf("min/max = %d/%d, want %d/%d", w.MinWorkers, w.MaxWorkers, tc.min, tc.max)
			}
			if w.NodeConfig["InstanceType"] != "x" || c.AvailableNodeTypes[LegacyHeadType].NodeConfig["InstanceType"] != "y" {
				t.Errorf("node_config not taken from worker_nodes/head_node")
			}
		})
	}

	// Legacy non-local: min from top-level min_workers, else 0; max global.
	c = mustParse(t, "provider: {type: process}\nmax_workers: 4\n")
	if w := c.AvailableNodeTypes[LegacyWorkerType]; w.MinWorkers != 0 || w.MaxWorkers != 4 {
		t.Errorf("process legacy worker = %+v", w)
	}

	// With available_node_types, head_node / worker_nodes go under the
	// types' node_config, the type's keys winning.
	c = mustParse(t, `
provider: {type: process}
head_node: {a: 1, nested: {x: 1, y: 1}}
worker_nodes: {b: 2}
available_node_types:
  head: {node_config: {a: 9, nested: {y: 2}}}
  worker: {node_config: {}}
head_node_type: head
`)
	wantHead := map[string]any{"a": 9, "nested": map[string]any{"x": 1, "y": 2}}
	if got := c.AvailableNodeTypes["head"].NodeConfig; !reflect.DeepEqual(got, wantHead) {
		t.Errorf("head node_config = %v, want %v", got, wantHead)
	}
	if got := c.AvailableNodeTypes["worker"].NodeConfig; !reflect.DeepEqual(got, map[string]any{"b": 2}) {
		t.Errorf("worker node_config = %v", got)
	}
}

// twoTypes renders a process config with the given top-level keys and node
// type bodies.
func twoTypes(top, head, worker string) string {
	return "provider: {type: process}\n" + top + `
available_node_types:
  ray.head.default: {node_config: {}` + head + `}
  ray.worker.default: {node_config: {}` + worker + `}
head_node_type: ray.head.default
`
}

func TestRefused(t *testing.T) {
	cases := []struct {
		name string
		src  string
		want []string
	}{
		// contradictions
		{"min above max", twoTypes("", "", ", min_workers: 3, max_workers: 2"),
			[]string{"available_node_types.ray.worker.default.min_workers (3) is above its max_workers (2)"}},
		{"sum of min above global max", `
provider: {type: process}
max_workers: 3
available_node_types:
  h: {node_config: {}}
  a: {node_config: {}, min_workers: 2}
  b: {node_config: {}, min_workers: 2}
head_node_type: h
`, []string{"sum of min_workers (4) is above max_workers (3)"}},
		{"head type not defined", `
provider: {type: process}
available_node_types:
  a: {node_config: {}}
  b: {node_config: {}}
head_node_type: foo
`, []string{`head_node_type "foo" is not in available_node_types (have: a, b)`}},
		{"head type missing", `
provider: {type: process}
available_node_types:
  a: {node_config: {}}
`, []string{"head_node_type is required (have: a)"}},
		{"second YAML document", "cluster_name: a\nprovider: {type: process}\n---\nbogus: 1\n", []string{"more than one YAML document"}},
		{"head type with workers", `
provider: {type: process}
head_node_type: h
available_node_types:
  h: {node_config: {}, min_workers: 1, max_workers: 1}
`, []string{"available_node_types.h is the head_node_type"}},
		{"empty resource name", twoTypes("", "", `, resources: {"": 1}`), []string{"a resource has an empty name"}},
		{"bad label key", twoTypes("", "", `, labels: {"bad key!": x}`), []string{`key "bad key!" must not contain spaces`}},
		{"huge max_workers", twoTypes("max_workers: 99999999999", "", ""), []string{"up to 2147483647, got 99999999999"}},
		{"negative max_workers", twoTypes("max_workers: -1", "", ""), []string{"max_workers: want a non-negative integer up to 2147483647, got -1"}},
		{"negative type min_workers", twoTypes("", "", ", min_workers: -2"), []string{"available_node_types.ray.worker.default.min_workers: want a non-negative integer up to 2147483647, got -2"}},
		{"negative resource", twoTypes("", "", ", resources: {CPU: -1}"), []string{"available_node_types.ray.worker.default.resources.CPU: want a non-negative number, got -1"}},
		{"negative upscaling_speed", twoTypes("upscaling_speed: -0.5", "", ""), []string{"upscaling_speed: want a non-negative number, got -0.5"}},
		{"negative idle_timeout_minutes", twoTypes("idle_timeout_minutes: -1", "", ""), []string{"idle_timeout_minutes: want a non-negative number"}},
		{"negative idle_timeout_s", twoTypes("", "", ", idle_timeout_s: -3"), []string{"available_node_types.ray.worker.default.idle_timeout_s: want a non-negative number"}},
		{"empty cluster_name", twoTypes(`cluster_name: ""`, "", ""), []string{"cluster_name is empty"}},
		{"bad cluster_name", twoTypes(`cluster_name: "my cluster/1"`, "", ""), []string{`cluster_name "my cluster/1": want only letters`}},
		{"bad head_ip", "provider: {type: local, head_ip: 'not an ip!'}\nauth: {ssh_user: u}\n", []string{`provider.head_ip "not an ip!": want an IP address or a host name`}},
		{"bad worker_ips", "provider: {type: local, head_ip: h1.example.com, worker_ips: [10.0.0.2, -bad-.example]}\nauth: {ssh_user: u}\n",
			[]string{`provider.worker_ips[1] "-bad-.example": want an IP address or a host name`}},
		{"bad external_head_ip", "provider: {type: local, head_ip: 10.0.0.1, external_head_ip: 'a b'}\nauth: {ssh_user: u}\n",
			[]string{`provider.external_head_ip "a b"`}},
		{"missing provider", "available_node_types: {h: {node_config: {}}}\nhead_node_type: h\n", []string{"provider is required"}},
		{"missing provider.type", "provider: {region: x}\n", []string{"provider.type is required"}},
		{"unknown provider type", "provider: {type: aws, region: us-west-2}\n",
			[]string{`provider.type "aws": goray has no such node provider yet (have: process, docker, local, kuberay)`}},
		{"node_config missing", twoTypes("", "", ", resources: {}}\n  other: {min_workers: 0"), []string{"available_node_types.other.node_config is required"}},
		{"node type null", "provider: {type: process}\navailable_node_types: {h: {node_config: {}}, w: ~}\nhead_node_type: h\n",
			[]string{"available_node_types.w: want a mapping, got null"}},
		{"resource not a number", twoTypes("", "", `, resources: {CPU: "4"}`), []string{`available_node_types.ray.worker.default.resources.CPU: want a non-negative number, got "4"`}},
		{"label not a string", twoTypes("", "", ", labels: {zone: 1}"), []string{"available_node_types.ray.worker.default.labels.zone: want a string, got 1"}},
		{"subnet not a CIDR", "provider: {type: docker, subnet: 10.0.0.0}\n", []string{`provider.subnet "10.0.0.0": want a CIDR`}},
		{"subnet host bits", "provider: {type: docker, subnet: 10.0.0.1/24}\n", []string{"provider.subnet", "10.0.0.0/24"}},
		{"local without head_ip", "provider: {type: local, worker_ips: [a]}\nauth: {ssh_user: u}\n", []string{"provider.head_ip is required"}},
		{"local without ssh_user", "provider: {type: local, head_ip: h, worker_ips: [a]}\n", []string{"auth.ssh_user is required"}},
		{"local duplicate worker ip", "provider: {type: local, head_ip: h, worker_ips: [a, a]}\nauth: {ssh_user: u}\n", []string{`provider.worker_ips[1]: "a" is listed twice`}},
		{"local head ip among workers", "provider: {type: local, head_ip: h, worker_ips: [h]}\nauth: {ssh_user: u}\n", []string{`provider.worker_ips[0]: "h" is also provider.head_ip`}},
		{"bad coordinator address", "provider: {type: local, coordinator_address: nope}\nauth: {ssh_user: u}\n", []string{"provider.coordinator_address"}},
		{"docker without image", twoTypes("docker: {container_name: c}", "", ""), []string{"docker.image"}},

		// unknown keys
		{"unknown root key", twoTypes("max_worker: 3", "", ""), []string{`unknown key "max_worker"`, `did you mean "max_workers"?`, "line 2"}},
		{"unknown auth key", twoTypes("auth: {ssh_usr: u}", "", ""), []string{`auth: unknown key "ssh_usr"`}},
		{"unknown docker key", twoTypes("docker: {imag: x}", "", ""), []string{`docker: unknown key "imag"`}},
		{"head_image in type docker", twoTypes("", "", ", docker: {head_image: x}"), []string{`available_node_types.ray.worker.default.docker: unknown key "head_image"`}},
		{"unknown node type key", twoTypes("", "", ", min_worker: 1"), []string{`available_node_types.ray.worker.default: unknown key "min_worker"`, `"min_workers"`}},
		{"unknown process key", "provider: {type: process, image: x}\n", []string{`provider: unknown key "image"`}},
		{"unknown docker provider key", "provider: {type: docker, networks: x}\n", []string{`provider: unknown key "networks"`, `"network"`}},
		{"unknown local key", "provider: {type: local, head_ip: h, workers: [a]}\nauth: {ssh_user: u}\n", []string{`provider: unknown key "workers"`}},
		{"duplicate key", "provider: {type: process}\nmax_workers: 1\nmax_workers: 2\n", []string{`key "max_workers" is written twice (lines 2 and 3)`}},

		// wrong types
		{"max_workers string", twoTypes("max_workers: three", "", ""), []string{`max_workers: want a non-negative integer up to 2147483647, got "three"`}},
		{"max_workers fraction", twoTypes("max_workers: 2.5", "", ""), []string{"max_workers: want a non-negative integer up to 2147483647, got 2.5"}},
		{"max_workers quoted", twoTypes(`max_workers: "3"`, "", ""), []string{`max_workers: want a non-negative integer up to 2147483647, got "3"`}},
		{"cluster_name list", twoTypes("cluster_name: [a]", "", ""), []string{"cluster_name: want a string, got a list"}},
		{"setup_commands string", twoTypes("setup_commands: echo hi", "", ""), []string{`setup_commands: want a list of strings, got "echo hi"`}},
		{"setup_commands item", twoTypes("setup_commands: [echo, 3]", "", ""), []string{"setup_commands[1]: want a string, got 3"}},
		{"file_mounts list", twoTypes("file_mounts: [a]", "", ""), []string{"file_mounts: want a mapping, got a list"}},
		{"bool not bool", twoTypes("file_mounts_sync_continuously: maybe", "", ""), []string{`file_mounts_sync_continuously: want a boolean, got "maybe"`}},
		{"provider bool", "provider: {type: process, use_internal_ips: 1}\n", []string{"provider.use_internal_ips: want a boolean, got 1"}},
		{"node_config list", twoTypes("", "", "}\n  x: {node_config: [1]"), []string{"available_node_types.x.node_config: want a mapping, got a list"}},
		{"autoscaling_mode", twoTypes("autoscaling_mode: fast", "", ""), []string{`autoscaling_mode: want "default" or "aggressive", got "fast"`}},
		{"target_utilization_fraction", twoTypes("target_utilization_fraction: 2", "", ""), []string{"target_utilization_fraction: want a number from 0 to 1, got 2"}},
		{"root not a mapping", "- a\n", []string{"want a mapping at the top level, got a list"}},
		{"syntax error", "a: [\n", []string{"cluster config: line"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.src))
			if err == nil {
				t.Fatalf("Parse accepted:\n%s", tc.src)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "cluster config: ") {
				t.Errorf("error %q does not start with \"cluster config: \"", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
		})
	}
}

func TestErrorLines(t *testing.T) {
	src := twoTypes("", "", ", min_workers: 3, max_workers: 2")
	_, err := Parse([]byte(src))
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v is not *Error", err)
	}
	if ce.Key != "available_node_types.ray.worker.default.min_workers" || ce.Line != 5 {
		t.Errorf("Key %q line %d, want the min_workers key on line 5", ce.Key, ce.Line)
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(path, []byte("provider: {type: process}\nmax_workers: three\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+":2: max_workers: ") {
		t.Errorf("Load error = %v, want it to start with %s:2:", err, path)
	}
	_, err = Load(filepath.Join(dir, "missing.yaml"))
	if err == nil || !strings.HasPrefix(err.Error(), filepath.Join(dir, "missing.yaml")+": ") || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing file = %v", err)
	}
}

func TestValidConfigs(t *testing.T) {
	c, err := Load("testdata/process.yaml")
	if err != nil {
		t.Fatal(err)
	}
	gpu := c.AvailableNodeTypes["ray.worker.gpu"]
	if gpu.Resources["memory"] != 4e9 || gpu.Resources["GPU"] != 1 || gpu.Labels["accelerator-type"] != "A100" || gpu.IdleTimeoutS != 30 {
		t.Errorf("gpu type = %+v", gpu)
	}
	if cpu := c.AvailableNodeTypes["ray.worker.cpu"]; cpu.Resources["object_store_memory"] != 1e9 || cpu.MinWorkers != 1 {
		t.Errorf("cpu type = %+v", cpu)
	}
	if !c.Provider.DisableLaunchConfigCheck || c.IdleTimeoutMinutes != 0.1 {
		t.Errorf("provider / idle timeout = %+v / %v", c.Provider, c.IdleTimeoutMinutes)
	}
	if got := c.WorkerTypes(); !slices.Equal(got, []string{"ray.worker.cpu", "ray.worker.gpu"}) {
		t.Errorf("WorkerTypes() = %v", got)
	}

	c, err = Load("testdata/docker.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Provider.Type != "docker" || c.Provider.Subnet != "10.77.0.0/16" || c.Provider.Network != "goray_dockertest" || c.Provider.Image != "goray:latest" {
		t.Errorf("docker provider = %+v", c.Provider)
	}
	if w := c.AvailableNodeTypes["worker"]; w.MaxWorkers != 3 || w.NodeConfig["mem_limit"] != "2g" {
		t.Errorf("worker type = %+v", w)
	}

	// YAML niceties: anchors, merge keys, PyYAML booleans, null as absent,
	// integral floats as counts, kuberay accepted as written.
	c = mustParse(t, `
provider: {type: process, use_internal_ips: yes}
max_workers: 4.0
setup_commands: ~
available_node_types:
  head: &h {node_config: {tags: &tags {a: b}}, resources: {CPU: 1}}
  worker:
    <<: *h
    node_config: {tags: *tags, x: 1}
    max_workers: 2
head_node_type: head
`)
	if !c.Provider.UseInternalIPs || c.MaxWorkers != 4 || c.SetupCommands == nil || len(c.SetupCommands) != 0 {
		t.Errorf("config = %+v", c)
	}
	if w := c.AvailableNodeTypes["worker"]; w.Resources["CPU"] != 1 || w.NodeConfig["x"] != 1 || w.MaxWorkers != 2 {
		t.Errorf("merged worker = %+v", w)
	}
	mustParse(t, `
provider: {type: kuberay, namespace: default, disable_node_updaters: true, anything: {goes: here}}
available_node_types:
  headgroup: {node_config: {}, resources: {CPU: 1}}
head_node_type: headgroup
`)
}

func TestLaunchHash(t *testing.T) {
	base := mustParse(t, twoTypes("", "", ", min_workers: 0, max_workers: 2"))
	h := base.LaunchHash("ray.worker.default")
	if len(h) != 40 {
		t.Fatalf("LaunchHash = %q, want 40 hex digits", h)
	}
	cases := []struct {
		name string
		src  string
		same bool
	}{
		{"min_workers only", twoTypes("", "", ", min_workers: 1, max_workers: 2"), true},
		{"max_workers and resources", twoTypes("", "", ", max_workers: 5, resources: {CPU: 3}"), true},
		{"other type's node_config", strings.Replace(twoTypes("", "", ""), "ray.head.default: {node_config: {}", "ray.head.default: {node_config: {a: 1}", 1), true},
		{"node_config", strings.Replace(twoTypes("", "", ""), "ray.worker.default: {node_config: {}", "ray.worker.default: {node_config: {InstanceType: m5.large}", 1), false},
		{"auth", twoTypes("auth: {ssh_user: someone}", "", ""), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := mustParse(t, tc.src).LaunchHash("ray.worker.default")
			if (got == h) != tc.same {
				t.Errorf("hash %s vs base %s; want same=%v", got, h, tc.same)
			}
		})
	}
	if base.LaunchHash("nope") != "" {
		t.Error("LaunchHash of an unknown type: want empty")
	}

	r := base.RuntimeHash()
	if len(r) != 40 || r != mustParse(t, twoTypes("", "", ", min_workers: 1")).RuntimeHash() {
		t.Errorf("RuntimeHash %q changed with min_workers", r)
	}
	for _, top := range []string{"setup_commands: [x]", "file_mounts: {/a: /b}", "worker_start_ray_commands: [y]"} {
		if mustParse(t, twoTypes(top, "", "")).RuntimeHash() == r {
			t.Errorf("RuntimeHash unchanged by %s", top)
		}
	}
	if mustParse(t, twoTypes("", "", ", worker_setup_commands: [z]")).RuntimeHash() == r {
		t.Error("RuntimeHash unchanged by a type's worker_setup_commands")
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	srcs := map[string]string{
		"minimal":      minimal,
		"legacy local": "",
		"process":      "",
		"docker":       "",
		"everything": `
cluster_name: all.the-keys_1
max_workers: 10
upscaling_speed: 0.5
idle_timeout_minutes: 2.5
docker:
  image: rayproject/ray:latest
  head_image: h:1
  container_name: ray_container
  pull_before_run: false
  run_options: [--ulimit nofile=65536:65536]
  head_run_options: []
  worker_run_options: [-e A=1]
  disable_automatic_runtime_detection: true
  use_podman: true
provider:
  type: local
  head_ip: 10.0.0.1
  worker_ips: [10.0.0.2, 10.0.0.3]
  external_head_ip: 1.2.3.4
  use_internal_ips: true
  region: here
auth:
  ssh_user: ubuntu
  ssh_private_key: ~/.ssh/key
  ssh_proxy_command: ssh -W %h:%p bastion
available_node_types:
  ray.head.default:
    node_config: {}
    resources: {CPU: 0.5}
  ray.worker.default:
    node_config:
      f: 1.0
      g: 1.5
      i: 7
      s: "1"
      t: 2001-12-14
      b: true
      n: null
      l: [1, "two", {three: 3.0}]
      big: 1e9
    resources: {CPU: 4, GPU: 1, memory: 17179869184, custom_thing: 0.25}
    labels: {zone: "1", tier: gold}
    min_workers: 1
    max_workers: 2
    idle_timeout_s: 60
    worker_setup_commands: []
    initialization_commands: [echo init]
    docker: {worker_image: w:2, worker_run_options: []}
head_node_type: ray.head.default
file_mounts: {/remote/a: ./local/a, "~/b": /tmp/b}
cluster_synced_files: [/x]
file_mounts_sync_continuously: true
rsync_exclude: ["**/.git"]
rsync_filter: [.gitignore]
initialization_commands: [sudo true]
setup_commands:
  - |
    multi
    line: "quoted"
  - "yes"
head_setup_commands: [h]
worker_setup_commands: [w]
head_start_ray_commands: []
worker_start_ray_commands: [goray start --address=$RAY_HEAD_IP:6379 --block]
metadata: {owner: me, n: 1}
`,
	}
	for name, file := range map[string]string{"legacy local": "local-legacy.yaml", "process": "process.yaml", "docker": "docker.yaml"} {
		b, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		srcs[name] = string(b)
	}
	for name, src := range srcs {
		t.Run(name, func(t *testing.T) {
			c := mustParse(t, src)
			out, err := c.YAML()
			if err != nil {
				t.Fatal(err)
			}
			c2, err := Parse(out)
			if err != nil {
				t.Fatalf("Parse(YAML()): %v\n%s", err, out)
			}
			if !reflect.DeepEqual(c, c2) {
				t.Errorf("round trip differs:\nfirst:  %#v\nsecond: %#v\nyaml:\n%s", c, c2, out)
			}
			out2, err := c2.YAML()
			if err != nil || string(out2) != string(out) {
				t.Errorf("YAML not stable: %v\n%s\n---\n%s", err, out, out2)
			}
			if c.LaunchHash(c.HeadNodeType) != c2.LaunchHash(c.HeadNodeType) || c.RuntimeHash() != c2.RuntimeHash() {
				t.Error("hashes changed over the round trip")
			}
		})
	}
}

func TestValidateBuiltConfig(t *testing.T) {
	c := &Config{
		ClusterName: "x",
		MaxWorkers:  1,
		Provider:    Provider{Type: "process"},
		AvailableNodeTypes: map[string]*NodeType{
			"h": {NodeConfig: map[string]any{}},
			"w": {NodeConfig: map[string]any{}, MaxWorkers: 1, Resources: map[string]float64{"CPU": -1}},
		},
		HeadNodeType: "h",
	}
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "available_node_types.w.resources.CPU (-1)") {
		t.Errorf("Validate = %v, want the negative resource named", err)
	}
	c.AvailableNodeTypes["w"].Resources["CPU"] = 1
	if err := c.Validate(); err != nil {
		t.Errorf("Validate = %v", err)
	}
	if _, err := c.YAML(); err != nil {
		t.Errorf("YAML of a built config: %v", err)
	}
	c.AvailableNodeTypes["w"].MinWorkers = 2
	c.AvailableNodeTypes["w"].MaxWorkers = 5
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "sum of min_workers (2) is above max_workers (1)") {
		t.Errorf("Validate = %v, want the min_workers sum refused", err)
	}
}
