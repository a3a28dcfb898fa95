// Package testcluster starts real multi-node goray clusters for tests: a
// head and worker nodes as separate `goray start --block` processes on
// loopback, with free ports, short health checks, their own temp root,
// HOME and token, and cleanup at the end of the test.
package testcluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/node"
	"github.com/goray/goray/proto/rpcpb"
)

// Options shape a cluster.
type Options struct {
	// Workers is the number of worker nodes besides the head.
	Workers int
	// HeadCPUs and WorkerCPUs are the nodes' --num-cpus (default 1).
	HeadCPUs, WorkerCPUs float64
	// HealthCheckPeriod and FailureThreshold configure the GCS's health
	// checks (defaults 200ms and 3, so a dead node is found within ~1s).
	HealthCheckPeriod time.Duration
	FailureThreshold  int
	// Env is added to every process's environment.
	Env []string
	// HeadFlags are extra goray start flags for the head (e.g.
	// --autoscaling-config=FILE).
	HeadFlags []string
}

// NodeOptions shape one node.
type NodeOptions struct {
	CPUs  float64
	Flags []string // extra goray start flags
	Env   []string // extra environment (e.g. PATH with a fake nvidia-smi)
}

// Cluster is a running test cluster.
type Cluster struct {
	t        testing.TB
	Bin      string // the goray binary
	TempRoot string
	Home     string
	Token    string
	Address  string // GCS address of the head
	Head     *Node
	Workers  []*Node
	opts     Options
}

// Node is one node process.
type Node struct {
	Info node.Info
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

var (
	buildOnce sync.Once
	buildBin  string
	buildErr  error
)

// GorayBinary builds cmd/goray once per test process and returns its path.
func GorayBinary(t testing.TB) string {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "goray-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildBin = filepath.Join(dir, "goray")
		buildErr = Build(buildBin, "github.com/goray/goray/cmd/goray")
	})
	if buildErr != nil {
		t.Fatalf("testcluster: build goray: %v", buildErr)
	}
	return buildBin
}

// Build compiles a package of this module into out; with GORAY_TEST_RACE
// set, with the race detector.
func Build(out, pkg string) error {
	args := []string{"build", "-o", out}
	if os.Getenv("GORAY_TEST_RACE") != "" {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, pkg)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// Start starts a head and opts.Workers worker nodes and waits until all
// are registered. Everything is stopped when the test ends.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.HeadCPUs == 0 {
		opts.HeadCPUs = 1
	}
	if opts.WorkerCPUs == 0 {
		opts.WorkerCPUs = 1
	}
	if opts.HealthCheckPeriod == 0 {
		opts.HealthCheckPeriod = 200 * time.Millisecond
	}
	if opts.FailureThreshold == 0 {
		opts.FailureThreshold = 3
	}
	root := t.TempDir()
	c := &Cluster{
		t: t, Bin: GorayBinary(t), TempRoot: filepath.Join(root, "tmp"), Home: filepath.Join(root, "home"),
		Token: fmt.Sprintf("testtoken%d", time.Now().UnixNano()), opts: opts,
	}
	os.MkdirAll(c.Home, 0o700)
	t.Cleanup(c.Stop)
	c.Head = c.StartNode(NodeOptions{CPUs: opts.HeadCPUs, Flags: append([]string{"--head", "--port=0", "--dashboard-port=0", "--ray-client-server-port=0"}, opts.HeadFlags...)})
	c.Address = c.Head.Info.GCSAddress
	for i := 0; i < opts.Workers; i++ {
		c.AddNode(NodeOptions{CPUs: opts.WorkerCPUs})
	}
	return c
}

// Env is the environment of a driver or CLI call against this cluster.
func (c *Cluster) Env() []string {
	env := append(os.Environ(),
		"HOME="+c.Home, "GORAY_TEMP="+c.TempRoot, "GORAY_AUTH_TOKEN="+c.Token,
		"GORAY_health_check_period_ms="+strconv.FormatInt(c.opts.HealthCheckPeriod.Milliseconds(), 10),
		// A killed node refuses connections at once; the timeout only
		// matters for slow ones (race builds), so it is generous.
		"GORAY_health_check_timeout_ms=2000",
		"GORAY_health_check_failure_threshold="+strconv.Itoa(c.opts.FailureThreshold),
	)
	if c.Address != "" {
		env = append(env, "GORAY_ADDRESS="+c.Address)
	}
	return append(env, c.opts.Env...)
}

// AddNode joins a worker node to the cluster (appended to Workers).
func (c *Cluster) AddNode(o NodeOptions) *Node {
	n := c.StartNode(NodeOptions{CPUs: o.CPUs, Env: o.Env, Flags: append([]string{"--address=" + c.Address}, o.Flags...)})
	c.Workers = append(c.Workers, n)
	return n
}

