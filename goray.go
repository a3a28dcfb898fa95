// Package goray runs Go functions as tasks on a goray cluster, Ray's model
// in Go: register functions, call them remotely to get ObjectRefs, and Get
// their results.
//
// A goray program is both the driver and the worker: the cluster's raylets
// start the program's own binary in worker mode, where Init serves tasks
// instead of returning. Register every remote function at package level
// (var f = goray.Register1(...)) and call Init first thing in main.
package goray

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/client"
	"github.com/goray/goray/internal/core"
	"github.com/goray/goray/internal/gcs"
	"github.com/goray/goray/internal/jobs/runtimeenv"
	"github.com/goray/goray/internal/node"
	"github.com/goray/goray/internal/version"
	"github.com/goray/goray/proto/rpcpb"
)

// Version is the goray version this program is built with.
func Version() string { return version.Version }

// runtime is the connection of this process to its cluster.
type runtime struct {
	be        backend
	cw        *core.CoreWorker // without Ray Client
	conn      *client.Conn     // with Ray Client (goray:// addresses)
	jobID     string
	namespace string     // for named actors
	local     *node.Node // a cluster Init started for this driver alone
	worker    bool
}

var (
	rtMu sync.Mutex
	rt   *runtime
)

func current() (*runtime, error) {
	rtMu.Lock()
	defer rtMu.Unlock()
	if rt == nil {
		return nil, core.ErrShutdown
	}
	return rt, nil
}

// InitOption configures Init.
type InitOption func(*initConfig)

type initConfig struct {
	address   string
	numCPUs   float64
	numGPUs   float64
	logTo     io.Writer
	tempRoot  string
	newLocal  bool
	namespace string
	grace     time.Duration
	keepalive time.Duration
}

// Namespace sets the job's namespace for named actors (default: an
// anonymous namespace of this job, as in Ray).
func Namespace(ns string) InitOption { return func(c *initConfig) { c.namespace = ns } }

// NewLocalCluster makes Init start a cluster of its own in this process,
// even when a cluster is reachable (microbenchmarks, tests).
func NewLocalCluster() InitOption { return func(c *initConfig) { c.newLocal = true } }

// TempDir sets the temp root Init looks in and starts a local cluster under.
func TempDir(dir string) InitOption { return func(c *initConfig) { c.tempRoot = dir } }

// Address connects to the cluster whose GCS is at host:port ("auto" means
// the cluster started on this host with goray start).
func Address(addr string) InitOption { return func(c *initConfig) { c.address = addr } }

// LocalCPUs sets the CPUs of the local cluster Init starts when there is
// no cluster to join (default: detected).
func LocalCPUs(n float64) InitOption { return func(c *initConfig) { c.numCPUs = n } }

// LocalGPUs sets the GPUs of the local cluster Init starts (default: detected).
func LocalGPUs(n float64) InitOption { return func(c *initConfig) { c.numGPUs = n } }

// LogOutput sets where worker output is printed (default os.Stderr).
func LogOutput(w io.Writer) InitOption { return func(c *initConfig) { c.logTo = w } }

// ClientReconnectGracePeriod sets, for a goray:// (Ray Client) address,
// how long a broken connection may take to come back before the session is
// lost (default: GORAY_CLIENT_RECONNECT_GRACE_PERIOD or
// RAY_CLIENT_RECONNECT_GRACE_PERIOD in seconds, else 30 s). Past it the
// cluster releases the session's objects and actors and calls fail with
// ErrClientSessionLost.
func ClientReconnectGracePeriod(d time.Duration) InitOption {
	return func(c *initConfig) { c.grace = d }
}

// ClientKeepalive sets, for a goray:// address, after how long an idle
// connection is pinged so that nothing on the way drops it (default 30 s;
// at least 10 s).
func ClientKeepalive(d time.Duration) InitOption {
	return func(c *initConfig) { c.keepalive = d }
}

// IsWorker reports whether this process was started by a raylet as a worker.
func IsWorker() bool { return os.Getenv("GORAY_WORKER_MODE") == "1" }

