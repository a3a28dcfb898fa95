package launcher

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goray/goray/internal/clusterconfig"
)

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cluster.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func intp(i int) *int { return &i }

func TestOverrides(t *testing.T) {
	legacy := writeConfig(t, "provider: {type: process}\nmax_workers: 5\n")
	c, _, err := LoadConfig(legacy, Overrides{ClusterName: "other", MinWorkers: intp(2), MaxWorkers: intp(3)}, false)
	if err != nil {
		t.Fatal(err)
	}
	w := c.AvailableNodeTypes[clusterconfig.LegacyWorkerType]
	if c.ClusterName != "other" || c.MaxWorkers != 3 || w.MinWorkers != 2 || w.MaxWorkers != 3 {
		t.Fatalf("legacy layout: name %s max %d worker %+v", c.ClusterName, c.MaxWorkers, w)
	}
	typed := writeConfig(t, `provider: {type: process}
max_workers: 8
head_node_type: h
available_node_types:
  h: {node_config: {}, resources: {}}
  w: {node_config: {}, resources: {CPU: 1}, max_workers: 4}
`)
	if c, _, err = LoadConfig(typed, Overrides{MinWorkers: intp(4)}, false); err != nil || c.AvailableNodeTypes["w"].MinWorkers != 4 {
		t.Fatalf("one worker type: %v", err)
	}
	if _, _, err = LoadConfig(typed, Overrides{MinWorkers: intp(5)}, false); err == nil || !strings.Contains(err.Error(), "min_workers (5) is above its max_workers (4)") {
		t.Fatalf("min above max: %v", err)
	}
	two := writeConfig(t, `provider: {type: process}
head_node_type: h
available_node_types:
  h: {node_config: {}, resources: {}}
  a: {node_config: {}, resources: {}}
  b: {node_config: {}, resources: {}}
`)
	if _, _, err = LoadConfig(two, Overrides{MinWorkers: intp(1)}, false); err == nil || !strings.Contains(err.Error(), "one worker node type") {
		t.Fatalf("two worker types: %v", err)
	}
	if _, _, err = LoadConfig(two, Overrides{MaxWorkers: intp(-1)}, false); err == nil || !strings.Contains(err.Error(), "--max-workers -1") {
		t.Fatalf("negative max: %v", err)
	}
}

func TestConfigCache(t *testing.T) {
	p := writeConfig(t, "cluster_name: cache-test-"+strconv.FormatInt(time.Now().UnixNano(), 36)+"\nprovider: {type: process}\n")
	if _, cached, err := LoadConfig(p, Overrides{}, true); err != nil || cached != "" {
		t.Fatalf("first load: %v %q", err, cached)
	}
	c, cached, err := LoadConfig(p, Overrides{}, true)
	if err != nil || cached == "" || c.Provider.Type != "process" {
		t.Fatalf("second load: %v %q", err, cached)
	}
	if _, again, _ := LoadConfig(p, Overrides{}, false); again != "" {
		t.Fatal("--no-config-cache read the cache")
	}
	os.Remove(cached)
}

func TestLauncherChecksBeforeTouchingAnything(t *testing.T) {
	for name, tc := range map[string]struct{ yaml, want string }{
		"no key": {"provider: {type: local, head_ip: 10.0.0.1}\nauth: {ssh_user: u}\n", "auth.ssh_private_key is required"},
		"coordinator": {"provider: {type: local, coordinator_address: 'h:1'}\nauth: {ssh_user: u, ssh_private_key: x}\n",
			"coordinator"},
		"kuberay":        {"provider: {type: kuberay}\n", "goray up supports local, docker and process"},
		"docker section": {"provider: {type: process}\ndocker: {image: goray:latest, container_name: ray_container}\n", "docker.container_name"},
		"unknown key":    {"provider: {type: process}\nsetup_comands: []\n", "setup_comands"},
		"bad head_ip": {"provider: {type: local, head_ip: 'not an ip!'}\nauth: {ssh_user: u, ssh_private_key: x}\n",
			`provider.head_ip "not an ip!": want an IP address or a host name`},
	} {
		_, _, err := LoadConfig(writeConfig(t, tc.yaml), Overrides{}, false)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a message with %q", name, err, tc.want)
		}
	}
}

