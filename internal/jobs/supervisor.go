package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/jobs/runtimeenv"
	"github.com/goray/goray/internal/spawn"
	"github.com/goray/goray/proto/rpcpb"
)

// SupervisorConfig configures the supervisor of one node.
type SupervisorConfig struct {
	NodeID       string
	NodeIP       string
	AgentAddress string // host:port of this node's HTTP agent
	// RayletAddress is this node's raylet, which holds a job's entrypoint
	// resources while the entrypoint runs.
	RayletAddress string
	GCSAddress    string
	GCS           rpcpb.GcsServiceClient
	Token         string // "" = authentication disabled
	SessionDir    string
	// StopWait is the time between SIGTERM and SIGKILL on stop (Ray's
	// RAY_JOB_STOP_WAIT_TIME_S, 3s).
	StopWait time.Duration
	Logger   *slog.Logger
}

// Supervisor runs the entrypoints of the jobs handed to this node: each
// through the shell in its own process group, in the job's unpacked
// working_dir, output appended to logs/job-driver-<submission_id>.log.
type Supervisor struct {
	cfg SupervisorConfig
	st  store
	log *slog.Logger

	mu   sync.Mutex // guards runs, closed
	runs map[string]*run
	wg   sync.WaitGroup
	// closed is set when the node stops; new jobs are refused.
	closed bool
}

// run is one entrypoint. pid and stopReq are guarded by Supervisor.mu.
type run struct {
	rec      *Record // owned by the run's goroutine
	cancel   context.CancelFunc
	pid      int
	stopReq  bool
	shutdown bool
	exited   chan struct{} // closed once the entrypoint process is gone
}

