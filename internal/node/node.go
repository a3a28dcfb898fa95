// Package node assembles one goray node process: on the head the GCS, its
// dashboard HTTP server and a raylet; on a worker node a raylet. Both get
// the node's HTTP agent and a session directory under the temp root.
package node

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/goray/goray/internal/auth"
	"golang.org/x/sys/unix"

	"github.com/goray/goray/internal/autoscaler"
	"github.com/goray/goray/internal/client"
	"github.com/goray/goray/internal/clusterconfig"
	"github.com/goray/goray/internal/gcs"
	"github.com/goray/goray/internal/jobs"
	"github.com/goray/goray/internal/object"
	"github.com/goray/goray/internal/provider"
	"github.com/goray/goray/internal/raylet"
	"github.com/goray/goray/internal/version"
	"github.com/goray/goray/proto/rpcpb"
)

// Defaults that follow Ray.
const (
	DefaultGCSPort       = 6379
	DefaultDashboardPort = 8265
	DefaultAgentPort     = 52365
	DefaultTempRoot      = "/tmp/goray"
	// CurrentClusterFile, under the temp root, holds the GCS address of the
	// head started on this host (Ray's ray_current_cluster).
	CurrentClusterFile = "goray_current_cluster"
	// InfoFile, in a session directory, records the node's process.
	InfoFile = "node.json"
)

// Config configures a node. Zero values mean "detect" or "default".
type Config struct {
	Head    bool
	Address string // GCS address to join (worker nodes)
	NodeIP  string

	// Ports: a Set flag means the user asked for that port explicitly, so
	// it is an error when taken; otherwise a taken default falls back to a
	// free port (the GCS port never falls back).
	Port             int
	DashboardHost    string
	DashboardPort    int
	DashboardPortSet bool
	AgentPort        int
	AgentPortSet     bool
	// The head's client server (Ray Client): port 0 = a free one; host
	// "" = the node IP.
	ClientServerPort    int
	ClientServerPortSet bool
	ClientServerHost    string
	// MetricsPort serves Prometheus metrics (--metrics-export-port; 0 = a
	// free port) through Metrics, which the CLI sets (internal/metrics);
	// nil serves none, so the library links no Prometheus client.
	MetricsPort    int
	MetricsPortSet bool
	Metrics        func(*Node) http.Handler

	NumCPUs           float64 // <0: detect
	NumGPUs           float64 // <0: detect
	Memory            int64   // 0: detect
	ObjectStoreMemory int64   // 0: 30% of memory
	Resources         map[string]float64
	Labels            map[string]string

	TempRoot       string
	GCSStoragePath string
	// ObjectSpillingDir holds spilled objects (default: the session's
	// spill directory); the node uses a subdirectory of its own.
	ObjectSpillingDir string
	// Private nodes (a driver's own cluster) are not recorded as this
	// host's current cluster.
	Private bool
	Token   string // "" = authentication disabled

	HealthCheckPeriod   time.Duration
	HealthCheckTimeout  time.Duration
	FailureThreshold    int
	WorkerIdleTimeout   time.Duration
	GCSReconnectTimeout time.Duration
	Logger              *slog.Logger
	// LogFile, when Logger is nil, is the file under <session>/logs the
	// node logs to (the CLI: goray.log, Ray's gcs_server.out and raylet.out
	// in one); "" discards the log.
	LogFile string
	// Jobs adjusts the head's job manager settings (tests).
	Jobs func(*jobs.Config)
	// Autoscaling, on the head, starts the autoscaler with this cluster
	// config (--autoscaling-config).
	Autoscaling *clusterconfig.Config
	// NewProvider builds the autoscaler's node provider (registry.New in
	// the CLI; the library links no providers).
	NewProvider func(*clusterconfig.Config, provider.Params, provider.Host) (provider.NodeProvider, error)
	// AutoscalingPath is the file Autoscaling came from; the autoscaler
	// rereads it when it changes, as Ray's monitor does each round, and
	// ValidateProvider checks a new version against the provider.
	AutoscalingPath  string
	ValidateProvider func(*clusterconfig.Config) error
	// InstanceID and NodeType name the node for the autoscaler (default:
	// $GORAY_CLOUD_INSTANCE_ID / $RAY_CLOUD_INSTANCE_ID and
	// $GORAY_NODE_TYPE_NAME / $RAY_NODE_TYPE_NAME; on the head, its
	// head_node_type).
	InstanceID, NodeType string
}