// Init connects this program to a cluster, like ray.init(): the address
// given, else GORAY_ADDRESS or RAY_ADDRESS, else the cluster started on
// this host with `goray start`, else a new single-node cluster in this
// process that Shutdown stops. In a worker process Init serves tasks and
// never returns.
//
// An address goray://HOST:PORT (or ray://) connects through the head's
// client server (Ray Client, port 10001 by default): the program needs to
// reach only that port, the head runs a driver session on its behalf, and
// the program's executable is uploaded so the cluster's workers run its
// functions (so it must be built for the cluster's OS and architecture).
func Init(opts ...InitOption) error {
	if IsWorker() {
		runWorker()
	}
	cfg := initConfig{numCPUs: -1, numGPUs: -1, logTo: os.Stderr}
	for _, o := range opts {
		o(&cfg)
	}
	rtMu.Lock()
	defer rtMu.Unlock()
	if rt != nil {
		return errors.New("goray: Init called twice")
	}
	addr := cfg.address
	if addr == "" && !cfg.newLocal {
		addr = os.Getenv("GORAY_ADDRESS")
	}
	if addr == "" && !cfg.newLocal {
		addr = os.Getenv("RAY_ADDRESS")
	}
	if strings.HasPrefix(addr, "http://") || strings.HasPrefix(addr, "https://") {
		return fmt.Errorf("goray: address %q is a dashboard URL; Init needs the GCS address HOST:PORT (port 6379 by default) or the client server goray://HOST:PORT (10001)", addr)
	}
	if rest, ok, err := client.ParseAddress(addr); ok {
		if err != nil {
			return err
		}
		r, err := connectClient(rest, cfg)
		if err != nil {
			return err
		}
		rt = r
		return nil
	}
	root := node.TempRoot(cfg.tempRoot)
	if (addr == "" && !cfg.newLocal) || addr == "auto" {
		b, err := os.ReadFile(filepath.Join(root, node.CurrentClusterFile))
		found := err == nil && reachable(strings.TrimSpace(string(b)))
		switch {
		case found:
			addr = strings.TrimSpace(string(b))
		case addr == "auto":
			return fmt.Errorf("goray: no running cluster found under %s (start one with goray start --head)", root)
		}
	}
	var token string
	if !auth.Disabled() {
		t, _, ok, err := auth.LookupToken()
		if err != nil {
			return err
		}
		if ok {
			token = t
		}
	}
	r := &runtime{}
	if addr == "" {
		// No cluster: start one in this process, with a token of its own.
		if !auth.Disabled() {
			t, err := auth.Generate()
			if err != nil {
				return err
			}
			token = t
		}
		n, err := node.Start(node.Config{Head: true, Private: true, NodeIP: "127.0.0.1", Port: 0, NumCPUs: cfg.numCPUs, NumGPUs: cfg.numGPUs, TempRoot: root, Token: token})
		if err != nil {
			return fmt.Errorf("goray: start local cluster: %w", err)
		}
		r.local = n
		addr = n.Info.GCSAddress
	} else if !auth.Disabled() && token == "" {
		return errors.New("goray: no auth token: set GORAY_AUTH_TOKEN (see goray get-auth-token on the head) or GORAY_AUTH_MODE=disabled")
	}
	if err := r.connectDriver(addr, token, cfg.logTo, cfg.namespace); err != nil {
		if r.local != nil {
			r.local.Stop()
		}
		return err
	}
	rt = r
	return nil
}

// connectClient opens a Ray Client session with the client server at addr.
func connectClient(addr string, cfg initConfig) (*runtime, error) {
	if cfg.keepalive < 0 {
		return nil, fmt.Errorf("goray: ClientKeepalive(%s): want a positive duration (default %s)", cfg.keepalive, client.DefaultKeepalive)
	}
	if cfg.grace < 0 {
		return nil, fmt.Errorf("goray: ClientReconnectGracePeriod(%s): want a positive duration (default %s, at most %s)", cfg.grace, client.DefaultGrace, client.MaxGrace)
	}
	var token string
	if !auth.Disabled() {
		t, _, ok, err := auth.LookupToken()
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, errors.New("goray: no auth token: set GORAY_AUTH_TOKEN (see goray get-auth-token on the head) or GORAY_AUTH_MODE=disabled")
		}
		token = t
	}
	grace := min(cfg.grace, client.MaxGrace)
	if grace == 0 {
		g, err := client.GraceFromEnv()
		if err != nil {
			return nil, err
		}
		grace = g
	}
	host, _ := os.Hostname()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.DialConfig{
		Address: addr, Token: token, Namespace: cfg.namespace, Grace: grace, Keepalive: cfg.keepalive,
		LogOutput: cfg.logTo, Entrypoint: strings.Join(os.Args, " "), JobEnv: driverEnv(host),
	})
	if err != nil {
		return nil, err
	}
	return &runtime{be: clientBackend{c}, conn: c, jobID: c.JobID, namespace: c.Namespace}, nil
}