// NewSupervisor returns the supervisor of a node.
func NewSupervisor(cfg SupervisorConfig) *Supervisor {
	if cfg.StopWait == 0 {
		cfg.StopWait = 3 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Supervisor{cfg: cfg, st: store{cfg.GCS}, log: log.With("component", "job_supervisor"), runs: map[string]*run{}}
}

// reserve holds shape on this node's raylet until release is called, as
// Ray runs a job's supervisor as an actor holding the entrypoint
// resources. It waits while the resources are busy.
func (s *Supervisor) reserve(ctx context.Context, shape map[string]float64) (release func(), err error) {
	conn, err := grpc.NewClient(s.cfg.RayletAddress, append(auth.DialOptions(s.cfg.Token), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		return nil, err
	}
	lctx, cancel := context.WithCancel(ctx)
	stream, err := rpcpb.NewRayletClient(conn).Lease(lctx)
	if err == nil {
		err = stream.Send(&rpcpb.LeaseClientMessage{Request: &rpcpb.LeaseRequest{Shape: shape, ReserveOnly: true, Strategy: rpcpb.SchedulingStrategy_NODE_AFFINITY, AffinityNodeId: s.cfg.NodeID, Function: "job entrypoint"}})
	}
	for err == nil {
		var u *rpcpb.LeaseUpdate
		if u, err = stream.Recv(); err != nil {
			break
		}
		switch u.State {
		case rpcpb.LeaseState_GRANTED:
			return func() {
				stream.CloseSend()
				cancel()
				conn.Close()
			}, nil
		case rpcpb.LeaseState_REJECTED:
			err = errors.New(u.Message)
		}
	}
	cancel()
	conn.Close()
	return nil, err
}

// LogPath is where a job's driver output goes.
func (s *Supervisor) LogPath(sid string) string {
	return filepath.Join(s.cfg.SessionDir, "logs", "job-driver-"+sid+".log")
}

// errDuplicateRun is a hand-off of a job this node already runs.
var errDuplicateRun = errors.New("jobs: job already runs on this node")

// Start takes over a PENDING job and runs it.
func (s *Supervisor) Start(rec *Record) error {
	if err := validSubmissionID(rec.SubmissionID); err != nil {
		return err
	}
	if rec.Entrypoint == "" {
		return badf("Field 'entrypoint' is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("jobs: node is stopping")
	}
	if _, ok := s.runs[rec.SubmissionID]; ok {
		return errDuplicateRun
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{rec: rec, cancel: cancel, exited: make(chan struct{})}
	s.runs[rec.SubmissionID] = r
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.run(ctx, r)
		s.mu.Lock()
		delete(s.runs, rec.SubmissionID)
		s.mu.Unlock()
		cancel()
	}()
	return nil
}

func (s *Supervisor) run(ctx context.Context, r *run) {
	rec := r.rec
	defer func() {
		select {
		case <-r.exited:
		default:
			close(r.exited)
		}
	}()
	logf, err := os.OpenFile(s.LogPath(rec.SubmissionID), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.finish(r, Failed, ErrorTypeRuntimeEnvSetup, fmt.Sprintf("Cannot open the driver log: %v", err), nil)
		return
	}
	defer logf.Close()
	rec.DriverAgentHTTPAddress = "http://" + s.cfg.AgentAddress
	rec.DriverNodeID, rec.DriverNodeIP = s.cfg.NodeID, s.cfg.NodeIP

	dir := s.cfg.SessionDir
	cfg := rec.config()
	if cfg.RuntimeEnv.WorkingDir != "" {
		d, err := runtimeenv.Fetch(ctx, s.cfg.GCS, cfg.RuntimeEnv.WorkingDir, filepath.Join(s.cfg.SessionDir, "runtime_resources"))
		if err != nil {
			if s.stopRequested(r) {
				s.finish(r, Stopped, "", "", nil)
				return
			}
			fmt.Fprintf(logf, "goray: runtime env setup failed: %v\n", err)
			s.finish(r, Failed, ErrorTypeRuntimeEnvSetup, fmt.Sprintf("Runtime env setup failed: %v", err), nil)
			return
		}
		dir = d
	}
	cfg.Metadata = map[string]string{}
	for k, v := range rec.Metadata {
		cfg.Metadata[k] = v
	}
	cfg.Metadata["job_submission_id"] = rec.SubmissionID
	if cfg.Metadata["job_name"] == "" {
		cfg.Metadata["job_name"] = rec.SubmissionID
	}
	cfgJSON, _ := json.Marshal(cfg)

	if demand := rec.Demand(); len(demand) > 0 {
		release, err := s.reserve(ctx, demand)
		if err != nil {
			if s.stopRequested(r) {
				s.finish(r, Stopped, "", "", nil)
				return
			}
			s.finish(r, Failed, ErrorTypeEntrypoint, fmt.Sprintf("Cannot reserve the entrypoint resources %v: %v", demand, err), nil)
			return
		}
		defer release()
	}

	cmd := exec.Command("/bin/sh", "-c", rec.Entrypoint)
	cmd.Dir = dir
	env := os.Environ()
	for k, v := range cfg.RuntimeEnv.EnvVars {
		env = append(env, k+"="+v)
	}
	env = append(env,
		"GORAY_ADDRESS="+s.cfg.GCSAddress, "RAY_ADDRESS="+s.cfg.GCSAddress,
		runtimeenv.EnvJobConfig+"="+string(cfgJSON), runtimeenv.EnvRayJobConfig+"="+string(cfgJSON),
		"GORAY_SUBMISSION_ID="+rec.SubmissionID, "PWD="+dir,
	)
	if s.cfg.Token != "" {
		env = append(env, "GORAY_AUTH_TOKEN="+s.cfg.Token)
	} else {
		env = append(env, "GORAY_AUTH_MODE=disabled")
	}
	// Drop a worker's variables the node may have inherited.
	env = slicesDeleteFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "GORAY_WORKER_MODE=") })
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	// The entrypoint's shell dies with its node process (Pdeathsig); what
	// the shell started may still outlive a SIGKILLed node.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}

	s.mu.Lock()
	if r.stopReq {
		s.mu.Unlock()
		s.finish(r, Stopped, "", "", nil)
		return
	}
	if err := spawn.Start(cmd); err != nil {
		s.mu.Unlock()
		fmt.Fprintf(logf, "goray: cannot start the entrypoint: %v\n", err)
		s.finish(r, Failed, ErrorTypeEntrypoint, fmt.Sprintf("Cannot start the entrypoint: %v", err), nil)
		return
	}
	r.pid = cmd.Process.Pid
	s.mu.Unlock()
	rec.DriverPID = r.pid
	rec.Status, rec.Message = Running, "Job is currently running."
	if err := s.st.put(context.Background(), rec); err != nil {
		s.log.Error("record RUNNING", "job", rec.SubmissionID, "err", err)
	}
	s.log.Info("job started", "job", rec.SubmissionID, "pid", r.pid, "dir", dir)

	werr := cmd.Wait()
	code := 0
	if werr != nil {
		var ee *exec.ExitError
		if errors.As(werr, &ee) {
			code = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				code = -int(ws.Signal())
			}
		} else {
			code = -1
		}
	}
	close(r.exited)
	s.mu.Lock()
	stopped, shutdown := r.stopReq, r.shutdown
	s.mu.Unlock()
	switch {
	case stopped:
		// STOPPED only once every process of the group is gone.
		waitGroupGone(r.pid, s.cfg.StopWait+10*time.Second)
		s.finish(r, Stopped, "", "", &code)
	case shutdown:
		s.finish(r, Failed, ErrorTypeSupervisorDied, "The node running the job supervisor stopped.", &code)
	case code == 0:
		s.finish(r, Succeeded, "", "", &code)
	default:
		tail := lastLines(s.LogPath(rec.SubmissionID), 20, 20000)
		s.finish(r, Failed, ErrorTypeEntrypoint, fmt.Sprintf("Job entrypoint command failed with exit code %d, last available logs (truncated to 20,000 chars):\n%s", code, tail), &code)
	}
}