// Info is what a started node records in its session directory and prints.
type Info struct {
	PID              int                `json:"pid"`
	NodeID           string             `json:"node_id"`
	NodeIP           string             `json:"node_ip"`
	Head             bool               `json:"head"`
	GCSAddress       string             `json:"gcs_address"`
	RayletAddress    string             `json:"raylet_address"`
	AgentAddress     string             `json:"agent_address"`
	DashboardAddress string             `json:"dashboard_address,omitempty"`
	ClientAddress    string             `json:"client_server_address,omitempty"`
	MetricsAddress   string             `json:"metrics_export_address,omitempty"`
	SessionDir       string             `json:"session_dir"`
	Resources        map[string]float64 `json:"resources"`
	// ProviderType and ClusterName name the node provider of a head's
	// autoscaler whose cluster-wide resources (a Docker network and
	// containers) `goray stop` removes even if the head died without
	// doing so; unset for a head that is itself a provider's node.
	ProviderType string `json:"provider_type,omitempty"`
	ClusterName  string `json:"cluster_name,omitempty"`
}

// Node is a running node.
type Node struct {
	Info   Info
	GCS    *gcs.Server
	Raylet *raylet.Raylet
	https  []*http.Server
	cfg    Config

	jobsConn   *grpc.ClientConn // the job manager's and supervisor's GCS client
	jobs       *jobs.Manager
	supervisor *jobs.Supervisor
	// storeDirs are the object store's directories, removed at Stop.
	storeDirs []string

	client     *client.Server
	autoscaler *autoscaler.Autoscaler
	provider   provider.NodeProvider
	monitorLog *os.File
	logFile    *os.File // LogFile, closed last by Stop
}

// TempRoot resolves the temp root: flag, else GORAY_TEMP, else /tmp/goray.
func TempRoot(flag string) string {
	if flag != "" {
		return flag
	}
	if v := os.Getenv("GORAY_TEMP"); v != "" {
		return v
	}
	return DefaultTempRoot
}

func listen(host string, port int, explicit bool, what, flag string) (net.Listener, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err == nil {
		return ln, nil
	}
	if !explicit && port != 0 && errors.Is(err, syscall.EADDRINUSE) {
		return net.Listen("tcp", net.JoinHostPort(host, "0"))
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("node: port %d (%s, %s) is already in use on %s", port, what, flag, host)
	}
	return nil, fmt.Errorf("node: listen for %s on %s:%d: %w", what, host, port, err)
}

// bindHost is where the GCS, the client server and the dashboard agent
// listen. As Ray's, they take every interface unless the node is on
// loopback: in a pod, KubeRay's probes and the head's own RAY_ADDRESS ask
// 127.0.0.1 or localhost while the node advertises the pod IP.
func bindHost(nodeIP string) string {
	if ip := net.ParseIP(nodeIP); ip != nil && ip.IsLoopback() {
		return nodeIP
	}
	return "0.0.0.0"
}

// advertised is the address others reach a listener at: the node IP when it
// listens on every interface.
func advertised(nodeIP string, ln net.Listener) string {
	a := ln.Addr().(*net.TCPAddr)
	if a.IP.IsUnspecified() {
		return net.JoinHostPort(nodeIP, strconv.Itoa(a.Port))
	}
	return a.String()
}

// DetectNodeIP picks the address a node advertises: the local address of
// the route toward the head, else the primary interface's address.
func DetectNodeIP(headAddress string) string {
	if headAddress != "" {
		if c, err := net.Dial("udp", headAddress); err == nil {
			defer c.Close()
			return c.LocalAddr().(*net.UDPAddr).IP.String()
		}
	}
	ifaces, _ := net.Interfaces()
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				return ipn.IP.String()
			}
		}
	}
	return "127.0.0.1"
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

