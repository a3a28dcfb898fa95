package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/goray/goray/internal/jobs/runtimeenv"

	"github.com/goray/goray/internal/gcs/follow"
	"github.com/goray/goray/proto/rpcpb"
)

// Config configures the job manager on the head.
type Config struct {
	GCS              rpcpb.GcsServiceClient
	Token            string // "" = authentication disabled
	SessionName      string
	DashboardAddress string // host:port, published in the GCS KV
	Version          string
	// StartTimeout is how long a job may wait for a node with its
	// entrypoint resources (Ray's RAY_JOB_START_TIMEOUT_SECONDS, 900s).
	StartTimeout time.Duration
	// MaxPackageSize bounds uploaded packages (default 500 MiB).
	MaxPackageSize int64
	// TempDir holds uploads while they arrive.
	TempDir string
	// PollInterval is how often a PENDING job looks for a node and a log
	// tail for new output (default 100ms).
	PollInterval time.Duration
	Logger       *slog.Logger
}

// DefaultConfig reads the settings' environment overrides:
// GORAY_JOB_START_TIMEOUT_SECONDS (or RAY_JOB_START_TIMEOUT_SECONDS) and
// GORAY_PACKAGE_MAX_SIZE.
func DefaultConfig() Config {
	c := Config{StartTimeout: 900 * time.Second, MaxPackageSize: runtimeenv.MaxPackageSize(), PollInterval: 100 * time.Millisecond}
	for _, n := range []string{"GORAY_JOB_START_TIMEOUT_SECONDS", "RAY_JOB_START_TIMEOUT_SECONDS"} {
		if v, err := strconv.ParseFloat(os.Getenv(n), 64); err == nil && v > 0 {
			c.StartTimeout = time.Duration(v * float64(time.Second))
			break
		}
	}
	return c
}

// Validate reports a configuration that cannot run.
func (c *Config) Validate() error {
	switch {
	case c.GCS == nil:
		return errors.New("jobs: no GCS client")
	case c.StartTimeout <= 0:
		return fmt.Errorf("jobs: start timeout must be positive, got %s", c.StartTimeout)
	case c.MaxPackageSize <= 0:
		return fmt.Errorf("jobs: package size limit must be positive, got %d", c.MaxPackageSize)
	case c.PollInterval <= 0:
		return fmt.Errorf("jobs: poll interval must be positive, got %s", c.PollInterval)
	}
	return nil
}

// Manager is the head's job manager: it accepts submissions, keeps them
// PENDING until a node can run them and hands them to that node's
// supervisor.
type Manager struct {
	cfg    Config
	st     store
	log    *slog.Logger
	client *http.Client
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex // guards pending
	pending map[string]*pendingJob
	wg      sync.WaitGroup
}

// pendingJob is a submission the manager still owns. Fields are guarded
// by Manager.mu.
type pendingJob struct {
	stopReq   bool
	stop      chan struct{} // closed by Stop before the hand-off
	handing   bool          // the hand-off has begun: stops go to the node
	handedOff chan struct{} // closed when the hand-off is over
	agent     string        // http://host:port of the node's agent
	done      chan struct{} // closed when the manager no longer owns the job
	demand    map[string]float64
}

// PendingDemands returns the entrypoint resources of the jobs still
// waiting for a node, for the autoscaler (in Ray the job supervisor actor
// carries this demand).
func (m *Manager) PendingDemands() []map[string]float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []map[string]float64
	for _, p := range m.pending {
		if !p.handing && len(p.demand) > 0 {
			out = append(out, p.demand)
		}
	}
	return out
}