func slicesDeleteFunc(s []string, del func(string) bool) []string {
	out := s[:0]
	for _, v := range s {
		if !del(v) {
			out = append(out, v)
		}
	}
	return out
}

func (s *Supervisor) stopRequested(r *run) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return r.stopReq
}

// finish writes a terminal status; only the run's goroutine calls it.
func (s *Supervisor) finish(r *run, st Status, errType, msg string, code *int) {
	rec := r.rec
	rec.Status, rec.ErrorType, rec.EndTime, rec.DriverExitCode = st, errType, time.Now().UnixMilli(), code
	if msg == "" {
		msg = defaultMessage(st)
	}
	rec.Message = msg
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.st.put(ctx, rec); err != nil {
		s.log.Error("record terminal status", "job", rec.SubmissionID, "status", st, "err", err)
	}
	s.log.Info("job finished", "job", rec.SubmissionID, "status", st)
}

func defaultMessage(st Status) string {
	switch st {
	case Pending:
		return "Job has not started yet."
	case Running:
		return "Job is currently running."
	case Stopped:
		return "Job was intentionally stopped."
	case Succeeded:
		return "Job finished successfully."
	}
	return "Job failed."
}

// Stop asks a job of this node to stop: SIGTERM to its process group,
// SIGKILL after StopWait. False when the job does not run here.
func (s *Supervisor) Stop(sid string) bool {
	s.mu.Lock()
	r, ok := s.runs[sid]
	if !ok {
		s.mu.Unlock()
		return false
	}
	first := !r.stopReq
	r.stopReq = true
	pid := r.pid
	s.mu.Unlock()
	if first {
		r.cancel()
		if pid > 0 {
			go killGroup(pid, s.cfg.StopWait)
		}
	}
	return true
}