func envDuration(names []string, def time.Duration) time.Duration {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			if ms, err := strconv.Atoi(v); err == nil && ms > 0 {
				return time.Duration(ms) * time.Millisecond
			}
		}
	}
	return def
}

func envInt(names []string, def int) int {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			if i, err := strconv.Atoi(v); err == nil && i > 0 {
				return i
			}
		}
	}
	return def
}

// ApplyEnv fills unset health-check and worker settings from Ray's config
// overrides (RAY_health_check_period_ms, ...; GORAY_ prefixes too).
func (c *Config) ApplyEnv() {
	def := gcs.DefaultConfig()
	if c.HealthCheckPeriod == 0 {
		c.HealthCheckPeriod = envDuration([]string{"GORAY_health_check_period_ms", "RAY_health_check_period_ms"}, def.HealthCheckPeriod)
	}
	if c.HealthCheckTimeout == 0 {
		c.HealthCheckTimeout = envDuration([]string{"GORAY_health_check_timeout_ms", "RAY_health_check_timeout_ms"}, def.HealthCheckTimeout)
	}
	if c.FailureThreshold == 0 {
		c.FailureThreshold = envInt([]string{"GORAY_health_check_failure_threshold", "RAY_health_check_failure_threshold"}, def.FailureThreshold)
	}
	if c.GCSReconnectTimeout == 0 {
		c.GCSReconnectTimeout = envDuration([]string{"GORAY_gcs_rpc_server_reconnect_timeout_ms"}, 60*time.Second)
	}
	if c.WorkerIdleTimeout == 0 {
		c.WorkerIdleTimeout = envDuration([]string{"GORAY_worker_idle_timeout_ms"}, 60*time.Second)
	}
}