// NewManager starts a job manager and publishes the dashboard's address.
func NewManager(cfg Config) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.TempDir == "" {
		cfg.TempDir = os.TempDir()
	}
	if err := os.MkdirAll(cfg.TempDir, 0o755); err != nil {
		return nil, fmt.Errorf("jobs: temp dir: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{
		cfg: cfg, st: store{cfg.GCS}, log: log.With("component", "job_manager"), ctx: ctx, cancel: cancel,
		client: &http.Client{Timeout: 30 * time.Second}, pending: map[string]*pendingJob{},
	}
	if cfg.DashboardAddress != "" {
		pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := cfg.GCS.KVPut(pctx, &rpcpb.KVRequest{Namespace: DashboardNamespace, Key: DashboardKey, Value: []byte(cfg.DashboardAddress), Overwrite: true})
		pcancel()
		if err != nil {
			cancel()
			return nil, gcsErr(err)
		}
	}
	m.resume()
	m.wg.Add(1)
	go m.watchNodes()
	return m, nil
}

// watchNodes fails the running jobs of nodes that die: their supervisor
// died with the node, so nobody else would ever finish them (Ray reports
// JOB_SUPERVISOR_ACTOR_DIED).
func (m *Manager) watchNodes() {
	defer m.wg.Done()
	follow.Follow(m.ctx, m.cfg.GCS, &rpcpb.SubscribeRequest{Channels: []string{"node"}}, func(msg *rpcpb.PubMessage) {
		switch {
		case msg.Channel == "subscribed": // nodes that died while not watching
			ctx, cancel := context.WithTimeout(m.ctx, 10*time.Second)
			nodes, err := m.cfg.GCS.GetAllNodes(ctx, &rpcpb.Empty{})
			cancel()
			if err != nil {
				return
			}
			for _, n := range nodes.Nodes {
				if n.State == rpcpb.NodeState_DEAD {
					m.nodeDied(n)
				}
			}
		case msg.Node != nil && msg.Node.State == rpcpb.NodeState_DEAD:
			m.nodeDied(msg.Node)
		}
	})
}

func (m *Manager) nodeDied(n *rpcpb.NodeInfo) {
	ctx, cancel := context.WithTimeout(m.ctx, 10*time.Second)
	defer cancel()
	recs, err := m.st.list(ctx)
	if err != nil {
		return
	}
	for _, r := range recs {
		if r.Status == Running && r.DriverNodeID == n.NodeId {
			m.terminal(r, Failed, ErrorTypeSupervisorDied, fmt.Sprintf("Job supervisor died with its node %s: %s", n.NodeId, n.DeathReason))
		}
	}
}

// Close stops scheduling; PENDING jobs stay PENDING in the KV.
func (m *Manager) Close() {
	m.cancel()
	m.wg.Wait()
}

// resume takes over PENDING jobs a previous head left behind.
func (m *Manager) resume() {
	ctx, cancel := context.WithTimeout(m.ctx, 10*time.Second)
	defer cancel()
	recs, err := m.st.list(ctx)
	if err != nil {
		m.log.Warn("resume jobs", "err", err)
		return
	}
	for _, r := range recs {
		if r.Status == Pending {
			m.schedule(r)
		}
	}
}

// Submit validates and records a submission, then schedules it. It
// returns the submission id.
func (m *Manager) Submit(ctx context.Context, req *SubmitRequest) (string, error) {
	if wd, _ := req.RuntimeEnv["working_dir"].(string); wd != "" {
		ok, err := runtimeenv.Exists(ctx, m.cfg.GCS, wd)
		if err != nil {
			return "", err
		}
		if !ok {
			return "", badf("Field 'runtime_env.working_dir': package %s does not exist; upload it first with PUT /api/packages/gcs/%s", wd, strings.TrimPrefix(wd, "gcs://"))
		}
	}
	sid := req.SubmissionID
	if sid == "" {
		sid = NewSubmissionID()
	}
	meta := req.Metadata
	if meta == nil {
		meta = map[string]string{}
	}
	renv := req.RuntimeEnv
	if renv == nil {
		renv = map[string]any{}
	}
	rec := &Record{
		SubmissionID: sid, Status: Pending, Entrypoint: req.Entrypoint, StartTime: time.Now().UnixMilli(),
		Metadata: meta, RuntimeEnv: renv, EntrypointNumCPUs: req.EntrypointNumCPUs, EntrypointNumGPUs: req.EntrypointNumGPUs,
		EntrypointMemory: req.EntrypointMemory, EntrypointResources: req.EntrypointResources, EntrypointLabelSelector: req.EntrypointLabelSelector,
	}
	rec.Message = "Job has not started yet."
	if len(rec.Demand()) > 0 || len(rec.EntrypointLabelSelector) > 0 {
		rec.Message += " It may be waiting for resources (CPUs, GPUs, memory, custom resources) to become available."
	}
	if len(renv) > 0 {
		rec.Message += " It may be waiting for the runtime environment to be set up."
	}
	added, err := m.st.create(ctx, rec)
	if err != nil {
		return "", err
	}
	if !added {
		return "", badf("Job with submission_id %s already exists. Please use a different submission_id.", sid)
	}
	m.schedule(rec)
	return sid, nil
}

