package client

import (
	"errors"

	"github.com/goray/goray/internal/core"
	"github.com/goray/goray/proto/clientpb"
)

// ErrSessionLost is returned by every call of a client whose session is
// gone: the connection stayed broken past the grace period (the server
// then released the session's objects and actors), or the server ended it.
var ErrSessionLost = errors.New("goray: client session lost")

// codes pairs the sentinel errors a caller tests with errors.Is with
// their wire codes.
var errorCodes = []struct {
	code clientpb.ErrorCode
	err  error
}{
	{clientpb.ErrorCode_TASK_CANCELLED, core.ErrTaskCancelled},
	{clientpb.ErrorCode_GET_TIMEOUT, core.ErrGetTimeout},
	{clientpb.ErrorCode_WORKER_DIED, core.ErrWorkerDied},
	{clientpb.ErrorCode_OWNER_DIED, core.ErrOwnerDied},
	{clientpb.ErrorCode_OBJECT_UNKNOWN, core.ErrObjectUnknown},
	{clientpb.ErrorCode_INFEASIBLE, core.ErrInfeasible},
	{clientpb.ErrorCode_OBJECT_LOST, core.ErrObjectLost},
	{clientpb.ErrorCode_ACTOR_DIED, core.ErrActorDied},
	{clientpb.ErrorCode_SHUTDOWN, core.ErrShutdown},
}

func errorCode(err error) clientpb.ErrorCode {
	if err == nil {
		return clientpb.ErrorCode_NONE
	}
	for _, c := range errorCodes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return clientpb.ErrorCode_OTHER
}

// remoteError is an error the session returned: its message, matching
// its sentinel with errors.Is.
type remoteError struct {
	msg  string
	base error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.base }

func doneError(d *clientpb.Done) error {
	if d.Code == clientpb.ErrorCode_NONE {
		return nil
	}
	for _, c := range errorCodes {
		if c.code == d.Code {
			return &remoteError{msg: d.Error, base: c.err}
		}
	}
	return errors.New(d.Error)
}

func fromRef(r *clientpb.Ref) core.Ref {
	if r == nil {
		return core.Ref{}
	}
	return core.Ref{ID: r.Id, Owner: r.Owner}
}

func toRef(r core.Ref) *clientpb.Ref { return &clientpb.Ref{Id: r.ID, Owner: r.Owner} }

func toRefs(rs []core.Ref) []*clientpb.Ref {
	out := make([]*clientpb.Ref, len(rs))
	for i, r := range rs {
		out[i] = toRef(r)
	}
	return out
}

func fromRefs(rs []*clientpb.Ref) []core.Ref {
	out := make([]core.Ref, len(rs))
	for i, r := range rs {
		out[i] = fromRef(r)
	}
	return out
}
