package raylet

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/goray/goray/internal/gcs"
	"github.com/goray/goray/internal/jobs/runtimeenv"
	"github.com/goray/goray/internal/spawn"
	"github.com/goray/goray/proto/rpcpb"
)

// TaskNameMarker prefixes the line a worker prints on stdout and stderr
// before it runs a task, so the log monitor can tag what follows (Ray's
// log monitor reads the same kind of marker).
const TaskNameMarker = ":task_name:"

// worker is one worker process of the pool. Guarded by Raylet.mu.
type worker struct {
	id        string
	jobID     string
	pid       int
	address   string
	taskAddr  string
	cmd       *exec.Cmd
	leased    bool
	detached  bool // hosts a detached actor: survives its job
	idleAt    time.Time
	ready     chan struct{} // closed when the worker registered
	exited    chan struct{} // closed when the process is gone
	exitState string        // how it ended, e.g. "signal: killed"; set before exited closes
	lease     *lease
}

func newID(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// binaryFor returns the local path of a job's executable, fetching it from
// the GCS into the host-wide cache (content-addressed) when missing.
func (r *Raylet) binaryFor(ctx context.Context, hash string) (string, error) {
	dir := filepath.Join(r.cfg.TempRoot, "binaries")
	path := filepath.Join(dir, hash)
	r.fetchMu.Lock()
	defer r.fetchMu.Unlock()
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	return gcs.FetchFile(ctx, r.gcs, hash, dir, hash, 0o755)
}

// popWorker returns an idle registered worker of the job, or starts one and
// waits for it to register. The caller has already taken the resources.
func (r *Raylet) popWorker(ctx context.Context, job *rpcpb.JobInfo) (*worker, error) {
	r.mu.Lock()
	for _, w := range r.workers {
		if w.jobID == job.JobId && !w.leased && w.address != "" {
			w.leased = true
			r.mu.Unlock()
			return w, nil
		}
	}
	r.mu.Unlock()
	w, err := r.startWorker(ctx, job)
	if err != nil {
		return nil, err
	}
	select {
	case <-w.ready:
		return w, nil
	case <-w.exited:
		return nil, fmt.Errorf("raylet: worker process %d exited before registering (%s; log %s): %s", w.pid, w.exitState, r.workerLogPath(w, "err"), logTail(r.workerLogPath(w, "err"), 1024))
	case <-time.After(r.cfg.WorkerRegisterTimeout):
		r.killWorker(w)
		return nil, fmt.Errorf("raylet: worker process %d did not register within %s", w.pid, r.cfg.WorkerRegisterTimeout)
	case <-ctx.Done():
		r.killWorker(w)
		return nil, ctx.Err()
	}
}

func (r *Raylet) workerLogPath(w *worker, stream string) string {
	return filepath.Join(r.cfg.SessionDir, "logs", fmt.Sprintf("worker-%s-%s-%d.%s", w.id[:8], w.jobID, w.pid, stream))
}

func (r *Raylet) startWorker(ctx context.Context, job *rpcpb.JobInfo) (*worker, error) {
	path, err := r.binaryFor(ctx, job.BinaryHash)
	if err != nil {
		return nil, fmt.Errorf("raylet: driver binary for job %s: %w", job.JobId, err)
	}
	w := &worker{id: newID(14), jobID: job.JobId, leased: true, ready: make(chan struct{}), exited: make(chan struct{})}
	cmd := exec.Command(path)
	env := os.Environ()
	for k, v := range job.Env {
		env = append(env, k+"="+v)
	}
	env = append(env,
		"GORAY_WORKER_MODE=1",
		"GORAY_WORKER_ID="+w.id,
		"GORAY_JOB_ID="+job.JobId,
		"GORAY_NAMESPACE="+job.Namespace,
		"GORAY_DRIVER_ADDRESS="+job.DriverAddress,
		"GORAY_RAYLET_ADDRESS="+r.cfg.Address,
		"GORAY_ADDRESS="+r.cfg.GCSAddress,
		"GORAY_NODE_ID="+r.cfg.NodeID,
		"GORAY_NODE_IP="+r.cfg.NodeIP,
		"GORAY_SESSION_DIR="+r.cfg.SessionDir,
	)
	if r.cfg.Token != "" {
		env = append(env, "GORAY_AUTH_TOKEN="+r.cfg.Token)
	} else {
		env = append(env, "GORAY_AUTH_MODE=disabled")
	}
	cmd.Env = env
	cmd.Dir = r.cfg.SessionDir
	if uri := job.Env[runtimeenv.KeyWorkingDir]; uri != "" {
		// A submitted job's workers run in its unpacked working_dir.
		dir, err := runtimeenv.Fetch(ctx, r.gcs, uri, filepath.Join(r.cfg.SessionDir, "runtime_resources"))
		if err != nil {
			return nil, fmt.Errorf("raylet: working_dir of job %s: %w", job.JobId, err)
		}
		cmd.Dir = dir
	}
	// Workers get their own process group so a force-kill reaches anything
	// they started, and a Ctrl-C at the raylet's terminal does not.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	// Known before it runs: a fast worker may register before Start returns.
	r.mu.Lock()
	r.workers[w.id] = w
	r.mu.Unlock()
	if err := spawn.Start(cmd); err != nil {
		r.mu.Lock()
		delete(r.workers, w.id)
		r.mu.Unlock()
		return nil, fmt.Errorf("raylet: start worker for job %s: %w", job.JobId, err)
	}
	r.mu.Lock()
	w.cmd, w.pid = cmd, cmd.Process.Pid
	r.mu.Unlock()
	var pipes sync.WaitGroup
	pipes.Add(2)
	go func() { defer pipes.Done(); r.monitorLog(w, stdout, false) }()
	go func() { defer pipes.Done(); r.monitorLog(w, stderr, true) }()
	go func() {
		pipes.Wait()
		cmd.Wait()
		w.exitState = cmd.ProcessState.String() // read after exited is closed
		r.workerExited(w)
	}()
	r.log.Debug("worker started", "worker", w.id, "pid", w.pid, "job", job.JobId)
	return w, nil
}

// monitorLog copies a worker's output to its log file and publishes it to
// the job's driver, tagged with the running task's name.
func (r *Raylet) monitorLog(w *worker, pipe io.Reader, isErr bool) {
	kind := "out"
	if isErr {
		kind = "err"
	}
	f, err := os.OpenFile(r.workerLogPath(w, kind), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		r.log.Error("worker log", "err", err)
		io.Copy(io.Discard, pipe)
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(pipe)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	taskName := ""
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(f, line)
		if name, ok := strings.CutPrefix(line, TaskNameMarker); ok {
			taskName = name
			continue
		}
		r.logs.add(&rpcpb.LogBatch{JobId: w.jobID, NodeId: r.cfg.NodeID, NodeIp: r.cfg.NodeIP, Pid: int64(w.pid), TaskName: taskName, IsStderr: isErr}, line)
	}
}

func (r *Raylet) killWorker(w *worker) {
	r.mu.Lock()
	cmd, pid := w.cmd, w.pid // unset until the process has started
	r.mu.Unlock()
	if cmd != nil && pid != 0 {
		syscall.Kill(-pid, syscall.SIGKILL)
		cmd.Process.Kill()
	}
}

func (r *Raylet) workerExited(w *worker) {
	r.mu.Lock()
	delete(r.workers, w.id)
	l := w.lease
	r.mu.Unlock()
	close(w.exited)
	if l != nil {
		r.releaseLease(l)
	}
	r.log.Debug("worker exited", "worker", w.id, "pid", w.pid)
}

// reapIdleWorkers ends workers idle for longer than the idle timeout and
// workers of finished jobs.
func (r *Raylet) reapIdleWorkers() {
	now := time.Now()
	r.mu.Lock()
	var kill []*worker
	for _, w := range r.workers {
		if (r.finishedJobs[w.jobID] && !w.detached) || (!w.leased && w.address != "" && now.Sub(w.idleAt) > r.cfg.WorkerIdleTimeout) {
			kill = append(kill, w)
		}
	}
	r.mu.Unlock()
	for _, w := range kill {
		r.killWorker(w)
	}
}

// logTail returns the last n bytes of a log file, for error messages.
func logTail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		f.Seek(-n, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	return strings.TrimSpace(string(b))
}