// StartNode starts `goray start --block` with the given flags and waits
// until the node is up.
func (c *Cluster) StartNode(o NodeOptions) *Node {
	c.t.Helper()
	if o.CPUs == 0 {
		o.CPUs = 1
	}
	os.MkdirAll(c.TempRoot+"-nodes", 0o755)
	dir, err := os.MkdirTemp(c.TempRoot+"-nodes", "")
	if err != nil {
		c.t.Fatal(err)
	}
	ready := filepath.Join(dir, "ready.json")
	logPath := filepath.Join(dir, "node.log")
	logf, err := os.Create(logPath)
	if err != nil {
		c.t.Fatal(err)
	}
	defer logf.Close()
	args := append([]string{"start", "--block", "--node-ip-address=127.0.0.1", "--dashboard-agent-listen-port=0",
		"--num-cpus=" + strconv.FormatFloat(o.CPUs, 'f', -1, 64), "--memory=1073741824", "--object-store-memory=536870912"}, o.Flags...)
	cmd := exec.Command(c.Bin, args...)
	cmd.Env = append(c.Env(), "GORAY_START_READY_FILE="+ready)
	cmd.Env = append(cmd.Env, o.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	n := &Node{cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() { cmd.Wait(); close(n.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(ready); err == nil && json.Valid(b) {
			var res struct {
				Error string `json:"error"`
				node.Info
			}
			json.Unmarshal(b, &res)
			if res.Error != "" {
				c.t.Fatalf("testcluster: node failed to start: %s", res.Error)
			}
			n.Info = res.Info
			return n
		}
		select {
		case <-n.done:
			b, _ := os.ReadFile(logPath)
			c.t.Fatalf("testcluster: node exited during start (%v):\n%s", args, b)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("testcluster: node not up within 30s (%v)", args)
		}
	}
}

// Kill SIGKILLs the node process (its workers exit once their raylet is gone).
func (n *Node) Kill() {
	n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.done
}

// Stop SIGTERMs the node and waits for it to exit.
func (n *Node) Stop() {
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(20 * time.Second):
		n.Kill()
	}
}

// Exited is closed when the node process has exited.
func (n *Node) Exited() <-chan struct{} { return n.done }

// Log returns what the node process printed.
func (n *Node) Log() string {
	b, _ := os.ReadFile(n.log)
	return string(b)
}

// Stop stops every node, workers first. A data race a node reported
// (GORAY_TEST_RACE builds) fails the test.
func (c *Cluster) Stop() {
	nodes := append([]*Node{}, c.Workers...)
	if c.Head != nil {
		nodes = append(nodes, c.Head)
	}
	for _, n := range nodes {
		n.Stop()
		if log := n.Log(); strings.Contains(log, "WARNING: DATA RACE") {
			c.t.Errorf("node %s reported a data race:\n%s", n.Info.NodeID, log)
		}
	}
	if c.t.Failed() && c.Head != nil {
		c.t.Logf("head log:\n%s", c.Head.Log())
	}
}

// Goray runs the goray CLI against the cluster and returns its stdout;
// stderr is in the error.
func (c *Cluster) Goray(args ...string) (string, error) {
	cmd := exec.Command(c.Bin, args...)
	cmd.Env = c.Env()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("goray %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

// GCS returns a client of the head's GCS, authenticated with the
// cluster's token; it is closed when the test ends.
func (c *Cluster) GCS() rpcpb.GcsServiceClient {
	conn, err := grpc.NewClient(c.Address, append(auth.DialOptions(c.Token), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { conn.Close() })
	return rpcpb.NewGcsServiceClient(conn)
}

// Eventually polls cond every 20ms until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var (
	imageOnce sync.Once
	imageID   string
	imageErr  error
)

// DockerImage builds the goray container image with deploy/image/build.sh
// once per test process (the script skips the build when an image of this
// code exists) and returns its ID.
func DockerImage(t testing.TB) string {
	t.Helper()
	imageOnce.Do(func() {
		root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
		if err != nil {
			imageErr = fmt.Errorf("find the module root: %v", err)
			return
		}
		dir := strings.TrimSpace(string(root))
		cmd := exec.Command("bash", filepath.Join(dir, "deploy/image/build.sh"))
		cmd.Dir = dir
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			imageErr = fmt.Errorf("deploy/image/build.sh: %v\n%s", err, stderr.String())
			return
		}
		f := strings.Fields(string(out))
		if len(f) == 0 || !strings.HasPrefix(f[len(f)-1], "sha256:") {
			imageErr = fmt.Errorf("deploy/image/build.sh printed no image ID: %q\n%s", out, stderr.String())
			return
		}
		imageID = f[len(f)-1]
	})
	if imageErr != nil {
		t.Fatalf("testcluster: %v", imageErr)
	}
	return imageID
}

// SyncBuffer collects output that processes or goroutines write while a
// test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