func reachable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// connectDriver registers this program as a driver (a job) and uploads its
// executable for the cluster's workers.
func (r *runtime) connectDriver(addr, token string, logTo io.Writer, namespace string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := grpc.NewClient(addr, append(auth.DialOptions(token), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		return fmt.Errorf("goray: cluster address %q: %w", addr, err)
	}
	defer conn.Close()
	gcs := rpcpb.NewGcsServiceClient(conn)
	nodes, err := gcs.GetAllNodes(ctx, &rpcpb.Empty{})
	if err != nil {
		err = client.NotGCSHint(addr, err)
		return fmt.Errorf("goray: connect to GCS at %s: %s", addr, status.Convert(err).Message())
	}
	local := pickLocalNode(nodes.Nodes)
	if local == nil {
		return fmt.Errorf("goray: the cluster at %s has no alive node", addr)
	}
	hash, err := uploadSelf(ctx, gcs)
	if err != nil {
		return err
	}
	cw, err := core.Start(core.Config{
		GCSAddress: addr, RayletAddress: local.RayletAddress, NodeID: local.NodeId, NodeIP: local.NodeIp,
		Token: token, Functions: lookup, Actors: lookupActor,
	})
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	job, err := cw.GCS().AddJob(ctx, &rpcpb.JobInfo{
		DriverAddress: cw.Address(), DriverIp: local.NodeIp, DriverPid: int64(os.Getpid()),
		BinaryHash: hash, Version: version.Version, Entrypoint: strings.Join(os.Args, " "),
		Env: driverEnv(host), Namespace: namespace,
	})
	if err != nil {
		cw.Stop()
		return fmt.Errorf("goray: register driver: %s", status.Convert(err).Message())
	}
	cw.SetJob(job.JobId)
	r.cw, r.be, r.jobID, r.namespace = cw, localBackend{cw}, job.JobId, job.Namespace
	go cw.PrintLogs(job.JobId, logTo)
	return nil
}

// driverEnv is the driver's JobInfo.Env: with the config a job supervisor
// passes (submission id, working_dir, env_vars), so the job's workers get them.
func driverEnv(host string) map[string]string {
	env := runtimeenv.DriverEnv(os.Getenv(runtimeenv.EnvJobConfig))
	if env == nil {
		env = map[string]string{}
	}
	env["GORAY_DRIVER_HOST"] = host
	return env
}

// pickLocalNode prefers an alive node on this host (the head first), as
// a Ray driver uses its host's raylet; else the head.
func pickLocalNode(nodes []*rpcpb.NodeInfo) *rpcpb.NodeInfo {
	localIPs := map[string]bool{}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				localIPs[ipn.IP.String()] = true
			}
		}
	}
	var best *rpcpb.NodeInfo
	score := func(n *rpcpb.NodeInfo) int {
		s := 0
		if localIPs[n.NodeIp] {
			s += 2
		}
		if n.IsHead {
			s++
		}
		return s
	}
	for _, n := range nodes {
		if n.State != rpcpb.NodeState_ALIVE {
			continue
		}
		if best == nil || score(n) > score(best) {
			best = n
		}
	}
	return best
}

// uploadSelf stores this executable in the cluster's package store under
// its SHA-256 unless it is there already.
func uploadSelf(ctx context.Context, client rpcpb.GcsServiceClient) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("goray: find own executable: %w", err)
	}
	hash, err := gcs.StoreFile(ctx, client, exe)
	if err != nil {
		return "", fmt.Errorf("goray: upload own executable: %w", err)
	}
	return hash, nil
}

// runWorker serves tasks for the raylet that started this process and
// exits when that raylet goes away.
func runWorker() {
	cw, err := core.Start(core.Config{
		GCSAddress: os.Getenv("GORAY_ADDRESS"), RayletAddress: os.Getenv("GORAY_RAYLET_ADDRESS"),
		NodeID: os.Getenv("GORAY_NODE_ID"), NodeIP: os.Getenv("GORAY_NODE_IP"),
		Token: os.Getenv("GORAY_AUTH_TOKEN"), IsWorker: true, WorkerID: os.Getenv("GORAY_WORKER_ID"),
		JobID: os.Getenv("GORAY_JOB_ID"), Functions: lookup, Actors: lookupActor,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "goray worker:", err)
		os.Exit(1)
	}
	rtMu.Lock()
	rt = &runtime{cw: cw, be: localBackend{cw}, jobID: os.Getenv("GORAY_JOB_ID"), namespace: os.Getenv("GORAY_NAMESPACE"), worker: true}
	rtMu.Unlock()
	err = cw.ServeWorker()
	fmt.Fprintln(os.Stderr, "goray worker exiting:", err)
	os.Exit(0)
}

// Shutdown disconnects the driver: its job is marked finished (its workers
// end) and a cluster Init started is stopped.
func Shutdown() {
	rtMu.Lock()
	r := rt
	rt = nil
	rtMu.Unlock()
	if r == nil || r.worker {
		return
	}
	if r.conn != nil {
		r.conn.Close() // the session's job finishes on the head
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	r.cw.GCS().MarkJobFinished(ctx, &rpcpb.JobID{JobId: r.jobID})
	cancel()
	r.cw.Stop()
	if r.local != nil {
		r.local.Stop()
	}
}

// NodeID returns the id of the node this process runs on.
func NodeID() string {
	r, err := current()
	if err != nil {
		return ""
	}
	return r.be.nodeID()
}

// JobID returns the id of the job this process belongs to.
func JobID() string {
	r, err := current()
	if err != nil {
		return ""
	}
	return r.jobID
}
