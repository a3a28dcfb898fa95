package core

import (
	"errors"
	"fmt"
)

// TaskError is the error a task (or its panic) produced on a worker; it
// carries the remote message and stack back to the caller.
type TaskError struct {
	Function string `msgpack:"function"`
	Message  string `msgpack:"message"`
	Stack    string `msgpack:"stack"`
	NodeID   string `msgpack:"node_id"`
	NodeIP   string `msgpack:"node_ip"`
	PID      int    `msgpack:"pid"`
	Panic    bool   `msgpack:"panic"`
}

func (e *TaskError) Error() string {
	what := "failed"
	if e.Panic {
		what = "panicked"
	}
	s := fmt.Sprintf("task %s %s on node %s (ip %s, pid %d): %s", e.Function, what, shortID(e.NodeID), e.NodeIP, e.PID, e.Message)
	if e.Stack != "" {
		s += "\n\nremote stack:\n" + e.Stack
	}
	return s
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// Errors a Get or Wait can return besides a TaskError.
var (
	ErrTaskCancelled = errors.New("goray: task cancelled")
	ErrGetTimeout    = errors.New("goray: get timed out")
	ErrWorkerDied    = errors.New("goray: worker died")
	ErrOwnerDied     = errors.New("goray: owner of the object died")
	ErrObjectUnknown = errors.New("goray: object unknown to its owner (freed?)")
	ErrInfeasible    = errors.New("goray: infeasible resource request")
	ErrShutdown      = errors.New("goray: not connected (Init not called or Shutdown done)")
)