func (m *Manager) schedule(rec *Record) {
	p := &pendingJob{stop: make(chan struct{}), handedOff: make(chan struct{}), done: make(chan struct{}), demand: rec.Demand()}
	m.mu.Lock()
	m.pending[rec.SubmissionID] = p
	m.mu.Unlock()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.place(rec, p)
		m.mu.Lock()
		delete(m.pending, rec.SubmissionID)
		m.mu.Unlock()
		close(p.done)
	}()
}

// place waits for a node that can run the job and hands the job over.
func (m *Manager) place(rec *Record, p *pendingJob) {
	deadline := time.Unix(0, rec.StartTime*int64(time.Millisecond)).Add(m.cfg.StartTimeout)
	t := time.NewTicker(m.cfg.PollInterval)
	defer t.Stop()
	for {
		node, infeasible := m.pickNode(rec)
		if node != nil {
			m.mu.Lock()
			if p.stopReq {
				m.mu.Unlock()
				m.terminal(rec, Stopped, "", "")
				return
			}
			p.handing, p.agent = true, "http://"+node.AgentAddress
			m.mu.Unlock()
			// Record where the job goes before it goes there, so a stop
			// or a log read finds it from now on.
			rec.DriverAgentHTTPAddress, rec.DriverNodeID, rec.DriverNodeIP = p.agent, node.NodeId, node.NodeIp
			if err := m.st.put(m.ctx, rec); err != nil {
				m.log.Error("record job node", "job", rec.SubmissionID, "err", err)
			}
			err := m.handOff(p.agent, rec)
			close(p.handedOff)
			if err != nil {
				m.log.Error("hand job to node", "job", rec.SubmissionID, "node", node.NodeId, "err", err)
				m.terminal(rec, Failed, ErrorTypeSupervisorDied, fmt.Sprintf("Failed to start the job supervisor on node %s: %v", node.NodeId, err))
			}
			return
		}
		if time.Now().After(deadline) {
			what := "no node can provide the entrypoint resources " + describeDemand(rec)
			if !infeasible {
				what = "the entrypoint resources " + describeDemand(rec) + " did not become available"
			}
			m.terminal(rec, Failed, ErrorTypeStartTimeout, fmt.Sprintf("Job supervisor failed to start within %s: %s.", m.cfg.StartTimeout, what))
			return
		}
		select {
		case <-p.stop:
			m.terminal(rec, Stopped, "", "")
			return
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
	}
}

func describeDemand(rec *Record) string {
	b, _ := json.Marshal(rec.Demand())
	s := string(b)
	if len(rec.EntrypointLabelSelector) > 0 {
		l, _ := json.Marshal(rec.EntrypointLabelSelector)
		s += " with labels " + string(l)
	}
	return s
}

// terminal records a terminal status of a job the manager still owns.
func (m *Manager) terminal(rec *Record, st Status, errType, msg string) {
	if msg == "" {
		msg = defaultMessage(st)
	}
	rec.Status, rec.ErrorType, rec.Message, rec.EndTime = st, errType, msg, time.Now().UnixMilli()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.st.put(ctx, rec); err != nil {
		m.log.Error("record job status", "job", rec.SubmissionID, "err", err)
	}
}

// pickNode returns a node that can run the job now: the head when the job
// asks for nothing, else a node whose available resources and labels fit
// (the head first). infeasible means no node has them even in total.
func (m *Manager) pickNode(rec *Record) (node *rpcpb.NodeInfo, infeasible bool) {
	ctx, cancel := context.WithTimeout(m.ctx, 5*time.Second)
	defer cancel()
	view, err := m.cfg.GCS.GetClusterView(ctx, &rpcpb.Empty{})
	if err != nil {
		return nil, false
	}
	demand := rec.Demand()
	any := len(demand) > 0 || len(rec.EntrypointLabelSelector) > 0
	var fits []*rpcpb.NodeInfo
	infeasible = true
	for _, n := range view.Nodes {
		info := n.Node
		if info == nil || info.State != rpcpb.NodeState_ALIVE || info.AgentAddress == "" {
			continue
		}
		if !any {
			if info.IsHead {
				return info, false
			}
			continue
		}
		if !labelsMatch(info.Labels, rec.EntrypointLabelSelector) || !covers(info.Total, demand) {
			continue
		}
		infeasible = false
		if covers(n.Available, demand) {
			fits = append(fits, info)
		}
	}
	if !any {
		return nil, false
	}
	if len(fits) == 0 {
		return nil, infeasible
	}
	for _, n := range fits {
		if n.IsHead {
			return n, false
		}
	}
	return fits[rand.IntN(len(fits))], false
}

func covers(have, want map[string]float64) bool {
	for k, v := range want {
		if have[k] < v {
			return false
		}
	}
	return true
}

func labelsMatch(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

func (m *Manager) agentRequest(ctx context.Context, method, url string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if m.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+m.cfg.Token)
	}
	return m.client.Do(req)
}

