package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/goray/goray/internal/node"
	"github.com/goray/goray/testcluster"
)

// cli runs the goray binary with its own HOME and temp root.
type cli struct {
	t         *testing.T
	bin, home string
	root      string
	extraEnv  []string
}

func newCLI(t *testing.T) *cli {
	d := t.TempDir()
	c := &cli{t: t, bin: testcluster.GorayBinary(t), home: filepath.Join(d, "home"), root: filepath.Join(d, "tmp")}
	os.MkdirAll(c.home, 0o700)
	t.Cleanup(func() { c.run("stop", "-g", "5") })
	return c
}

func (c *cli) run(args ...string) (string, error) {
	cmd := exec.Command(c.bin, args...)
	env := []string{"HOME=" + c.home, "GORAY_TEMP=" + c.root, "PATH=" + os.Getenv("PATH")}
	cmd.Env = append(env, c.extraEnv...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String() + errb.String(), err
	}
	return out.String(), nil
}

func (c *cli) must(args ...string) string {
	c.t.Helper()
	out, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("goray %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func freePort(t *testing.T) (int, net.Listener) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln.Addr().(*net.TCPAddr).Port, ln
}

func httpGet(t *testing.T, url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestStartStatusStop(t *testing.T) {
	c := newCLI(t)
	port, ln := freePort(t)
	ln.Close()
	out := c.must("start", "--head", "--port="+strconv.Itoa(port), "--node-ip-address=127.0.0.1", "--num-cpus=2",
		"--memory=1073741824", "--dashboard-port=0", `--resources={"disk": 3}`)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	if !strings.Contains(out, "goray start --address='"+addr+"'") {
		t.Fatalf("start output lacks the join command:\n%s", out)
	}
	tok, err := os.ReadFile(filepath.Join(c.home, ".goray", "auth_token"))
	if err != nil {
		t.Fatalf("head did not write ~/.goray/auth_token: %v", err)
	}
	if fi, _ := os.Stat(filepath.Join(c.home, ".goray", "auth_token")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v", fi.Mode().Perm())
	}
	if got := strings.TrimSpace(c.must("get-auth-token")); got != strings.TrimSpace(string(tok)) {
		t.Fatalf("get-auth-token printed %q", got)
	}
	// Two worker nodes on the same host with default agent ports.
	c.must("start", "--address="+addr, "--num-cpus=1", "--memory=536870912")
	c.must("start", "--address="+addr, "--num-cpus=1", "--memory=536870912")

	st := c.must("status")
	layout := regexp.MustCompile(`^======== Autoscaler status: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} ========
Node status
-{63}
Healthy:
 1 node_[0-9a-f]{56}
 1 node_[0-9a-f]{56}
 1 node_[0-9a-f]{56}
Pending:
 \(no pending nodes\)
Recent failures:
 \(no failures\)

Resources
-{63}
Usage:
 0\.0/4\.0 CPU
 0\.0/3\.0 disk
 0B/2\.00GiB memory
 0B/[0-9.]+[GMK]iB object_store_memory
Demands:
 \(no resource demands\)
$`)
	if !layout.MatchString(st) {
		t.Fatalf("status layout:\n%s", st)
	}

	nodes, err := recordedNodes(c.root)
	if err != nil || len(nodes) != 3 {
		t.Fatalf("recorded nodes: %v %v", nodes, err)
	}
	var head node.Info
	for _, n := range nodes {
		if code, body := httpGet(t, "http://"+n.info.AgentAddress+"/api/local_raylet_healthz"); code != 200 || !strings.Contains(body, "success") {
			t.Fatalf("agent health of %s: %d %q", n.info.NodeID, code, body)
		}
		if n.info.Head {
			head = n.info
		}
	}
	if code, body := httpGet(t, "http://"+head.DashboardAddress+"/api/gcs_healthz"); code != 200 || !strings.Contains(body, "success") {
		t.Fatalf("gcs_healthz: %d %q", code, body)
	}
	if code, _ := httpGet(t, "http://"+head.DashboardAddress+"/api/version"); code != http.StatusUnauthorized {
		t.Fatalf("/api/version without token: %d, want 401", code)
	}

	// A second head on the same port is refused, naming the port.
	if out, err := c.run("start", "--head", "--port="+strconv.Itoa(port), "--node-ip-address=127.0.0.1"); err == nil || !strings.Contains(out, strconv.Itoa(port)) {
		t.Fatalf("second head on port %d: %v\n%s", port, err, out)
	}

	out = c.must("stop")
	if !strings.Contains(out, "Stopped all 3 goray processes.") {
		t.Fatalf("stop output: %q", out)
	}
	for _, n := range nodes {
		if err := syscall.Kill(n.info.PID, 0); err == nil {
			t.Fatalf("node pid %d still alive after goray stop", n.info.PID)
		}
	}
	if left, _ := recordedNodes(c.root); len(left) != 0 {
		t.Fatalf("nodes still recorded after stop: %v", left)
	}
	if _, err := c.run("status"); err == nil {
		t.Fatal("status succeeded with no cluster")
	}
}

func TestStartRefusesBadInput(t *testing.T) {
	c := newCLI(t)
	port, ln := freePort(t)
	defer ln.Close()
	p := strconv.Itoa(port)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"start", "--head", "--port=" + p, "--node-ip-address=127.0.0.1"}, p},
		{[]string{"start", "--head", "--port=0", "--node-ip-address=127.0.0.1", "--dashboard-port=" + p}, "--dashboard-port"},
		{[]string{"start", "--head", "--port=0", "--node-ip-address=127.0.0.1", "--dashboard-agent-listen-port=" + p}, p},
		{[]string{"start", "--head", `--resources={"CPU": 2}`}, "--num-cpus"},
		{[]string{"start", "--head", `--resources={"x": -1}`}, "x"},
		{[]string{"start", "--head", "--resources=[1]"}, "--resources"},
		{[]string{"start", "--head", "--labels=novalue"}, "novalue"},
		{[]string{"start", "--head", "--num-cpus=-2"}, "--num-cpus"},
		{[]string{"start", "--head", "--node-ip-address=not-an-ip"}, "not-an-ip"},
		{[]string{"start"}, "--head"},
		{[]string{"start", "--address=127.0.0.1:1", "--port=5"}, "--port"},
		{[]string{"start", "--address=nonsense"}, "HOST:PORT"},
		{[]string{"stop", "-g", "-1"}, "grace"},
		{[]string{"status", "--address=http://127.0.0.1:8265"}, "dashboard URL"},
	}
	for _, tc := range cases {
		out, err := c.run(tc.args...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("goray %v: err=%v, output should name %q:\n%s", tc.args, err, tc.want, out)
		}
	}
	if nodes, _ := recordedNodes(c.root); len(nodes) != 0 {
		t.Fatalf("a refused start left a node running: %v", nodes)
	}
	if sessions, _ := filepath.Glob(filepath.Join(c.root, "session_*")); len(sessions) != 0 {
		t.Fatalf("a refused start left session directories: %v", sessions)
	}
}
