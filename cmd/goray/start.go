package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/clusterconfig"
	"github.com/goray/goray/internal/metrics"
	"github.com/goray/goray/internal/node"
	"github.com/goray/goray/internal/provider/registry"
	"github.com/goray/goray/internal/raylet"
)

// readyEnv names the file a --block child writes when its node is up.
const readyEnv = "GORAY_START_READY_FILE"

func startCmd() *cobra.Command {
	var (
		head                                    bool
		address, nodeIP, resourcesJSON, labels  string
		port, dashPort, agentPort               int
		numCPUs, numGPUs                        float64
		memory, objectStoreMemory               int64
		dashHost, tempDir, gcsStorage, spillDir string
		block                                   bool
		clientPort, metricsPort                 int
		clientHost                              string
		autoscalingConfig                       string
	)
	cmd := &cobra.Command{
		Use:   "start",
		Short: "Start a head node (--head) or join a worker node (--address=HEAD:PORT)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f := cmd.Flags()
			switch {
			case head && address != "":
				return errors.New("--head and --address exclude each other: a head starts a new cluster")
			case !head && address == "":
				return errors.New("give --head to start a cluster or --address=HEAD:PORT to join one")
			case !head && f.Changed("port"):
				return errors.New("--port is the head's GCS port; a worker node takes --address")
			case address != "" && !validHostPort(address):
				return fmt.Errorf("--address %q: want HOST:PORT of the head's GCS", address)
			case port < 0 || port > 65535:
				return fmt.Errorf("--port %d is not a port number", port)
			case dashPort < 0 || dashPort > 65535:
				return fmt.Errorf("--dashboard-port %d is not a port number", dashPort)
			case clientPort < 0 || clientPort > 65535:
				return fmt.Errorf("--ray-client-server-port %d is not a port number", clientPort)
			case agentPort < 0 || agentPort > 65535:
				return fmt.Errorf("--dashboard-agent-listen-port %d is not a port number", agentPort)
			case metricsPort < 0 || metricsPort > 65535:
				return fmt.Errorf("--metrics-export-port %d is not a port number", metricsPort)
			case f.Changed("num-cpus") && (numCPUs < 0 || math.IsNaN(numCPUs)):
				return fmt.Errorf("--num-cpus %v must not be negative", numCPUs)
			case f.Changed("num-gpus") && (numGPUs < 0 || math.IsNaN(numGPUs)):
				return fmt.Errorf("--num-gpus %v must not be negative", numGPUs)
			case memory < 0:
				return fmt.Errorf("--memory %d must not be negative", memory)
			case objectStoreMemory < 0:
				return fmt.Errorf("--object-store-memory %d must not be negative", objectStoreMemory)
			}
			res, err := raylet.ParseResources(unquoteFlag(resourcesJSON))
			if err != nil {
				return err
			}
			if err := overrideResources(f, res); err != nil {
				return err
			}
			lbl, err := raylet.ParseLabels(unquoteFlag(labels))
			if err != nil {
				return err
			}
			var scaling *clusterconfig.Config
			if f.Changed("autoscaling-config") && autoscalingConfig == "" {
				return errors.New("--autoscaling-config: empty path; give the cluster YAML file")
			}
			if autoscalingConfig != "" {
				if !head {
					return errors.New("--autoscaling-config is for the head (--head): its autoscaler launches the other nodes")
				}
				if strings.HasPrefix(autoscalingConfig, "~/") { // the shell leaves --flag=~/x alone; Ray expands it
					if home, herr := os.UserHomeDir(); herr == nil {
						autoscalingConfig = filepath.Join(home, autoscalingConfig[2:])
					}
				}
				if scaling, err = clusterconfig.Load(autoscalingConfig); err != nil {
					return err
				}
				if err := registry.Validate(scaling); err != nil {
					return fmt.Errorf("%s: %w", autoscalingConfig, err)
				}
				headTypeDefaults(f, scaling, res, &lbl)
				if nodeIP == "" && block {
					if nodeIP, err = registry.HeadIP(scaling); err != nil {
						return err
					}
				}
			}
			var token string
			if !auth.Disabled() {
				if head {
					token, err = auth.EnsureToken()
				} else {
					token, err = clusterToken()
				}
				if err != nil {
					return err
				}
			}
			cfg := node.Config{
				Head: head, Address: address, NodeIP: nodeIP, Port: port,
				DashboardHost: dashHost, DashboardPort: dashPort, DashboardPortSet: f.Changed("dashboard-port"),
				AgentPort: agentPort, AgentPortSet: f.Changed("dashboard-agent-listen-port"),
				ClientServerPort: clientPort, ClientServerPortSet: f.Changed("ray-client-server-port"), ClientServerHost: clientHost,
				NumCPUs: -1, NumGPUs: -1, Memory: memory, ObjectStoreMemory: objectStoreMemory,
				Resources: res, Labels: lbl, TempRoot: node.TempRoot(tempDir), GCSStoragePath: gcsStorage, Token: token,
				ObjectSpillingDir: spillDir, Autoscaling: scaling, AutoscalingPath: autoscalingConfig,
				NewProvider: registry.New, ValidateProvider: registry.Validate,
				MetricsPort: metricsPort, MetricsPortSet: f.Changed("metrics-export-port"), LogFile: "goray.log",
				Metrics: func(n *node.Node) http.Handler { return metrics.Handler(n) },
			}
			if f.Changed("num-cpus") {
				cfg.NumCPUs = numCPUs
			}
			if f.Changed("num-gpus") {
				cfg.NumGPUs = numGPUs
			}
			return launchNode(cmd, cfg, block)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&head, "head", false, "start the head node (GCS, dashboard, raylet)")
	f.StringVar(&address, "address", "", "GCS address (HEAD:PORT) of the cluster to join")
	f.IntVar(&port, "port", node.DefaultGCSPort, "GCS port of the head")
	f.StringVar(&nodeIP, "node-ip-address", "", "IP address this node advertises (default: route toward the head, or the primary interface)")
	f.Float64Var(&numCPUs, "num-cpus", 0, "logical CPUs (default: detected)")
	f.Float64Var(&numGPUs, "num-gpus", 0, "logical GPUs (default: nvidia-smi -L)")
	f.Int64Var(&memory, "memory", 0, "logical memory in bytes (default: available memory less the object store)")
	f.Int64Var(&objectStoreMemory, "object-store-memory", 0, "object store size in bytes (default: 30% of memory)")
	f.StringVar(&resourcesJSON, "resources", "{}", `custom resources as JSON, e.g. '{"disk": 2}'`)
	f.StringVar(&labels, "labels", "", "node labels: k=v,k2=v2 or JSON")
	f.StringVar(&dashHost, "dashboard-host", "127.0.0.1", "dashboard HTTP host (0.0.0.0 for remote access)")
	f.IntVar(&dashPort, "dashboard-port", node.DefaultDashboardPort, "dashboard HTTP port")
	f.IntVar(&agentPort, "dashboard-agent-listen-port", node.DefaultAgentPort, "node agent HTTP port (health)")
	f.IntVar(&clientPort, "ray-client-server-port", 10001, "Ray Client server port on the head (goray://HEAD:PORT)")
	f.StringVar(&clientHost, "ray-client-server-host", "", "address the client server listens on (default: the node IP; 0.0.0.0 for every interface)")
	f.IntVar(&metricsPort, "metrics-export-port", 0, "Prometheus metrics port, /metrics with the cluster token (default: a free port)")
	f.StringVar(&tempDir, "temp-dir", "", "temp root (default $GORAY_TEMP or /tmp/goray)")
	f.StringVar(&gcsStorage, "gcs-storage-path", "", "persist the GCS tables in this directory and reload them on restart")
	f.StringVar(&spillDir, "object-spilling-directory", "", "where the object store spills (default: the session directory)")
	f.BoolVar(&block, "block", false, "run the node in the foreground")
	f.StringVar(&autoscalingConfig, "autoscaling-config", "", "cluster YAML (Ray's format): the head runs an autoscaler that launches and terminates nodes through its provider")
	rayCompatFlags(f)
	return cmd
}