// Start starts the node and returns once it is registered and serving.
func Start(cfg Config) (*Node, error) {
	cfg.ApplyEnv()
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if !cfg.Head && cfg.Address == "" {
		return nil, errors.New("node: a worker node needs --address of the head's GCS")
	}
	if cfg.NodeIP == "" {
		cfg.NodeIP = DetectNodeIP(cfg.Address)
	}
	if net.ParseIP(cfg.NodeIP) == nil {
		return nil, fmt.Errorf("node: --node-ip-address %q is not an IP address", cfg.NodeIP)
	}
	cfg.TempRoot = TempRoot(cfg.TempRoot)
	if cfg.InstanceID == "" {
		cfg.InstanceID = firstEnv(provider.EnvInstanceID, "RAY_CLOUD_INSTANCE_ID")
	}
	if cfg.NodeType == "" {
		cfg.NodeType = firstEnv(provider.EnvNodeTypeName, "RAY_NODE_TYPE_NAME")
	}
	if cfg.NodeType == "" && cfg.Autoscaling != nil {
		cfg.NodeType = cfg.Autoscaling.HeadNodeType
	}
	res, err := resources(cfg)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	session := filepath.Join(cfg.TempRoot, fmt.Sprintf("session_%s_%06d_%d", now.Format("2006-01-02_15-04-05"), now.Nanosecond()/1000, os.Getpid()))
	if err := os.MkdirAll(filepath.Join(session, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("node: session directory: %w", err)
	}
	n := &Node{cfg: cfg, Info: Info{PID: os.Getpid(), NodeIP: cfg.NodeIP, Head: cfg.Head, SessionDir: session, Resources: res}}
	ok := false
	defer func() {
		if !ok {
			n.Stop()
			os.RemoveAll(session) // a node that never started leaves nothing
		}
	}()
	if cfg.Logger == nil && cfg.LogFile != "" {
		f, err := os.OpenFile(filepath.Join(session, "logs", cfg.LogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("node: log file: %w", err)
		}
		n.logFile = f
		log = slog.New(slog.NewTextHandler(f, nil))
	}

	if cfg.Head {
		port := cfg.Port
		ln, err := listen(bindHost(cfg.NodeIP), port, true, "GCS", "--port")
		if err != nil {
			return nil, err
		}
		n.Info.GCSAddress = advertised(cfg.NodeIP, ln)
		n.GCS, err = gcs.Start(gcs.Config{
			Listener: ln, StoragePath: cfg.GCSStoragePath, BinaryDir: binaryDir(cfg, session),
			Token: cfg.Token, HealthCheckPeriod: cfg.HealthCheckPeriod, HealthCheckTimeout: cfg.HealthCheckTimeout,
			FailureThreshold: cfg.FailureThreshold, Logger: log,
		})
		if err != nil {
			ln.Close()
			return nil, err
		}
		host := cfg.DashboardHost
		if host == "" {
			host = "127.0.0.1"
		}
		dln, err := listen(host, cfg.DashboardPort, cfg.DashboardPortSet, "dashboard", "--dashboard-port")
		if err != nil {
			return nil, err
		}
		n.Info.DashboardAddress = advertised(cfg.NodeIP, dln)
		if err := n.startJobManager(session, log); err != nil {
			dln.Close()
			return nil, err
		}
		n.serve(dln, n.dashboardHandler())
	} else {
		n.Info.GCSAddress = cfg.Address
	}

	aln, err := listen(bindHost(cfg.NodeIP), cfg.AgentPort, cfg.AgentPortSet, "dashboard agent", "--dashboard-agent-listen-port")
	if err != nil {
		return nil, err
	}
	n.Info.AgentAddress = advertised(cfg.NodeIP, aln)
	rln, err := net.Listen("tcp", net.JoinHostPort(cfg.NodeIP, "0"))
	if err != nil {
		aln.Close()
		return nil, fmt.Errorf("node: raylet listener: %w", err)
	}
	n.Info.RayletAddress = rln.Addr().String()
	n.Info.NodeID = newNodeID()
	storeCfg, err := objectStoreConfig(cfg, session, int64(res["object_store_memory"]))
	if err != nil {
		aln.Close()
		rln.Close()
		return nil, err
	}
	n.Raylet, err = raylet.Start(raylet.Config{
		NodeID: n.Info.NodeID, NodeIP: cfg.NodeIP, NodeName: cfg.NodeIP, IsHead: cfg.Head,
		Listener: rln, Address: n.Info.RayletAddress, AgentAddr: n.Info.AgentAddress,
		GCSAddress: n.Info.GCSAddress, Token: cfg.Token, Resources: res, Labels: cfg.Labels,
		InstanceID: cfg.InstanceID, NodeType: cfg.NodeType, EntrypointDemands: n.entrypointDemands(),
		SessionDir: session, TempRoot: cfg.TempRoot, ReportPeriod: 100 * time.Millisecond, ObjectStore: storeCfg,
		WorkerIdleTimeout: cfg.WorkerIdleTimeout, WorkerRegisterTimeout: 60 * time.Second, GCSReconnectTimeout: cfg.GCSReconnectTimeout, Logger: log,
	})
	if err != nil {
		aln.Close()
		return nil, err
	}
	if err := n.startSupervisor(session, log); err != nil {
		aln.Close()
		return nil, err
	}
	n.serve(aln, n.agentHandler())
	if cfg.Metrics != nil {
		mln, err := listen(bindHost(cfg.NodeIP), cfg.MetricsPort, cfg.MetricsPortSet, "metrics", "--metrics-export-port")
		if err != nil {
			return nil, err
		}
		n.Info.MetricsAddress = advertised(cfg.NodeIP, mln)
		n.serve(mln, auth.Middleware(cfg.Token, cfg.Metrics(n)))
	}
	n.storeDirs = []string{storeCfg.Dir, storeCfg.SpillDir}
	if cfg.Head {
		if err := n.startClientServer(log); err != nil {
			return nil, err
		}
	}
	if cfg.Head && cfg.Autoscaling != nil {
		if err := n.startAutoscaler(session); err != nil {
			return nil, err
		}
	}

	if cfg.Head && cfg.Autoscaling != nil && cfg.InstanceID == "" {
		n.Info.ProviderType, n.Info.ClusterName = cfg.Autoscaling.Provider.Type, cfg.Autoscaling.ClusterName
	}
	b, _ := json.MarshalIndent(n.Info, "", "  ")
	if err := os.WriteFile(filepath.Join(session, InfoFile), b, 0o644); err != nil {
		return nil, fmt.Errorf("node: write %s: %w", InfoFile, err)
	}
	if cfg.Head && !cfg.Private {
		os.WriteFile(filepath.Join(cfg.TempRoot, CurrentClusterFile), []byte(n.Info.GCSAddress+"\n"), 0o644)
		latest := filepath.Join(cfg.TempRoot, "session_latest")
		os.Remove(latest)
		os.Symlink(session, latest)
	}
	log.Info("node started", "node", n.Info.NodeID, "ip", n.Info.NodeIP, "head", n.Info.Head, "gcs", n.Info.GCSAddress,
		"raylet", n.Info.RayletAddress, "agent", n.Info.AgentAddress, "metrics", n.Info.MetricsAddress, "resources", n.Info.Resources)
	ok = true
	return n, nil
}

// startClientServer serves Ray Client sessions on the head; a session's
// driver leases workers through the head's raylet.
func (n *Node) startClientServer(log *slog.Logger) error {
	host := n.cfg.ClientServerHost
	if host == "" {
		host = bindHost(n.cfg.NodeIP)
	}
	ln, err := listen(host, n.cfg.ClientServerPort, n.cfg.ClientServerPortSet, "client server", "--ray-client-server-port")
	if err != nil {
		return err
	}
	n.client, err = client.Start(client.Config{
		Listener: ln, GCSAddress: n.Info.GCSAddress, RayletAddress: n.Info.RayletAddress, NodeID: n.Info.NodeID,
		NodeIP: n.cfg.NodeIP, Token: n.cfg.Token, DashboardAddress: n.Info.DashboardAddress, Logger: log,
	})
	if err != nil {
		ln.Close()
		return err
	}
	n.Info.ClientAddress = advertised(n.cfg.NodeIP, ln)
	return nil
}

// binaryDir is where the GCS keeps driver binaries and working_dir
// packages: with the GCS tables when they persist, so a restarted head
// still serves what its KV points to.
func binaryDir(cfg Config, session string) string {
	if cfg.GCSStoragePath != "" {
		return filepath.Join(cfg.GCSStoragePath, "binaries")
	}
	return filepath.Join(session, "gcs_binaries")
}

// objectStoreConfig places the node's object store: files in /dev/shm
// (tmpfs, so workers map them without a copy) when it exists, else in the
// session; spills under --object-spilling-directory or the session. Both
// directories carry the node process's pid, and directories of dead
// processes are removed first, so a killed node's objects do not outlive it.
func objectStoreConfig(cfg Config, session string, capacity int64) (object.Config, error) {
	tag := fmt.Sprintf("goray-%d", os.Getpid())
	shm := filepath.Join(session, "plasma")
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() && unix.Access("/dev/shm", unix.W_OK) == nil {
		removeStale("/dev/shm")
		shm = filepath.Join("/dev/shm", tag)
	}
	spill := filepath.Join(session, "spill")
	if cfg.ObjectSpillingDir != "" {
		if err := os.MkdirAll(cfg.ObjectSpillingDir, 0o755); err != nil {
			return object.Config{}, fmt.Errorf("node: --object-spilling-directory: %w", err)
		}
		removeStale(cfg.ObjectSpillingDir)
		spill = filepath.Join(cfg.ObjectSpillingDir, tag)
	}
	return object.Config{Dir: shm, SpillDir: spill, Capacity: capacity, SpillThreshold: 0.8}, nil
}

// removeStale removes goray-<pid> directories of processes that are gone.
func removeStale(parent string) {
	entries, _ := os.ReadDir(parent)
	for _, e := range entries {
		pid, err := strconv.Atoi(strings.TrimPrefix(e.Name(), "goray-"))
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "goray-") || err != nil || pid <= 0 {
			continue
		}
		if unix.Kill(pid, 0) == unix.ESRCH {
			os.RemoveAll(filepath.Join(parent, e.Name()))
		}
	}
}

func newNodeID() string {
	b := make([]byte, 28)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return fmt.Sprintf("%x", b)
}

// resources builds the node's logical resources (Ray's names).
func resources(cfg Config) (map[string]float64, error) {
	res := map[string]float64{}
	for k, v := range cfg.Resources {
		res[k] = v
	}
	cpus := cfg.NumCPUs
	if cpus < 0 {
		cpus = float64(raylet.DetectCPUs())
	}
	gpus := cfg.NumGPUs
	if gpus < 0 {
		gpus = float64(raylet.DetectGPUs())
	}
	mem := cfg.Memory
	osm := cfg.ObjectStoreMemory
	if mem == 0 {
		avail := raylet.DetectMemory()
		if osm == 0 {
			osm = int64(float64(avail) * 0.3)
		}
		mem = avail - osm
		if mem < 0 {
			mem = 0
		}
	} else if osm == 0 {
		osm = int64(float64(mem) * 0.3)
	}
	if cpus < 0 || gpus < 0 || mem < 0 || osm < 0 {
		return nil, errors.New("node: resource quantities must not be negative")
	}
	res["CPU"] = cpus
	if gpus > 0 {
		res["GPU"] = gpus
	}
	res["memory"] = float64(mem)
	res["object_store_memory"] = float64(osm)
	res["node:"+cfg.NodeIP] = 1
	if cfg.Head {
		res["node:__internal_head__"] = 1
	}
	return res, nil
}

func (n *Node) serve(ln net.Listener, h http.Handler) {
	s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	n.https = append(n.https, s)
	go s.Serve(ln)
}

// entrypointDemands is the head's job manager's waiting entrypoints (nil
// on other nodes).
func (n *Node) entrypointDemands() func() []map[string]float64 {
	if n.jobs == nil {
		return nil
	}
	return n.jobs.PendingDemands
}

// MetricsSnapshot is a node's state for its metrics endpoint.
type MetricsSnapshot struct {
	SessionName string
	// InstanceID is the node's provider id (a pod's name on Kubernetes),
	// else its node id, as Ray's InstanceId label.
	InstanceID string
	// Total and Available are the logical resources in Ray's units
	// (memory and object_store_memory in bytes).
	Total, Available map[string]float64
	// Object store: bytes in memory, capacity, bytes spilled now, and the
	// objects held here (in memory or spilled).
	StoreUsed, StoreCapacity, StoreSpilled int64
	StoreObjects                           int
}

// MetricsSnapshot reads the node's resources and object store.
func (n *Node) MetricsSnapshot() MetricsSnapshot {
	s := MetricsSnapshot{SessionName: filepath.Base(n.Info.SessionDir), InstanceID: n.cfg.InstanceID, Total: n.Info.Resources}
	if s.InstanceID == "" {
		s.InstanceID = n.Info.NodeID
	}
	s.Available, _ = n.Raylet.Snapshot()
	if st, err := n.Raylet.GetObjectStoreStats(context.Background(), nil); err == nil {
		s.StoreUsed, s.StoreCapacity, s.StoreObjects = st.Used, st.Capacity, int(st.NumObjects)
		for _, o := range st.Objects {
			if o.Spilled {
				s.StoreSpilled += o.Size
			}
		}
	}
	return s
}

// agentHandler is the node's HTTP agent: health endpoints need no token.
func (n *Node) agentHandler() http.Handler {
	mux := http.NewServeMux()
	health := func(w http.ResponseWriter, r *http.Request) {
		select {
		case err := <-n.Raylet.Dead():
			http.Error(w, "raylet dead: "+err.Error(), http.StatusServiceUnavailable)
		default:
			fmt.Fprintln(w, "success")
		}
	}
	mux.HandleFunc("GET /api/local_raylet_healthz", health)
	mux.HandleFunc("GET /api/healthz", health)
	jobsMux := http.NewServeMux()
	n.supervisor.Register(jobsMux)
	mux.Handle("/api/job_agent/", auth.Middleware(n.cfg.Token, jobsMux))
	return mux
}

func (n *Node) jobsGCS() (*grpc.ClientConn, error) {
	if n.jobsConn == nil {
		conn, err := grpc.NewClient(n.Info.GCSAddress, append(auth.DialOptions(n.cfg.Token),
			grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))...)
		if err != nil {
			return nil, fmt.Errorf("node: GCS client for jobs: %w", err)
		}
		n.jobsConn = conn
	}
	return n.jobsConn, nil
}

