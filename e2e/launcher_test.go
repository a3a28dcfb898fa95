package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goray/goray/internal/launcher/hosttest"
	"github.com/goray/goray/testcluster"
)

// launcherCLI runs the goray CLI as a user on this machine would.
type launcherCLI struct {
	t   *testing.T
	bin string
	env []string
}

func newLauncherCLI(t *testing.T) *launcherCLI {
	home := t.TempDir()
	return &launcherCLI{t: t, bin: testcluster.GorayBinary(t), env: append(os.Environ(),
		"HOME="+home, "GORAY_TEMP="+filepath.Join(home, "tmp"), "GORAY_LAUNCHER_SSH_TIMEOUT_S=30")}
}

// run runs goray with args and returns its combined output.
func (c *launcherCLI) run(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = c.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// stdout runs goray and returns its standard output only.
func (c *launcherCLI) stdout(timeout time.Duration, args ...string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = c.env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		c.t.Fatalf("goray %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

func (c *launcherCLI) must(timeout time.Duration, args ...string) string {
	c.t.Helper()
	out, err := c.run(timeout, args...)
	if err != nil {
		c.t.Fatalf("goray %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

var healthyLine = regexp.MustCompile(`^\s*(\d+) \S+`)

// healthyNodes counts the nodes under "Healthy:" in goray status output.
func healthyNodes(status string) int {
	n := 0
	in := false
	for _, line := range strings.Split(status, "\n") {
		switch {
		case strings.HasPrefix(line, "Healthy:"):
			in = true
		case strings.HasPrefix(line, "Pending:"):
			in = false
		case in:
			if m := healthyLine.FindStringSubmatch(line); m != nil {
				k, _ := strconv.Atoi(m[1])
				n += k
			}
		}
	}
	return n
}

// writeTree fills dir with files of several sizes and modes, a nested
// directory and a symlink.
func writeTree(t *testing.T, dir string) {
	t.Helper()
	files := map[string]string{
		"a.txt":         "alpha\n",
		"sub/b.bin":     strings.Repeat("\x00\x01\x02binary", 5000),
		"sub/deep/c.sh": "#!/bin/sh\necho hi\n",
		"empty":         "",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(dir, "sub/deep/c.sh"), 0o755)
	os.Symlink("a.txt", filepath.Join(dir, "link"))
}

// sameTree fails unless two directories hold the same paths, modes,
// contents and links.
func sameTree(t *testing.T, a, b string) {
	t.Helper()
	list := func(root string) map[string]string {
		m := map[string]string{}
		filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
			if err != nil {
				t.Fatal(err)
			}
			rel, _ := filepath.Rel(root, p)
			if rel == "." {
				return nil
			}
			desc := info.Mode().String()
			switch {
			case info.Mode()&os.ModeSymlink != 0:
				l, _ := os.Readlink(p)
				desc += " -> " + l
			case info.Mode().IsRegular():
				c, _ := os.ReadFile(p)
				desc += " " + string(c)
			}
			m[rel] = desc
			return nil
		})
		return m
	}
	ma, mb := list(a), list(b)
	if len(ma) != len(mb) {
		t.Fatalf("%s has %d entries, %s has %d", a, len(ma), b, len(mb))
	}
	for k, v := range ma {
		if mb[k] != v {
			t.Fatalf("%s differs after the round trip", k)
		}
	}
}

// headPID reads the pid of the head node's process from its session.
func headPID(t *testing.T, cli *launcherCLI, cfg string) string {
	t.Helper()
	out := cli.stdout(30*time.Second, "exec", cfg, `sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' "$GORAY_TEMP"/session_latest/node.json`)
	return strings.TrimSpace(out)
}

// dumpHead logs the head host's autoscaler log and state file when the
// test failed.
func dumpHead(t *testing.T, h *hosttest.Host) {
	if !t.Failed() {
		return
	}
	logs, _ := filepath.Glob(filepath.Join(h.Temp, "session_*", "logs", "*"))
	for _, l := range logs {
		if b, err := os.ReadFile(l); err == nil && len(b) > 0 {
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("--- %s ---\n%s", l, b)
		}
	}
	states, _ := filepath.Glob(filepath.Join(h.Temp, "cluster-*.state"))
	for _, s := range states {
		b, _ := os.ReadFile(s)
		t.Logf("--- %s ---\n%s", s, b)
	}
}

// claimsDown reports whether goray down's output says the cluster is
// torn down.
func claimsDown(out string) bool {
	return strings.Contains(out, ": terminated ") || strings.Contains(out, "nothing to terminate")
}

// The local provider over emulated SSH hosts: goray up brings up a head
// and two workers, the launcher's other commands act on the head, a
// second up with --no-restart changes nothing and down leaves no process
// on any host.
func TestLauncherLocalProvider(t *testing.T) {
	bin := testcluster.GorayBinary(t)
	hosts := hosttest.Start(t, 3, filepath.Dir(bin))
	cli := newLauncherCLI(t)
	dir := t.TempDir()
	mounted := filepath.Join(dir, "mounted")
	os.MkdirAll(mounted, 0o755)
	os.WriteFile(filepath.Join(mounted, "hello.txt"), []byte("mounted file\n"), 0o644)
	h0, h1, h2 := hosts.Hosts[0], hosts.Hosts[1], hosts.Hosts[2]
	cluster := fmt.Sprintf("e2e-local-%d", os.Getpid())
	cfg := filepath.Join(dir, "cluster.yaml")
	// Ray's older layout: no available_node_types, min_workers defaults
	// to the number of worker IPs.
	os.WriteFile(cfg, []byte(`cluster_name: `+cluster+`
provider:
  type: local
  head_ip: `+h0.IP+`
  worker_ips: [`+h1.IP+`, `+h2.IP+`]
auth:
  ssh_user: root
  ssh_private_key: `+hosts.Key+`
file_mounts:
  ~/mounted: `+mounted+`
setup_commands:
  - echo setup >> ~/setup.log
head_start_ray_commands:
  - goray stop
  - AUTOSCALER_UPDATE_INTERVAL_S=1 goray start --head --port=6379 --num-cpus=1 --autoscaling-config=~/goray_bootstrap_config.yaml
worker_start_ray_commands:
  - goray stop
  - goray start --address=$RAY_HEAD_IP:6379 --num-cpus=2
`), 0o644)
	t.Cleanup(func() { cli.run(2*time.Minute, "down", "-y", cfg) })
	t.Cleanup(func() { dumpHead(t, h0) })

	start := time.Now()
	out := cli.must(3*time.Minute, "up", "-y", cfg)
	t.Logf("goray up: %.1fs\n%s", time.Since(start).Seconds(), out)
	for _, step := range []string{"waiting-for-ssh", "syncing-files", "setup_commands", "start_ray_commands", "up-to-date"} {
		if !strings.Contains(out, step) {
			t.Errorf("goray up did not show step %s", step)
		}
	}
	var status string
	testcluster.Eventually(t, 2*time.Minute, "3 healthy nodes in goray status", func() bool {
		status, _ = cli.run(30*time.Second, "exec", cfg, "goray status")
		return healthyNodes(status) == 3
	})
	t.Logf("3 nodes healthy %.1fs after goray up started", time.Since(start).Seconds())

	// exec runs on the head: its address, its temp root, the mounted file.
	out = cli.must(30*time.Second, "exec", cfg, `ip -4 -o addr show eth0; echo "temp=$GORAY_TEMP"; cat ~/mounted/hello.txt`)
	if !strings.Contains(out, h0.IP+"/") || !strings.Contains(out, "temp="+h0.Temp) || !strings.Contains(out, "mounted file") {
		t.Fatalf("goray exec did not run on the head %s:\n%s", h0.IP, out)
	}
	if out, err := cli.run(30*time.Second, "exec", cfg, "exit 7"); err == nil || !strings.Contains(err.Error(), "exit status 7") {
		t.Fatalf("goray exec of a failing command: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(cli.stdout(30*time.Second, "get-head-ip", cfg)); got != h0.IP {
		t.Fatalf("get-head-ip = %q, want %s", got, h0.IP)
	}
	if got := strings.Fields(cli.stdout(30*time.Second, "get-worker-ips", cfg)); strings.Join(got, " ") != h1.IP+" "+h2.IP {
		t.Fatalf("get-worker-ips = %q, want %s %s", got, h1.IP, h2.IP)
	}

	// attach: an interactive shell on the head, driven through stdin.
	attach := exec.Command(bin, "attach", cfg)
	attach.Env = cli.env
	attach.Stdin = strings.NewReader("echo attached-$((40+2)) on $(hostname -I)\nexit\n")
	if b, err := attach.CombinedOutput(); err != nil || !strings.Contains(string(b), "attached-42 on "+h0.IP) {
		t.Fatalf("goray attach: %v\n%s", err, b)
	}

	// submit: the wordcount example runs on the head against the cluster.
	wc := filepath.Join(dir, "wordcount")
	if err := testcluster.Build(wc, "github.com/goray/goray/examples/wordcount"); err != nil {
		t.Fatal(err)
	}
	text := filepath.Join(dir, "text")
	os.MkdirAll(text, 0o755)
	for i := 0; i < 8; i++ {
		os.WriteFile(filepath.Join(text, fmt.Sprintf("f%d.txt", i)), []byte(strings.Repeat("alpha beta beta gamma gamma gamma\n", 500)), 0o644)
	}
	out = cli.must(3*time.Minute, "submit", cfg, wc, "--", "--batch-bytes=20000", text)
	for _, want := range []string{"12000 gamma", "8000 beta", "4000 alpha"} {
		if !strings.Contains(out, want) {
			t.Fatalf("wordcount on the cluster: want %q in\n%s", want, out)
		}
	}
	if n := strings.Count(out, " tasks"); n < 2 {
		t.Errorf("wordcount's tasks ran on %d node(s); want the workers too:\n%s", n, out)
	}

	// rsync-up then rsync-down round-trips a directory, by rsync and by SFTP.
	src := filepath.Join(dir, "tree")
	writeTree(t, src)
	for _, mode := range []string{"rsync", "sftp"} {
		back := filepath.Join(dir, "back-"+mode)
		env := cli.env
		cli.env = append(env, "GORAY_LAUNCHER_SYNC="+mode)
		cli.must(time.Minute, "rsync-up", cfg, src, "~/tree-"+mode)
		cli.must(time.Minute, "rsync-down", cfg, "~/tree-"+mode, back)
		cli.env = env
		sameTree(t, src, back)
		if _, err := os.Stat(filepath.Join(h0.Home, "tree-"+mode, "sub/b.bin")); err != nil {
			t.Fatalf("%s: the tree is not in the head's home: %v", mode, err)
		}
	}

	// monitor shows the autoscaler's log.
	mctx, mcancel := context.WithTimeout(context.Background(), 5*time.Second)
	mon := exec.CommandContext(mctx, bin, "monitor", cfg, "--lines", "20")
	mon.Env = cli.env
	mout, _ := mon.CombinedOutput()
	mcancel()
	if !strings.Contains(string(mout), "launching nodes") && !strings.Contains(string(mout), "updater") {
		t.Errorf("goray monitor did not show the autoscaler log:\n%s", mout)
	}

	// up --no-restart on an up-to-date cluster changes nothing.
	pid := headPID(t, cli, cfg)
	out = cli.must(2*time.Minute, "up", "-y", "--no-restart", cfg)
	if !strings.Contains(out, "already up to date") {
		t.Errorf("goray up --no-restart did not find the cluster up to date:\n%s", out)
	}
	if again := headPID(t, cli, cfg); again != pid || pid == "" {
		t.Fatalf("goray up --no-restart restarted the head: pid %s, then %s", pid, again)
	}
	if b, _ := os.ReadFile(filepath.Join(h0.Home, "setup.log")); string(b) != "setup\n" {
		t.Fatalf("setup ran again on the head: %q", b)
	}
	if status, _ = cli.run(30*time.Second, "exec", cfg, "goray status"); healthyNodes(status) != 3 {
		t.Fatalf("after goray up --no-restart:\n%s", status)
	}

	// down --workers-only --keep-min-workers keeps min_workers (2, the
	// number of worker_ips in Ray's older layout) and says so.
	out = cli.must(time.Minute, "down", "-y", "--workers-only", "--keep-min-workers", cfg)
	if !strings.Contains(out, "terminated no worker node, kept 2 worker node(s)") {
		t.Errorf("goray down --workers-only --keep-min-workers:\n%s", out)
	}

	// down with the head's sshd stopped cannot stop the head: it says so,
	// exits non-zero and never claims the cluster is down.
	h0.StopSSH()
	out, err := cli.run(2*time.Minute, "down", "-y", cfg)
	t.Logf("goray down without the head's sshd: %v\n%s", err, out)
	if err == nil || claimsDown(out) || !strings.Contains(out, "NOT fully torn down") || !strings.Contains(out, h0.IP) || !strings.Contains(out, "may still run") {
		t.Fatalf("goray down without the head's sshd: %v\n%s", err, out)
	}
	if len(h0.GorayPIDs()) == 0 {
		t.Fatal("the head's goray stopped without SSH?")
	}
	if err := h0.StartSSH(); err != nil {
		t.Fatal(err)
	}

	// down: nothing of the cluster runs on any host.
	start = time.Now()
	out = cli.must(3*time.Minute, "down", "-y", cfg)
	t.Logf("goray down: %.1fs\n%s", time.Since(start).Seconds(), out)
	if !strings.Contains(out, "Cluster "+cluster+": terminated the head node and") {
		t.Errorf("goray down's summary:\n%s", out)
	}
	testcluster.Eventually(t, 30*time.Second, "no process left on the hosts", func() bool {
		for _, h := range hosts.Hosts {
			if len(h.PIDs()) > 0 {
				return false
			}
		}
		return true
	})
	if _, err := cli.run(30*time.Second, "exec", cfg, "true"); err == nil {
		t.Fatal("goray exec after goray down found a head")
	}
}

// Failure paths of goray up with the local provider: each stops with a
// message naming the host and the step, and down still cleans up.
func TestLauncherLocalProviderFailures(t *testing.T) {
	bin := testcluster.GorayBinary(t)
	hosts := hosttest.Start(t, 2, filepath.Dir(bin))
	cli := newLauncherCLI(t)
	cli.env = append(cli.env, "GORAY_LAUNCHER_SSH_TIMEOUT_S=3")
	dir := t.TempDir()
	badKey := filepath.Join(dir, "not-authorized")
	if _, err := hosttest.WriteKey(badKey); err != nil {
		t.Fatal(err)
	}
	h0, h1 := hosts.Hosts[0], hosts.Hosts[1]
	unreachable := hosts.Subnet + ".200"
	// A known_hosts file with another key for the head.
	otherHostKey, err := hosttest.WriteKey(filepath.Join(dir, "other-host-key"))
	if err != nil {
		t.Fatal(err)
	}
	knownHosts := filepath.Join(dir, "known_hosts")
	os.WriteFile(knownHosts, []byte(h0.IP+" "+otherHostKey), 0o600)
	cases := []struct {
		name, head, key, setup string
		env                    []string
		want                   []string
		// downFails: down cannot reach the head, so it must say that
		// nodes may still run and exit non-zero.
		downFails bool
	}{
		{"unreachable host", unreachable, hosts.Key, "true", nil, []string{unreachable, "waiting-for-ssh", "not reachable after"}, true},
		{"failing setup command", h0.IP, hosts.Key, "echo boom-output; exit 3", nil, []string{h0.IP, "setup_commands", "echo boom-output; exit 3", "exit status 3", "boom-output"}, false},
		{"bad key", h0.IP, badKey, "true", nil, []string{h0.IP, "waiting-for-ssh", "unable to authenticate", "refused login as root with the key " + badKey}, true},
		{"host key mismatch", h0.IP, hosts.Key, "true", []string{"GORAY_SSH_KNOWN_HOSTS=" + knownHosts},
			[]string{h0.IP, "waiting-for-ssh", "the host key of " + h0.IP + " does not match the one in the known_hosts file " + knownHosts}, true},
	}
	for i, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			cfg := filepath.Join(dir, fmt.Sprintf("c%d.yaml", i))
			os.WriteFile(cfg, []byte(fmt.Sprintf(`cluster_name: e2e-fail-%d-%d
provider: {type: local, head_ip: %s, worker_ips: [%s]}
auth: {ssh_user: root, ssh_private_key: %s}
setup_commands: [%q]
`, i, os.Getpid(), tc.head, h1.IP, tc.key, tc.setup)), 0o644)
			env := cli.env
			cli.env = append(append([]string{}, env...), tc.env...)
			defer func() { cli.env = env }()
			out, err := cli.run(2*time.Minute, "up", "-y", cfg)
			t.Logf("goray up:\n%s", out)
			if err == nil {
				t.Fatalf("goray up succeeded:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("goray up's message lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "start_ray_commands:") {
				t.Errorf("start commands ran after the failure:\n%s", out)
			}
			if strings.Contains(out, "ssh: ssh:") || strings.Contains(out, "rejected") {
				t.Errorf("goray up's SSH error is misleading:\n%s", out)
			}
			out, err = cli.run(2*time.Minute, "down", "-y", cfg)
			t.Logf("goray down:\n%s", out)
			if tc.downFails {
				if err == nil || !strings.Contains(out, "NOT fully torn down") || !strings.Contains(out, tc.head) || claimsDown(out) {
					t.Fatalf("goray down without access to the head: %v (want a failure naming %s)\n%s", err, tc.head, out)
				}
			} else if err != nil {
				t.Fatalf("goray down after a failed up: %v", err)
			}
			var left []string
			testcluster.Eventually(t, 10*time.Second, "no process left on the hosts", func() bool {
				left = nil
				for _, h := range hosts.Hosts {
					left = append(left, h.PIDs()...)
				}
				return len(left) == 0
			})
			if !tc.downFails {
				b, _ := os.ReadFile(filepath.Join(h0.Temp, "cluster-"+fmt.Sprintf("e2e-fail-%d-%d", i, os.Getpid())+".state"))
				if !strings.Contains(string(b), `"terminated"`) {
					t.Errorf("the head's state file after down: %s", b)
				}
			}
		})
	}
}

// The docker provider: goray up makes the head a container of the
// cluster (commands through docker exec), its autoscaler launches the
// worker container, files round-trip through the Engine API, and down
// leaves no container or network of the cluster.
func TestLauncherDockerProvider(t *testing.T) {
	image := testcluster.DockerImage(t)
	cli := newLauncherCLI(t)
	cluster := fmt.Sprintf("e2e-up-docker-%d", os.Getpid())
	dir := t.TempDir()
	cfg := filepath.Join(dir, "cluster.yaml")
	os.WriteFile(cfg, []byte(`cluster_name: `+cluster+`
max_workers: 1
provider:
  type: docker
  image: `+image+`
head_node_type: head
available_node_types:
  head:
    resources: {CPU: 1}
    node_config: {}
  worker:
    resources: {CPU: 2, memory: 536870912, object_store_memory: 67108864}
    node_config: {}
    min_workers: 1
setup_commands:
  - echo setup >> ~/setup.log
head_start_ray_commands:
  - goray stop
  - AUTOSCALER_UPDATE_INTERVAL_S=1 goray start --head --port=6379 --autoscaling-config=~/goray_bootstrap_config.yaml
`), 0o644)
	leftovers := func() string {
		out, _ := exec.Command("docker", "ps", "-a", "--filter", "label=ray-cluster-name="+cluster, "--format", "{{.Names}}").Output()
		nets, _ := exec.Command("docker", "network", "ls", "--filter", "label=ray-cluster-name="+cluster, "--format", "{{.Name}}").Output()
		return strings.TrimSpace(string(out) + string(nets))
	}
	t.Cleanup(func() {
		cli.run(2*time.Minute, "down", "-y", cfg)
		if l := leftovers(); l != "" {
			exec.Command("docker", "rm", "-f", l).Run()
		}
	})

	// An up that cannot create the head (no such image) leaves no
	// network or container behind.
	badImage := filepath.Join(dir, "bad-image.yaml")
	b, _ := os.ReadFile(cfg)
	os.WriteFile(badImage, []byte(strings.Replace(string(b), "image: "+image, "image: goray-e2e-no-such-image:none", 1)), 0o644)
	if out, err := cli.run(2*time.Minute, "up", "-y", badImage); err == nil || !strings.Contains(out, "goray-e2e-no-such-image:none") {
		t.Fatalf("goray up with a missing image: %v\n%s", err, out)
	}
	if l := leftovers(); l != "" {
		t.Fatalf("a failed goray up left: %s", l)
	}

	start := time.Now()
	out := cli.must(3*time.Minute, "up", "-y", cfg)
	t.Logf("goray up: %.1fs\n%s", time.Since(start).Seconds(), out)
	if strings.Contains(out, "waiting-for-ssh") || !strings.Contains(out, "waiting-for-host") {
		t.Errorf("the docker provider uses no SSH:\n%s", out)
	}
	var status string
	testcluster.Eventually(t, 2*time.Minute, "2 healthy nodes in goray status", func() bool {
		status, _ = cli.run(30*time.Second, "exec", cfg, "goray status")
		return healthyNodes(status) == 2
	})
	head := strings.TrimSpace(cli.stdout(30*time.Second, "exec", cfg, "hostname"))
	if !strings.HasPrefix(head, "goray-"+cluster+"-head-") {
		t.Fatalf("goray exec ran in %q, not the head container", head)
	}
	headIP := strings.TrimSpace(cli.stdout(30*time.Second, "get-head-ip", cfg))
	if workers := strings.Fields(cli.stdout(30*time.Second, "get-worker-ips", cfg)); len(workers) != 1 || workers[0] == headIP {
		t.Fatalf("get-worker-ips = %v (head %s)", workers, headIP)
	}
	src := filepath.Join(dir, "tree")
	writeTree(t, src)
	back := filepath.Join(dir, "back")
	cli.must(time.Minute, "rsync-up", cfg, src, "~/tree")
	cli.must(time.Minute, "rsync-down", cfg, "~/tree", back)
	sameTree(t, src, back)

	out = cli.must(2*time.Minute, "up", "-y", "--no-restart", cfg)
	if !strings.Contains(out, "already up to date") {
		t.Errorf("goray up --no-restart did not find the head up to date:\n%s", out)
	}
	if n := strings.Count(cli.stdout(30*time.Second, "exec", cfg, "cat ~/setup.log"), "setup"); n != 1 {
		t.Errorf("setup ran %d times", n)
	}

	start = time.Now()
	out = cli.must(3*time.Minute, "down", "-y", cfg)
	t.Logf("goray down: %.1fs\n%s", time.Since(start).Seconds(), out)
	if !strings.Contains(out, "Cluster "+cluster+": terminated the head node and 1 worker node(s).") {
		t.Errorf("goray down's summary:\n%s", out)
	}
	if l := leftovers(); l != "" {
		t.Fatalf("after goray down the cluster still has: %s", l)
	}
}

// processesWithEnv lists the processes whose environment holds kv.
func processesWithEnv(kv string) []string {
	var out []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		env, err := os.ReadFile(filepath.Join(d, "environ"))
		if err != nil {
			continue
		}
		for _, e := range strings.Split(string(env), "\x00") {
			if e == kv {
				cmd, _ := os.ReadFile(filepath.Join(d, "cmdline"))
				out = append(out, filepath.Base(d)+" "+strings.ReplaceAll(string(cmd), "\x00", " "))
				break
			}
		}
	}
	return out
}

// The process provider: the head is this machine (commands in a local
// shell, the default head start command), its provider starts the worker
// processes, and down leaves none of them. The cluster has its own temp
// root, so a second process cluster's up does not touch it; a head
// created again after down is set up in full; down needs neither the key
// nor the file mounts' sources.
func TestLauncherProcessProvider(t *testing.T) {
	cli := newLauncherCLI(t)
	cli.env = append(cli.env, "PATH="+filepath.Dir(cli.bin)+":"+os.Getenv("PATH"), "AUTOSCALER_UPDATE_INTERVAL_S=0.5")
	var home, temp string
	for _, e := range cli.env {
		if v, ok := strings.CutPrefix(e, "GORAY_TEMP="); ok {
			temp = "GORAY_TEMP=" + filepath.Join(v, "e2e-up-process") // the cluster's own temp root
		}
		if v, ok := strings.CutPrefix(e, "HOME="); ok {
			home = v
		}
	}
	dir := t.TempDir()
	mounted := filepath.Join(dir, "mounted")
	os.WriteFile(mounted, []byte("x\n"), 0o644)
	key := filepath.Join(dir, "id")
	if _, err := hosttest.WriteKey(key); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "cluster.yaml")
	os.WriteFile(cfg, []byte(`cluster_name: e2e-up-process
max_workers: 1
provider: {type: process}
auth: {ssh_user: u, ssh_private_key: `+key+`}
file_mounts: {~/mounted: `+mounted+`}
setup_commands: [echo setup >> ~/setup.log]
head_node_type: head
available_node_types:
  head: {node_config: {}, resources: {CPU: 0}}
  worker: {node_config: {}, resources: {CPU: 1, memory: 268435456, object_store_memory: 67108864}, min_workers: 1}
`), 0o644)
	setups := func() int {
		b, _ := os.ReadFile(filepath.Join(home, "setup.log"))
		return strings.Count(string(b), "setup")
	}
	t.Cleanup(func() { cli.run(time.Minute, "down", "-y", cfg) })
	out := cli.must(2*time.Minute, "up", "-y", cfg)
	if !strings.Contains(out, "goray start --head --port=6379 --autoscaling-config=~/goray_bootstrap_config.yaml") {
		t.Errorf("goray up did not run the default head start command:\n%s", out)
	}
	if strings.Contains(out, "waiting-for-ssh") || !strings.Contains(out, "[localhost] waiting-for-host") {
		t.Errorf("the process provider uses no SSH:\n%s", out)
	}
	testcluster.Eventually(t, time.Minute, "2 healthy nodes", func() bool {
		s, _ := cli.run(30*time.Second, "exec", cfg, "goray status")
		return healthyNodes(s) == 2
	})
	if ips := strings.Fields(cli.stdout(30*time.Second, "get-worker-ips", cfg)); len(ips) != 1 {
		t.Fatalf("get-worker-ips: %v", ips)
	}
	// --workers-only cannot reach the process provider's workers: it says
	// so instead of claiming it terminated them.
	if out, err := cli.run(time.Minute, "down", "-y", "--workers-only", cfg); err == nil || claimsDown(out) || !strings.Contains(out, "processes of the head") {
		t.Errorf("goray down --workers-only with the process provider: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(cli.stdout(30*time.Second, "exec", cfg, "echo $GORAY_TEMP")); "GORAY_TEMP="+got != temp {
		t.Fatalf("the cluster's commands run with GORAY_TEMP=%s, want %s", got, temp)
	}

	// A second process cluster on this machine (the same file, -n): its
	// up runs `goray stop` in its own temp root, so this cluster's nodes
	// keep running; its head cannot have port 6379 and says so.
	pid := headPID(t, cli, cfg)
	out, err := cli.run(2*time.Minute, "up", "-y", "-n", "e2e-up-process-2", cfg)
	t.Logf("goray up of a second process cluster: %v\n%s", err, out)
	if err == nil || !strings.Contains(out, "6379") {
		t.Errorf("goray up of a second cluster on port 6379: %v\n%s", err, out)
	}
	if again := headPID(t, cli, cfg); again != pid || pid == "" {
		t.Fatalf("the second cluster's up stopped this cluster's head: pid %s, then %s", pid, again)
	}
	if s, _ := cli.run(30*time.Second, "exec", cfg, "goray status"); healthyNodes(s) != 2 {
		t.Fatalf("after the second cluster's up:\n%s", s)
	}
	if out := cli.must(time.Minute, "down", "-y", "-n", "e2e-up-process-2", cfg); !strings.Contains(out, "Cluster e2e-up-process-2: terminated the head node") {
		t.Errorf("goray down of the second cluster:\n%s", out)
	}
	if again := headPID(t, cli, cfg); again != pid {
		t.Fatalf("the second cluster's down stopped this cluster's head: pid %s, then %s", pid, again)
	}

	// --restart-only restarts goray without setup.
	out = cli.must(2*time.Minute, "up", "-y", "--restart-only", cfg)
	if strings.Contains(out, "syncing-files") || !strings.Contains(out, "start_ray_commands") {
		t.Errorf("goray up --restart-only:\n%s", out)
	}
	// A changed head node_config (launch-config hash) relaunches the head,
	// which is set up anew.
	n := setups()
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(b), "head: {node_config: {}", "head: {node_config: {env: {X: y}}", 1)), 0o644)
	out = cli.must(2*time.Minute, "up", "-y", cfg)
	if !strings.Contains(out, "is outdated") || !strings.Contains(out, "Creating the head node") ||
		strings.Contains(out, "already up to date") || setups() != n+1 {
		t.Errorf("goray up after a node_config change did not relaunch and set up the head (setup ran %d times):\n%s", setups(), out)
	}
	testcluster.Eventually(t, time.Minute, "2 healthy nodes after the relaunch", func() bool {
		s, _ := cli.run(30*time.Second, "exec", cfg, "goray status")
		return healthyNodes(s) == 2
	})
	// down, then up: the new head is set up in full.
	cli.must(time.Minute, "down", "-y", cfg)
	out = cli.must(2*time.Minute, "up", "-y", cfg)
	if strings.Contains(out, "already up to date") || !strings.Contains(out, "setup_commands: echo setup") || setups() != n+2 {
		t.Errorf("goray up after down skipped setup (setup ran %d times):\n%s", setups(), out)
	}
	// down needs neither the key nor the file mounts' sources (a changed
	// file, so that no cached copy of the checked config is used).
	os.Remove(key)
	os.Remove(mounted)
	b, _ = os.ReadFile(cfg)
	os.WriteFile(cfg, append(b, "# keys and mounts gone\n"...), 0o644)
	out = cli.must(time.Minute, "down", "-y", cfg)
	if !strings.Contains(out, "Cluster e2e-up-process: terminated the head node") {
		t.Errorf("goray down:\n%s", out)
	}
	testcluster.Eventually(t, 30*time.Second, "no process of the cluster", func() bool { return len(processesWithEnv(temp)) == 0 })
}
