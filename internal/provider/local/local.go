// Package local is the node provider of a fixed set of hosts reached over
// SSH (provider type "local", Ray's LocalNodeProvider): node IDs are the
// hosts' IPs, the head is provider.head_ip and workers are handed out from
// provider.worker_ips, in order, up to the list's length.
//
// Which IPs are in use, by which cluster and with which tags is kept as
// JSON {ip: {"tags": {...}, "state": "running"|"terminated"}} in a state
// file on the head, <temp root>/cluster-<name>.state (Ray keeps
// /tmp/cluster-<name>.state), read and written under an flock on
// <file>.lock. On the head the autoscaler uses a FileStore; the launcher
// reaches the same file through the head's command runner (RemoteStore).
//
// The provider starts nothing by itself: on the head, Config.Setup (the
// launcher's updater over SSH) brings a created worker up and
// Config.Teardown stops goray on a terminated one.
package local

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/goray/goray/internal/launcher/runner"
	"github.com/goray/goray/internal/provider"
)

// Node states in the state file.
const (
	StateRunning    = "running"
	StateTerminated = "terminated"
)

// Entry is one host in the state file.
type Entry struct {
	Tags  map[string]string `json:"tags"`
	State string            `json:"state"`
}

// State maps host IPs to entries.
type State map[string]*Entry

// Store keeps the state file.
type Store interface {
	Read(ctx context.Context) (State, error)
	// Update reads the state, lets f change it and writes it back.
	Update(ctx context.Context, f func(State) error) error
}

// StateFile is the state file's name for a cluster.
func StateFile(cluster string) string { return "cluster-" + cluster + ".state" }

// FileStore is the state file on this machine.
type FileStore struct{ Path string }

func (s FileStore) lock(exclusive bool) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(s.Path), 0o755); err != nil {
		return nil, fmt.Errorf("local provider: %w", err)
	}
	f, err := os.OpenFile(s.Path+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("local provider: lock: %w", err)
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, fmt.Errorf("local provider: lock %s: %w", f.Name(), err)
	}
	return f, nil
}

func (s FileStore) read() (State, error) {
	b, err := os.ReadFile(s.Path)
	if errors.Is(err, os.ErrNotExist) {
		return State{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("local provider: %w", err)
	}
	return decode(b, s.Path)
}

func decode(b []byte, where string) (State, error) {
	st := State{}
	if len(bytes.TrimSpace(b)) == 0 {
		return st, nil
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("local provider: state file %s: %w", where, err)
	}
	for ip, e := range st {
		if e == nil {
			delete(st, ip)
		} else if e.Tags == nil {
			e.Tags = map[string]string{}
		}
	}
	return st, nil
}

func (s FileStore) Read(ctx context.Context) (State, error) {
	l, err := s.lock(false)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	return s.read()
}

func (s FileStore) Update(ctx context.Context, f func(State) error) error {
	l, err := s.lock(true)
	if err != nil {
		return err
	}
	defer l.Close()
	st, err := s.read()
	if err != nil {
		return err
	}
	if err := f(st); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	tmp := s.Path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("local provider: %w", err)
	}
	return os.Rename(tmp, s.Path)
}

// RemoteStore is the state file on the head, reached through its runner:
// what the launcher uses. The file is <the head's $GORAY_TEMP, default
// /tmp/goray>/cluster-<name>.state, read and replaced under flock(1).
type RemoteStore struct {
	Runner  runner.Runner
	Cluster string
}

func (s RemoteStore) path() string {
	return `"${GORAY_TEMP:-/tmp/goray}"/` + runner.Quote(StateFile(s.Cluster))
}

func (s RemoteStore) Read(ctx context.Context) (State, error) {
	var out bytes.Buffer
	p := s.path()
	if err := s.Runner.Run(ctx, "touch "+p+".lock 2>/dev/null; flock -s "+p+".lock cat "+p+" 2>/dev/null || true", nil, &out); err != nil {
		return nil, fmt.Errorf("local provider: read the state file on %s: %w", s.Runner.Host(), err)
	}
	return decode(out.Bytes(), s.Runner.Host()+":"+StateFile(s.Cluster))
}