// startJobManager starts the head's job manager (Jobs REST API).
func (n *Node) startJobManager(session string, log *slog.Logger) error {
	conn, err := n.jobsGCS()
	if err != nil {
		return err
	}
	jc := jobs.DefaultConfig()
	jc.GCS, jc.Token, jc.Logger = rpcpb.NewGcsServiceClient(conn), n.cfg.Token, log
	jc.SessionName, jc.DashboardAddress, jc.Version = filepath.Base(session), n.Info.DashboardAddress, version.Version
	jc.TempDir = filepath.Join(session, "uploads")
	if n.cfg.Jobs != nil {
		n.cfg.Jobs(&jc)
	}
	n.jobs, err = jobs.NewManager(jc)
	return err
}

// startSupervisor starts the node's job supervisor (the agent runs the
// entrypoints of the jobs the head hands to this node).
func (n *Node) startSupervisor(session string, log *slog.Logger) error {
	conn, err := n.jobsGCS()
	if err != nil {
		return err
	}
	n.supervisor = jobs.NewSupervisor(jobs.SupervisorConfig{
		NodeID: n.Info.NodeID, NodeIP: n.Info.NodeIP, AgentAddress: n.Info.AgentAddress, GCSAddress: n.Info.GCSAddress,
		RayletAddress: n.Info.RayletAddress,
		GCS:           rpcpb.NewGcsServiceClient(conn), Token: n.cfg.Token, SessionDir: session, Logger: log,
	})
	return nil
}

