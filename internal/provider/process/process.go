// Package process is the node provider whose nodes are `goray start
// --address=... --block` processes on this machine, like Ray's
// fake_multinode provider: the default for a laptop and the fast one for
// tests. Nodes die with the process that started them.
package process

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/goray/goray/internal/provider"
	"github.com/goray/goray/internal/spawn"
)

// Config configures the provider.
type Config struct {
	ClusterName string
	// Binary is the goray executable the nodes run (default: this one).
	Binary string
	Params provider.Params
	// TempRoot is the nodes' temp root; LogDir receives one log per node.
	TempRoot, LogDir string
	// IP is the address the nodes advertise: they run on this host, so
	// it is the head's node IP.
	IP     string
	Logger *slog.Logger
}

type proc struct {
	id, nodeType string
	tags         map[string]string
	cmd          *exec.Cmd
	done         chan struct{}
	log          string
	terminating  bool
}

// Provider implements provider.NodeProvider with local processes.
type Provider struct {
	cfg Config
	log *slog.Logger
	ip  string

	mu                  sync.Mutex
	nodes               map[string]*proc
	provider.FailureLog // nodes that exited on their own
}

// New returns a provider; it starts nothing.
func New(cfg Config) (*Provider, error) {
	if cfg.Params.GCSAddress == "" {
		return nil, errors.New("process provider: the GCS address is required")
	}
	if cfg.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("process provider: %w", err)
		}
		cfg.Binary = exe
	}
	if cfg.LogDir == "" {
		cfg.LogDir = os.TempDir()
	}
	if err := os.MkdirAll(cfg.LogDir, 0o755); err != nil {
		return nil, fmt.Errorf("process provider: log directory: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Provider{cfg: cfg, log: log, ip: cfg.IP, nodes: map[string]*proc{}}, nil
}

func (p *Provider) NonTerminatedNodes(ctx context.Context, filters map[string]string) ([]provider.Node, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []provider.Node
	for _, n := range p.nodes {
		select {
		case <-n.done:
			continue
		default:
		}
		if n.terminating || !provider.Matches(n.tags, filters) {
			continue
		}
		out = append(out, provider.Node{ID: n.id, Tags: maps.Clone(n.tags), InternalIP: p.ip, ExternalIP: p.ip, Running: true})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// NodeEnv checks a node type's node_config (only "env", a map of strings,
// is known) and returns its environment entries.
func NodeEnv(nodeType string, nc map[string]any) ([]string, error) {
	var env []string
	for k, v := range nc {
		if k != "env" {
			return nil, fmt.Errorf("process provider: available_node_types.%s.node_config: unknown key %q (known: env)", nodeType, k)
		}
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("process provider: available_node_types.%s.node_config.env: want a map of strings, got %T", nodeType, v)
		}
		for ek, ev := range m {
			if ek == "" || strings.Contains(ek, "=") {
				return nil, fmt.Errorf("process provider: available_node_types.%s.node_config.env: bad variable name %q", nodeType, ek)
			}
			env = append(env, fmt.Sprintf("%s=%v", ek, ev))
		}
	}
	sort.Strings(env)
	return env, nil
}

func (p *Provider) CreateNodes(ctx context.Context, req provider.CreateRequest) error {
	env, err := NodeEnv(req.NodeType, req.NodeConfig)
	if err != nil {
		return err
	}
	kind := req.Tags[provider.TagNodeKind]
	if kind == "" {
		kind = provider.KindWorker
	}
	for i := 0; i < req.Count; i++ {
		var b [4]byte
		rand.Read(b[:])
		id := fmt.Sprintf("%s-%s-%s", p.cfg.ClusterName, kind, hex.EncodeToString(b[:]))
		logPath := filepath.Join(p.cfg.LogDir, "node-"+id+".log")
		out, err := os.Create(logPath)
		if err != nil {
			return fmt.Errorf("process provider: node %s: %w", id, err)
		}
		cmd := exec.Command(p.cfg.Binary, append([]string{"start"}, provider.StartArgs(p.cfg.Params.GCSAddress, req.Resources, req.Labels)...)...)
		cmd.Env = append(os.Environ(), env...)
		cmd.Env = append(cmd.Env, provider.EnvInstanceID+"="+id, provider.EnvNodeTypeName+"="+req.NodeType)
		if p.cfg.TempRoot != "" {
			cmd.Env = append(cmd.Env, "GORAY_TEMP="+p.cfg.TempRoot)
		}
		if p.cfg.Params.Token != "" {
			cmd.Env = append(cmd.Env, "GORAY_AUTH_TOKEN="+p.cfg.Params.Token)
		}
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		err = spawn.Start(cmd)
		out.Close()
		if err != nil {
			return fmt.Errorf("process provider: start node %s (%s): %w", id, p.cfg.Binary, err)
		}
		tags := maps.Clone(req.Tags)
		if tags == nil {
			tags = map[string]string{}
		}
		tags[provider.TagClusterName] = p.cfg.ClusterName
		n := &proc{id: id, nodeType: req.NodeType, tags: tags, cmd: cmd, done: make(chan struct{}), log: logPath}
		p.mu.Lock()
		p.nodes[id] = n
		p.mu.Unlock()
		p.log.Info("node process started", "node", id, "type", req.NodeType, "pid", cmd.Process.Pid)
		go p.wait(n)
	}
	return nil
}

// wait reaps a node process; one that exits without being terminated is
// recorded as a failure with the end of its log.
func (p *Provider) wait(n *proc) {
	err := n.cmd.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	close(n.done)
	delete(p.nodes, n.id)
	if n.terminating {
		return
	}
	detail := fmt.Sprintf("exited: %v", err)
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() > 0 { // not killed by a signal: its log says why
		detail += ": " + logTail(n.log, 5)
	}
	p.Record(provider.Failure{NodeID: n.id, NodeType: n.nodeType, Detail: detail})
}

func logTail(path string, lines int) string {
	b, _ := os.ReadFile(path)
	ls := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, " | ")
}

func (p *Provider) SetNodeTags(ctx context.Context, id string, tags map[string]string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	n, ok := p.nodes[id]
	if !ok {
		return fmt.Errorf("process provider: no node %s", id)
	}
	maps.Copy(n.tags, tags)
	return nil
}

// TerminateNodes SIGTERMs the nodes (a node unregisters from the GCS as it
// stops) and SIGKILLs those still there after ten seconds.
func (p *Provider) TerminateNodes(ctx context.Context, ids []string) error {
	var victims []*proc
	p.mu.Lock()
	for _, id := range ids {
		if n, ok := p.nodes[id]; ok && !n.terminating {
			n.terminating = true
			victims = append(victims, n)
		}
	}
	p.mu.Unlock()
	for _, n := range victims {
		n.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, n := range victims {
		select {
		case <-n.done:
		case <-time.After(10 * time.Second):
			n.cmd.Process.Kill()
			<-n.done
		case <-ctx.Done():
			n.cmd.Process.Kill()
		}
	}
	return nil
}

func (p *Provider) InternalIP(ctx context.Context, id string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.nodes[id]; !ok {
		return "", fmt.Errorf("process provider: no node %s", id)
	}
	return p.ip, nil
}

func (p *Provider) ExternalIP(ctx context.Context, id string) (string, error) {
	return p.InternalIP(ctx, id)
}

// Close terminates every node: they are this process's children.
func (p *Provider) Close() error {
	p.mu.Lock()
	var ids []string
	for id := range p.nodes {
		ids = append(ids, id)
	}
	p.mu.Unlock()
	return p.TerminateNodes(context.Background(), ids)
}

var _ provider.FailureReporter = (*Provider)(nil)