// Close stops every job of this node (the node is stopping) and waits
// for their records to be written.
func (s *Supervisor) Close() {
	s.mu.Lock()
	s.closed = true
	var pids []int
	for _, r := range s.runs {
		r.shutdown = true
		r.cancel()
		if r.pid > 0 {
			pids = append(pids, r.pid)
		}
	}
	s.mu.Unlock()
	for _, pid := range pids {
		syscall.Kill(-pid, syscall.SIGKILL)
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
}

// killGroup sends SIGTERM to the group, then SIGKILL after wait, until no
// process of the group is left.
func killGroup(pgid int, wait time.Duration) {
	syscall.Kill(-pgid, syscall.SIGTERM)
	if waitGroupGone(pgid, wait) {
		return
	}
	syscall.Kill(-pgid, syscall.SIGKILL)
	waitGroupGone(pgid, 10*time.Second)
}

// waitGroupGone polls until no live process is in the group; false when
// the timeout passed first.
func waitGroupGone(pgid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for groupAlive(pgid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// groupAlive reports whether a process of group pgid still runs (zombies
// do not count: they are gone, only not yet reaped by their parent).
func groupAlive(pgid int) bool {
	des, err := os.ReadDir("/proc")
	if err != nil {
		return syscall.Kill(-pgid, 0) == nil
	}
	for _, de := range des {
		pid, err := strconv.Atoi(de.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may contain spaces.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, _ := strconv.Atoi(f[2]); g == pgid {
			return true
		}
	}
	return false
}

// lastLines returns the last n lines of a file, at most max bytes.
func lastLines(path string, n, max int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := st.Size() - int64(max)
	if off < 0 {
		off = 0
	}
	b := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil && err != io.EOF {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Agent HTTP API (Ray's /api/job_agent/...), behind the node's token.

// HeaderLogDone tells a log reader that the driver has exited, so the
// bytes it read are all there will be.
const HeaderLogDone = "X-Goray-Log-Done"

// maxLogChunk bounds one read of a log tail.
const maxLogChunk = 1 << 20

// Register mounts the agent endpoints on mux.
func (s *Supervisor) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/job_agent/jobs/{$}", s.handleStart)
	mux.HandleFunc("POST /api/job_agent/jobs/{id}/stop", s.handleStop)
	mux.HandleFunc("GET /api/job_agent/jobs/{id}/logs", s.handleLogs)
}

func (s *Supervisor) handleStart(w http.ResponseWriter, r *http.Request) {
	rec := &Record{}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<20)).Decode(rec); err != nil {
		http.Error(w, "bad job record: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := s.Start(rec); err != nil {
		code := http.StatusInternalServerError
		var bad *BadRequestError
		if errors.As(err, &bad) || errors.Is(err, errDuplicateRun) {
			code = http.StatusBadRequest
		}
		http.Error(w, err.Error(), code)
		return
	}
	writeJSON(w, map[string]string{"submission_id": rec.SubmissionID})
}

func (s *Supervisor) handleStop(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, map[string]bool{"stopped": s.Stop(r.PathValue("id"))})
}

// handleLogs serves the driver log from ?offset= (default 0), at most 1 MiB
// unless all=1, with HeaderLogDone set once the driver has exited.
func (s *Supervisor) handleLogs(w http.ResponseWriter, r *http.Request) {
	sid := r.PathValue("id")
	if validSubmissionID(sid) != nil {
		http.Error(w, "bad submission id", http.StatusBadRequest)
		return
	}
	var off int64
	if v := r.URL.Query().Get("offset"); v != "" {
		var err error
		if off, err = strconv.ParseInt(v, 10, 64); err != nil || off < 0 {
			http.Error(w, "offset must be a non-negative integer", http.StatusBadRequest)
			return
		}
	}
	// Decide "done" before reading, so no byte written before the exit is missed.
	done := true
	s.mu.Lock()
	if run, ok := s.runs[sid]; ok {
		select {
		case <-run.exited:
		default:
			done = false
		}
	}
	s.mu.Unlock()
	f, err := os.Open(s.LogPath(sid))
	if err != nil {
		if done {
			http.Error(w, "no log for job "+sid+" on this node", http.StatusNotFound)
			return
		}
		w.Header().Set(HeaderLogDone, "0")
		return
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	var src io.Reader = f
	if r.URL.Query().Get("all") != "1" {
		src = io.LimitReader(f, maxLogChunk)
		if st, err := f.Stat(); err == nil && st.Size()-off > maxLogChunk {
			done = false // more to read
		}
	}
	if done {
		w.Header().Set(HeaderLogDone, "1")
	} else {
		w.Header().Set(HeaderLogDone, "0")
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	io.Copy(w, src)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