// Update reads and then replaces the file; another writer between the two
// (the head's autoscaler) can lose an update, which the launcher accepts
// as Ray's does (it only writes the head's entry and, at down, the
// terminations).
func (s RemoteStore) Update(ctx context.Context, f func(State) error) error {
	st, err := s.Read(ctx)
	if err != nil {
		return err
	}
	if err := f(st); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	p := s.path()
	cmd := `mkdir -p "${GORAY_TEMP:-/tmp/goray}" && touch ` + p + `.lock && printf %s ` + base64.StdEncoding.EncodeToString(b) +
		` | base64 -d > ` + p + `.tmp && flock ` + p + `.lock mv ` + p + `.tmp ` + p
	if err := s.Runner.Run(ctx, cmd, nil, nil); err != nil {
		return fmt.Errorf("local provider: write the state file on %s: %w", s.Runner.Host(), err)
	}
	return nil
}

// Config configures a Provider.
type Config struct {
	ClusterName    string
	HeadIP         string
	WorkerIPs      []string
	ExternalHeadIP string
	Store          Store
	// Setup, when set, brings up a created worker (on the head: the
	// updater over SSH). A worker whose setup fails is torn down, marked
	// terminated and reported through Failures.
	Setup func(ctx context.Context, n provider.Node, nodeType string) error
	// Teardown, when set, stops goray on a node being terminated.
	Teardown func(ctx context.Context, ip string) error
	Logger   *slog.Logger
}

// Provider implements provider.NodeProvider over the state file.
type Provider struct {
	cfg    Config
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu                  sync.Mutex
	provider.FailureLog                 // workers whose setup failed
	setting             map[string]bool // workers whose Setup is running
}

var (
	_ provider.NodeProvider    = (*Provider)(nil)
	_ provider.FailureReporter = (*Provider)(nil)
)