// launchNode starts the node that startCmd configured; tests replace it to
// see the configuration a command line yields.
var launchNode = func(cmd *cobra.Command, cfg node.Config, block bool) error {
	if block {
		return runBlocking(cmd, cfg)
	}
	return startBackground(cmd, cfg)
}

// runBlocking runs the node in this process until SIGTERM/SIGINT, or until
// the GCS declares it dead.
func runBlocking(cmd *cobra.Command, cfg node.Config) error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	ready := os.Getenv(readyEnv)
	os.Unsetenv(readyEnv) // for this process only, not the nodes an autoscaler starts
	n, err := node.Start(cfg)
	if err != nil {
		if ready != "" {
			os.WriteFile(ready, []byte(`{"error":`+quote(err.Error())+`}`), 0o644)
		}
		return err
	}
	b, _ := json.Marshal(n.Info)
	if ready != "" {
		if err := os.WriteFile(ready, b, 0o644); err != nil {
			n.Stop()
			return err
		}
	} else {
		printStarted(cmd, n.Info)
	}
	select {
	case <-sigs:
		n.Stop()
		return nil
	case err := <-n.Raylet.Dead():
		n.Stop()
		return err
	}
}

// headTypeDefaults gives the head the resources and labels of its
// head_node_type where no flag set them: Ray's autoscaler cannot configure
// the head, so they must agree.
func headTypeDefaults(f *pflag.FlagSet, c *clusterconfig.Config, res map[string]float64, lbl *map[string]string) {
	t := c.AvailableNodeTypes[c.HeadNodeType]
	if t == nil {
		return
	}
	flags := map[string]string{"CPU": "num-cpus", "GPU": "num-gpus", "memory": "memory", "object_store_memory": "object-store-memory"}
	for k, v := range t.Resources {
		if name, ok := flags[k]; ok {
			if !f.Changed(name) {
				val := strconv.FormatFloat(v, 'f', -1, 64)
				if k == "memory" || k == "object_store_memory" {
					val = strconv.FormatInt(int64(v), 10)
				}
				f.Set(name, val)
			}
		} else if _, ok := res[k]; !ok {
			res[k] = v
		}
	}
	if len(*lbl) == 0 && len(t.Labels) > 0 {
		*lbl = t.Labels
	}
}