func (m *Manager) handOff(agent string, rec *Record) error {
	b, _ := json.Marshal(rec)
	ctx, cancel := context.WithTimeout(m.ctx, 30*time.Second)
	defer cancel()
	resp, err := m.agentRequest(ctx, "POST", agent+"/api/job_agent/jobs/", b)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("agent answered %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// resolved is a job found by submission id or driver job id.
type resolved struct {
	rec    *Record        // nil for a DRIVER job
	driver *rpcpb.JobInfo // the GCS job of its driver, if any
}

func (m *Manager) drivers(ctx context.Context) ([]*rpcpb.JobInfo, error) {
	l, err := m.cfg.GCS.GetAllJobs(ctx, &rpcpb.Empty{})
	if err != nil {
		return nil, gcsErr(err)
	}
	return l.Jobs, nil
}

// lastDriver is the latest GCS job whose driver a submission started.
func lastDriver(all []*rpcpb.JobInfo, sid string) *rpcpb.JobInfo {
	var best *rpcpb.JobInfo
	for _, j := range all {
		if j.Env[runtimeenv.KeySubmissionID] == sid && (best == nil || j.StartTimeMs >= best.StartTimeMs) {
			best = j
		}
	}
	return best
}

func (m *Manager) resolve(ctx context.Context, id string) (*resolved, error) {
	all, err := m.drivers(ctx)
	if err != nil {
		return nil, err
	}
	if validSubmissionID(id) == nil {
		rec, err := m.st.get(ctx, id)
		if err == nil {
			return &resolved{rec: rec, driver: lastDriver(all, id)}, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return nil, err
		}
	}
	for _, j := range all {
		if j.JobId != id {
			continue
		}
		if sid := j.Env[runtimeenv.KeySubmissionID]; sid != "" {
			rec, err := m.st.get(ctx, sid)
			if err == nil {
				return &resolved{rec: rec, driver: lastDriver(all, sid)}, nil
			}
			if !errors.Is(err, ErrNotFound) {
				return nil, err
			}
		}
		return &resolved{driver: j}, nil
	}
	return nil, ErrNotFound
}

func (r *resolved) details() JobDetails {
	if r.rec != nil {
		return r.rec.details(r.driver)
	}
	return driverDetails(r.driver)
}

// List returns submission jobs first, then jobs of drivers that connected
// by themselves.
func (m *Manager) List(ctx context.Context) ([]JobDetails, error) {
	recs, err := m.st.list(ctx)
	if err != nil {
		return nil, err
	}
	all, err := m.drivers(ctx)
	if err != nil {
		return nil, err
	}
	sort.Slice(recs, func(a, b int) bool { return recs[a].StartTime < recs[b].StartTime })
	out := []JobDetails{}
	for _, r := range recs {
		out = append(out, r.details(lastDriver(all, r.SubmissionID)))
	}
	for _, j := range all {
		if j.Env[runtimeenv.KeySubmissionID] != "" || strings.HasPrefix(j.Namespace, "_ray_internal_") {
			continue
		}
		out = append(out, driverDetails(j))
	}
	return out, nil
}

// Stop stops a submission job; false when it already ended.
func (m *Manager) Stop(ctx context.Context, rec *Record) (bool, error) {
	m.mu.Lock()
	p := m.pending[rec.SubmissionID]
	if p != nil && !p.handing {
		if !p.stopReq {
			p.stopReq = true
			close(p.stop)
		}
		m.mu.Unlock()
		select {
		case <-p.done:
		case <-ctx.Done():
			return false, ctx.Err()
		}
		return true, nil
	}
	m.mu.Unlock()
	if p != nil {
		select {
		case <-p.handedOff:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	cur, err := m.st.get(ctx, rec.SubmissionID)
	if err != nil {
		return false, err
	}
	if cur.Status.Terminal() {
		return false, nil
	}
	agent := cur.DriverAgentHTTPAddress
	if agent == "" && p != nil {
		agent = p.agent
	}
	if agent == "" {
		// No node has the job and no manager owns it (a head restart
		// lost it): it cannot be running anywhere.
		m.terminal(cur, Stopped, "", "")
		return true, nil
	}
	resp, err := m.agentRequest(ctx, "POST", agent+"/api/job_agent/jobs/"+rec.SubmissionID+"/stop", nil)
	if err != nil {
		return false, fmt.Errorf("jobs: stop job %s on its node: %w", rec.SubmissionID, err)
	}
	defer resp.Body.Close()
	var out struct{ Stopped bool }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("jobs: stop job %s on its node: %s", rec.SubmissionID, resp.Status)
	}
	if !out.Stopped {
		// The node does not run it: it finished meanwhile, or its
		// supervisor is gone.
		if cur, err = m.st.get(ctx, rec.SubmissionID); err == nil && !cur.Status.Terminal() {
			m.terminal(cur, Stopped, "", "")
			return true, nil
		}
	}
	return out.Stopped, nil
}

// logChunk reads a job's driver log from off on its node.
func (m *Manager) logChunk(ctx context.Context, rec *Record, off int64, all bool) ([]byte, bool, error) {
	if rec.DriverAgentHTTPAddress == "" {
		return nil, rec.Status.Terminal(), nil
	}
	url := fmt.Sprintf("%s/api/job_agent/jobs/%s/logs?offset=%d", rec.DriverAgentHTTPAddress, rec.SubmissionID, off)
	if all {
		url += "&all=1"
	}
	resp, err := m.agentRequest(ctx, "GET", url, nil)
	if err != nil {
		return nil, false, fmt.Errorf("jobs: logs of job %s from its node: %w", rec.SubmissionID, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, true, nil
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, false, fmt.Errorf("jobs: logs of job %s: node answered %s: %s", rec.SubmissionID, resp.Status, msg)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, false, err
	}
	return b, resp.Header.Get(HeaderLogDone) == "1", nil
}