// Local files that only goray up copies (the key, file mount sources) do
// not stop a config from loading for down, exec and the like; up checks
// them first, naming the file.
func TestLocalFilesAreCheckedByUpOnly(t *testing.T) {
	dir := t.TempDir()
	key, mount := filepath.Join(dir, "nope"), filepath.Join(dir, "missing")
	for name, tc := range map[string]struct{ yaml, want string }{
		"key missing": {"provider: {type: local, head_ip: 10.0.0.1}\nauth: {ssh_user: u, ssh_private_key: " + key + "}\n",
			"auth.ssh_private_key " + key + ": no such file"},
		"file mount": {"provider: {type: process}\nfile_mounts: {~/x: " + mount + "}\n", "file_mounts: " + mount + " -> ~/x"},
		"process with a key": {"provider: {type: process}\nauth: {ssh_user: u, ssh_private_key: " + key + "}\n",
			"auth.ssh_private_key " + key},
	} {
		c, _, err := LoadConfig(writeConfig(t, tc.yaml), Overrides{}, false)
		if err != nil {
			t.Errorf("%s: LoadConfig (down, exec): %v", name, err)
			continue
		}
		if err := CheckLocalFiles(c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: CheckLocalFiles (up): %v, want %q", name, err, tc.want)
		}
	}
}

func TestUsefulCommandsKeepTheClusterName(t *testing.T) {
	got := UsefulCommands("my dir/c.yaml", "other")
	for _, want := range []string{"goray exec 'my dir/c.yaml' -n other 'goray status'", "goray attach 'my dir/c.yaml' -n other\n",
		"goray monitor 'my dir/c.yaml' -n other\n", "goray down 'my dir/c.yaml' -n other\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("hints lack %q:\n%s", want, got)
		}
	}
	if got := UsefulCommands("c.yaml", ""); strings.Contains(got, "-n") {
		t.Errorf("hints without -n:\n%s", got)
	}
}

func TestHeadConfig(t *testing.T) {
	c, err := clusterconfig.Parse([]byte(`provider: {type: local, head_ip: 10.0.0.1, worker_ips: [10.0.0.2]}
auth: {ssh_user: u, ssh_private_key: /keys/id, ssh_proxy_command: "nc %h %p"}
file_mounts: {~/data: /local/data}
`))
	if err != nil {
		t.Fatal(err)
	}
	h := HeadConfig(c)
	if h.Auth.SSHPrivateKey != BootstrapKey || h.Auth.SSHProxyCommand != "" || h.FileMounts["~/data"] != "~/data" {
		t.Fatalf("head config %+v %v", h.Auth, h.FileMounts)
	}
	if c.Auth.SSHPrivateKey != "/keys/id" || c.FileMounts["~/data"] != "/local/data" {
		t.Fatal("HeadConfig changed the launcher's config")
	}
	b, err := h.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := clusterconfig.Parse(b); err != nil {
		t.Fatalf("the head's config does not parse: %v\n%s", err, b)
	}
}

func TestWrapAndMonitorCommand(t *testing.T) {
	if got := Wrap("goray status", ExecOptions{Screen: true}); got != `screen -L -dm bash -c 'goray status; exec bash'` {
		t.Errorf("screen: %s", got)
	}
	if got := Wrap("goray status", ExecOptions{Tmux: true}); got != `tmux new -d bash -c 'goray status; exec bash'` {
		t.Errorf("tmux: %s", got)
	}
	if got := MonitorCommand(5); got != `tail -n 5 -f "${GORAY_TEMP:-/tmp/goray}"/session_latest/logs/monitor.log` {
		t.Errorf("monitor: %s", got)
	}
}