func validHostPort(a string) bool {
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" {
		return false
	}
	p, err := strconv.Atoi(port)
	return err == nil && p > 0 && p < 65536
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// startBackground runs `goray start ... --block` as a detached process and
// returns once its node is healthy.
func startBackground(cmd *cobra.Command, cfg node.Config) error {
	if err := os.MkdirAll(cfg.TempRoot, 0o755); err != nil {
		return fmt.Errorf("temp root %s: %w", cfg.TempRoot, err)
	}
	stamp := fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano())
	readyFile := filepath.Join(cfg.TempRoot, ".start-"+stamp+".json")
	logFile := filepath.Join(cfg.TempRoot, "start-"+stamp+".log")
	out, err := os.Create(logFile)
	if err != nil {
		return err
	}
	defer out.Close()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	child := exec.Command(exe, append(os.Args[1:], "--block")...)
	child.Env = append(os.Environ(), readyEnv+"="+readyFile, "GORAY_TEMP="+cfg.TempRoot)
	if cfg.Token != "" {
		child.Env = append(child.Env, "GORAY_AUTH_TOKEN="+cfg.Token)
	}
	child.Stdout, child.Stderr = out, out
	child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := child.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()
	defer os.Remove(readyFile)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(60 * time.Second)
	for {
		if b, err := os.ReadFile(readyFile); err == nil && len(b) > 0 && json.Valid(b) {
			var res struct {
				Error string `json:"error"`
				node.Info
			}
			json.Unmarshal(b, &res)
			if res.Error != "" {
				<-exited
				return errors.New(res.Error)
			}
			printStarted(cmd, res.Info)
			return nil
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(logFile)
			return fmt.Errorf("node process exited during start-up:\n%s", strings.TrimSpace(string(b)))
		case <-deadline:
			child.Process.Kill()
			return fmt.Errorf("node did not become healthy within 60s; see %s", logFile)
		case <-tick.C:
		}
	}
}

func printStarted(cmd *cobra.Command, info node.Info) {
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "Local node IP: %s\n\n--------------------\ngoray runtime started.\n--------------------\n\n", info.NodeIP)
	fmt.Fprintf(w, "Node ID: %s\nSession: %s\n\nNext steps\n", info.NodeID, info.SessionDir)
	if info.Head {
		fmt.Fprintf(w, "  To add another node to this goray cluster, run\n    goray start --address='%s'\n\n", info.GCSAddress)
		fmt.Fprintf(w, "  To connect to this cluster from a Go program, run it with\n    GORAY_ADDRESS='%s' (goray.Init() on this host finds it by itself)\n\n", info.GCSAddress)
		fmt.Fprintf(w, "  The dashboard API is at http://%s\n\n", info.DashboardAddress)
		if info.ClientAddress != "" {
			fmt.Fprintf(w, "  To connect from another machine (Ray Client), use the address\n    goray://%s\n\n", info.ClientAddress)
		}
	}
	fmt.Fprintf(w, "  To see the status of the cluster, use\n    goray status\n\n  To terminate the goray runtime, run\n    goray stop\n")
}