// New returns a provider over cfg.Store.
func New(cfg Config) (*Provider, error) {
	if cfg.ClusterName == "" {
		return nil, errors.New("local provider: no cluster name")
	}
	if cfg.HeadIP == "" {
		return nil, errors.New("local provider: provider.head_ip is required")
	}
	if cfg.Store == nil {
		return nil, errors.New("local provider: no state store")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Provider{cfg: cfg, log: log, ctx: ctx, cancel: cancel, setting: map[string]bool{}}, nil
}

func (p *Provider) node(ip string, e *Entry) provider.Node {
	n := provider.Node{ID: ip, Tags: maps.Clone(e.Tags), InternalIP: ip, ExternalIP: ip, Running: true}
	if ip == p.cfg.HeadIP && p.cfg.ExternalHeadIP != "" {
		n.ExternalIP = p.cfg.ExternalHeadIP
	}
	return n
}

func (p *Provider) NonTerminatedNodes(ctx context.Context, filters map[string]string) ([]provider.Node, error) {
	st, err := p.cfg.Store.Read(ctx)
	if err != nil {
		return nil, err
	}
	var out []provider.Node
	for ip, e := range st {
		if e.State != StateRunning || e.Tags[provider.TagClusterName] != p.cfg.ClusterName || !provider.Matches(e.Tags, filters) {
			continue
		}
		out = append(out, p.node(ip, e))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// CreateNodes marks hosts as running with req.Tags: the head_ip for a
// head, else the first free worker_ips. Asking for more workers than are
// free creates those there are and returns an error.
func (p *Provider) CreateNodes(ctx context.Context, req provider.CreateRequest) error {
	if req.Count <= 0 {
		return nil
	}
	tags := maps.Clone(req.Tags)
	if tags == nil {
		tags = map[string]string{}
	}
	tags[provider.TagClusterName] = p.cfg.ClusterName
	head := tags[provider.TagNodeKind] == provider.KindHead
	var created []string
	err := p.cfg.Store.Update(ctx, func(st State) error {
		if head {
			if e := st[p.cfg.HeadIP]; e != nil && e.State == StateRunning && e.Tags[provider.TagClusterName] != p.cfg.ClusterName {
				return fmt.Errorf("local provider: head %s is in use by cluster %q", p.cfg.HeadIP, e.Tags[provider.TagClusterName])
			}
			st[p.cfg.HeadIP] = &Entry{Tags: maps.Clone(tags), State: StateRunning}
			created = append(created, p.cfg.HeadIP)
			return nil
		}
		for _, ip := range p.cfg.WorkerIPs {
			if len(created) == req.Count {
				break
			}
			if e := st[ip]; e != nil && e.State == StateRunning {
				continue
			}
			st[ip] = &Entry{Tags: maps.Clone(tags), State: StateRunning}
			created = append(created, ip)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !head && p.cfg.Setup != nil {
		for _, ip := range created {
			p.startSetup(ip, req.NodeType, tags)
		}
	}
	if len(created) < req.Count && !head {
		return fmt.Errorf("local provider: asked for %d %s node(s), only %d of provider.worker_ips (%s) were free",
			req.Count, req.NodeType, len(created), strings.Join(p.cfg.WorkerIPs, ", "))
	}
	return nil
}

func (p *Provider) startSetup(ip, nodeType string, tags map[string]string) {
	p.mu.Lock()
	p.setting[ip] = true
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer func() {
			p.mu.Lock()
			delete(p.setting, ip)
			p.mu.Unlock()
		}()
		p.log.Info("local provider: setting up node", "node", ip, "type", nodeType)
		err := p.cfg.Setup(p.ctx, provider.Node{ID: ip, Tags: maps.Clone(tags), InternalIP: ip, ExternalIP: ip, Running: true}, nodeType)
		if err == nil {
			p.log.Info("local provider: node up to date", "node", ip)
			return
		}
		if p.ctx.Err() != nil {
			return
		}
		p.log.Warn("local provider: node setup failed", "node", ip, "err", err)
		p.Record(provider.Failure{NodeID: ip, NodeType: nodeType, Detail: fmt.Sprintf("setup failed: %v", err)})
		p.TerminateNodes(p.ctx, []string{ip})
	}()
}

func (p *Provider) SetNodeTags(ctx context.Context, id string, tags map[string]string) error {
	return p.cfg.Store.Update(ctx, func(st State) error {
		e := st[id]
		if e == nil || e.Tags[provider.TagClusterName] != p.cfg.ClusterName {
			return fmt.Errorf("local provider: no node %s in cluster %q", id, p.cfg.ClusterName)
		}
		maps.Copy(e.Tags, tags)
		return nil
	})
}

// TerminateNodes stops goray on the hosts (Teardown) and marks them
// terminated; a host that cannot be reached is still marked terminated.
func (p *Provider) TerminateNodes(ctx context.Context, ids []string) error {
	var errs []error
	if p.cfg.Teardown != nil {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, id := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := p.cfg.Teardown(ctx, id); err != nil {
					p.log.Warn("local provider: stop node", "node", id, "err", err)
					mu.Lock()
					errs = append(errs, fmt.Errorf("local provider: stop goray on %s: %w", id, err))
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	err := p.cfg.Store.Update(ctx, func(st State) error {
		for _, id := range ids {
			if e := st[id]; e != nil && e.Tags[provider.TagClusterName] == p.cfg.ClusterName {
				e.State = StateTerminated
			}
		}
		return nil
	})
	return errors.Join(append(errs, err)...)
}

func (p *Provider) InternalIP(ctx context.Context, id string) (string, error) { return id, nil }

func (p *Provider) ExternalIP(ctx context.Context, id string) (string, error) {
	if id == p.cfg.HeadIP && p.cfg.ExternalHeadIP != "" {
		return p.cfg.ExternalHeadIP, nil
	}
	return id, nil
}

// Close cancels running setups and waits for them; the hosts keep
// running.
func (p *Provider) Close() error {
	p.cancel()
	p.wg.Wait()
	return nil
}
