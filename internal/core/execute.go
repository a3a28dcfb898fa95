package core

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/goray/goray/internal/codec"
	"github.com/goray/goray/proto/rpcpb"
)

// cancelRemote asks the worker running t to cancel its context.
func (cw *CoreWorker) cancelRemote(l *leaseHandle, t *task) error {
	c, err := cw.conn(l.workerAddr)
	if err != nil {
		return err
	}
	_, err = rpcpb.NewCoreWorkerClient(c).CancelTask(cw.ctx, &rpcpb.CancelRequest{TaskId: t.spec.TaskId})
	return err
}

// prepareTask sets the task's CUDA_VISIBLE_DEVICES and, when the task name
// changes, prints the marker that lets the raylet's log monitor tag the
// output that follows. Tasks of one worker run one at a time.
func (cw *CoreWorker) prepareTask(spec *rpcpb.TaskSpec) {
	cw.envMu.Lock()
	defer cw.envMu.Unlock()
	ids := make([]string, len(spec.GpuIds))
	for i, id := range spec.GpuIds {
		ids[i] = strconv.FormatInt(id, 10)
	}
	gpus := strings.Join(ids, ",")
	if gpus != cw.lastGPUs || cw.lastTaskName == "" {
		if gpus == "" {
			os.Unsetenv("CUDA_VISIBLE_DEVICES")
		} else {
			os.Setenv("CUDA_VISIBLE_DEVICES", gpus)
		}
		cw.lastGPUs = gpus
	}
	if spec.Name != cw.lastTaskName {
		fmt.Fprintf(os.Stdout, ":task_name:%s\n", spec.Name)
		fmt.Fprintf(os.Stderr, ":task_name:%s\n", spec.Name)
		cw.lastTaskName = spec.Name
	}
}

// Ping answers the GCS's liveness check of a driver.
func (cw *CoreWorker) Ping(context.Context, *rpcpb.Empty) (*rpcpb.Empty, error) {
	return &rpcpb.Empty{}, nil
}

// CancelTask cancels the context of a task running in this worker.
func (cw *CoreWorker) CancelTask(ctx context.Context, req *rpcpb.CancelRequest) (*rpcpb.Empty, error) {
	cw.mu.Lock()
	cancel := cw.running[req.TaskId]
	cw.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	return &rpcpb.Empty{}, nil
}

func (cw *CoreWorker) execute(ctx context.Context, spec *rpcpb.TaskSpec) *rpcpb.TaskReply {
	reply := &rpcpb.TaskReply{TaskId: spec.TaskId, NodeId: cw.cfg.NodeID, Pid: int64(os.Getpid())}
	cw.prepareTask(spec)

	fail := func(msg, stack string, panicked bool) *rpcpb.TaskReply {
		te := &TaskError{Function: spec.Function, Message: msg, Stack: stack, NodeID: cw.cfg.NodeID, NodeIP: cw.cfg.NodeIP, PID: os.Getpid(), Panic: panicked}
		b, err := codec.Encode(te)
		if err != nil {
			b, _ = codec.Encode(&TaskError{Function: spec.Function, Message: msg})
		}
		reply.Result, reply.AppError = b, true
		return reply
	}
	fn, err := cw.executor(spec)
	if err != nil {
		return fail(err.Error(), "", false)
	}
	args, err := cw.resolveArgs(ctx, spec.Args)
	if err != nil {
		return fail(err.Error(), "", false)
	}
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cw.mu.Lock()
	cw.running[spec.TaskId] = cancel
	cw.mu.Unlock()
	defer func() {
		cw.mu.Lock()
		delete(cw.running, spec.TaskId)
		cw.mu.Unlock()
	}()
	var (
		out      []byte
		panicked any
		stack    string
	)
	func() {
		defer func() {
			if p := recover(); p != nil {
				panicked, stack = p, string(debug.Stack())
			}
		}()
		out, err = fn(tctx, args)
	}()
	switch {
	case panicked != nil:
		return fail(fmt.Sprint(panicked), stack, true)
	case err != nil:
		return fail(err.Error(), "", false)
	}
	reply.Result = out
	cw.storeResult(ctx, spec, reply)
	return reply
}

func mustEncode(v any) []byte {
	b, err := codec.Encode(v)
	if err != nil {
		panic(err)
	}
	return b
}