// dashboardHandler serves the head's HTTP API (health for now).
func (n *Node) dashboardHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/gcs_healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if _, err := n.GCS.GetClusterView(ctx, nil); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "success")
	})
	api := http.NewServeMux()
	n.jobs.Register(api)
	mux.Handle("/", auth.Middleware(n.cfg.Token, api))
	return mux
}

// Stop stops the node: the raylet leaves the cluster cleanly, then the GCS
// stops; the session keeps its logs but drops node.json.
func (n *Node) Stop() {
	n.stopAutoscaler()
	if n.client != nil {
		n.client.Stop()
	}
	if n.supervisor != nil {
		n.supervisor.Close()
	}
	if n.jobs != nil {
		n.jobs.Close()
	}
	if n.Raylet != nil {
		n.Raylet.Unregister("node stopped (SIGTERM or goray stop)")
		n.Raylet.Stop()
	}
	for _, s := range n.https {
		s.Close()
	}
	if n.jobsConn != nil {
		n.jobsConn.Close()
	}
	if n.GCS != nil {
		n.GCS.Stop()
	}
	if n.Info.SessionDir != "" {
		os.Remove(filepath.Join(n.Info.SessionDir, InfoFile))
	}
	if n.storeDirs != nil {
		for _, d := range n.storeDirs {
			os.RemoveAll(d)
		}
	}
	if n.cfg.Head {
		cur := filepath.Join(n.cfg.TempRoot, CurrentClusterFile)
		if b, err := os.ReadFile(cur); err == nil && strings.TrimSpace(string(b)) == n.Info.GCSAddress {
			os.Remove(cur)
		}
	}
	if n.logFile != nil {
		n.logFile.Close()
	}
}
