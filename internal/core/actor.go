package core

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/status"

	"github.com/goray/goray/internal/codec"
	"github.com/goray/goray/internal/gcs/follow"
	"github.com/goray/goray/proto/rpcpb"
)

// ErrActorDied is returned for calls to an actor that is dead (or died
// while running the call with no task retries left); the message says why.
var ErrActorDied = errors.New("goray: actor died")

// ActorClass is a registered actor type: its constructor and methods.
type ActorClass struct {
	Name    string
	New     func(ctx context.Context, args [][]byte) (any, error)
	Methods map[string]func(ctx context.Context, inst any, args [][]byte) ([]byte, error)
}

// executor resolves what a task spec runs: a function, an actor's
// constructor, or a method of the actor this worker hosts.
func (cw *CoreWorker) executor(spec *rpcpb.TaskSpec) (Executor, error) {
	switch {
	case spec.ActorCreation:
		class, ok := cw.actorClassOf(spec.Function)
		if !ok {
			return nil, fmt.Errorf("actor class %q is not registered in this binary", spec.Function)
		}
		return func(ctx context.Context, args [][]byte) ([]byte, error) {
			inst, err := class.New(ctx, args)
			if err != nil {
				return nil, err
			}
			n := max(int(spec.MaxConcurrency), 1)
			cw.actorMu.Lock()
			cw.actorID, cw.actorClass, cw.actorInst = spec.ActorId, class, inst
			cw.actorSem, cw.actorConcurrency = make(chan struct{}, n), n
			cw.actorMu.Unlock()
			return codec.Encode(true)
		}, nil
	case spec.ActorId != "":
		cw.actorMu.Lock()
		id, class, inst := cw.actorID, cw.actorClass, cw.actorInst
		cw.actorMu.Unlock()
		if id != spec.ActorId || inst == nil {
			return nil, fmt.Errorf("this worker does not host actor %s", spec.ActorId)
		}
		m, ok := class.Methods[spec.Function]
		if !ok {
			return nil, fmt.Errorf("actor class %s has no method %q", class.Name, spec.Function)
		}
		return func(ctx context.Context, args [][]byte) ([]byte, error) { return m(ctx, inst, args) }, nil
	default:
		fn, ok := cw.cfg.Functions(spec.Function)
		if !ok {
			return nil, fmt.Errorf("function %q is not registered in this binary", spec.Function)
		}
		return fn, nil
	}
}

func (cw *CoreWorker) actorClassOf(name string) (*ActorClass, bool) {
	if cw.cfg.Actors == nil {
		return nil, false
	}
	return cw.cfg.Actors(name)
}

// actorSlots returns the semaphore that bounds the running methods of the
// actor hosted here (max_concurrency slots: with one, calls from every
// caller run one at a time) and whether methods may run in parallel.
// It returns nil for anything but a method of this worker's actor.
func (cw *CoreWorker) actorSlots(spec *rpcpb.TaskSpec) (sem chan struct{}, parallel bool) {
	if spec.ActorId == "" || spec.ActorCreation {
		return nil, false
	}
	cw.actorMu.Lock()
	defer cw.actorMu.Unlock()
	if spec.ActorId != cw.actorID {
		return nil, false
	}
	return cw.actorSem, cw.actorConcurrency > 1
}

// ActorOptions are the options of an actor's creation (Ray's
// .options() on an actor class).
type ActorOptions struct {
	Resources      map[string]float64 // none: 1 CPU to place, none held
	MaxRestarts    int                // -1 = unlimited
	MaxTaskRetries int                // -1 = unlimited
	MaxConcurrency int
	Name           string
	Namespace      string
	Detached       bool
	Strategy       rpcpb.SchedulingStrategy
	AffinityNodeID string
	AffinitySoft   bool
}

// CreateActor registers an actor with the GCS, which places it and runs
// its constructor, and returns the actor's id. With ref arguments the
// actor is registered in DEPENDENCIES_UNREADY and its arguments follow
// once resolved, so the call does not wait for them (as in Ray).
func (cw *CoreWorker) CreateActor(ctx context.Context, class string, args []Arg, o ActorOptions) (string, error) {
	if cw.ctx.Err() != nil {
		return "", ErrShutdown
	}
	spec := &rpcpb.ActorSpec{
		JobId: cw.cfg.JobID, ClassName: class, Resources: o.Resources,
		MaxRestarts: int32(o.MaxRestarts), MaxTaskRetries: int32(o.MaxTaskRetries), MaxConcurrency: int32(o.MaxConcurrency),
		Name: o.Name, Namespace: o.Namespace, Detached: o.Detached, OwnerAddress: cw.address,
		Strategy: o.Strategy, AffinityNodeId: o.AffinityNodeID, AffinitySoft: o.AffinitySoft,
	}
	args, release, err := cw.promoteArgs(args)
	if err != nil {
		return "", err
	}
	// Ref arguments stay pinned while the owner lives: a restart runs the
	// constructor again on the same arguments.
	unpin := cw.pinArgs(args)
	release()
	for _, a := range args {
		spec.DependenciesPending = spec.DependenciesPending || a.Ref != nil
		spec.Args = append(spec.Args, a.Data)
	}
	if spec.DependenciesPending {
		spec.Args = nil
	}
	info, err := cw.gcs.CreateActor(ctx, spec)
	if err != nil {
		unpin()
		return "", fmt.Errorf("goray: create actor %s: %s", class, status.Convert(err).Message())
	}
	id := info.Spec.ActorId
	if !spec.DependenciesPending {
		return id, nil
	}
	go func() {
		ready := &rpcpb.ActorArgs{ActorId: id}
		for i, a := range args {
			if a.Ref == nil {
				ready.Args = append(ready.Args, a.Data)
				continue
			}
			data, appErr, err := cw.argValue(cw.ctx, *a.Ref)
			if err == nil && appErr {
				te := &TaskError{}
				codec.Decode(data, te)
				err = te
			}
			if err != nil {
				ready.Args, ready.Error = nil, fmt.Sprintf("argument %d: %v", i, err)
				break
			}
			ready.Args = append(ready.Args, data)
		}
		ctx, cancel := context.WithTimeout(cw.ctx, 30*time.Second)
		defer cancel()
		if _, err := cw.gcs.ActorArgsReady(ctx, ready); err != nil {
			cw.log.Warn("actor arguments", "actor", id, "err", err)
		}
	}()
	return id, nil
}

// GetActor looks up a named actor in a namespace and returns its id and class.
func (cw *CoreWorker) GetActor(ctx context.Context, name, namespace string) (id, class string, err error) {
	info, err := cw.gcs.GetActor(ctx, &rpcpb.GetActorRequest{Name: name, Namespace: namespace})
	if err != nil {
		return "", "", fmt.Errorf("goray: %s", status.Convert(err).Message())
	}
	if info.State == rpcpb.ActorState_ACTOR_DEAD {
		return "", "", fmt.Errorf("%w: actor %q is dead: %s", ErrActorDied, name, info.DeathCause)
	}
	return info.Spec.ActorId, info.Spec.ClassName, nil
}

// KillActor kills an actor (ray.kill); with noRestart it stays dead.
func (cw *CoreWorker) KillActor(ctx context.Context, id string, noRestart bool) error {
	if _, err := cw.gcs.KillActor(ctx, &rpcpb.KillActorRequest{ActorId: id, NoRestart: noRestart}); err != nil {
		return fmt.Errorf("goray: kill actor: %s", status.Convert(err).Message())
	}
	return nil
}

// ActorState returns the GCS's record of an actor.
func (cw *CoreWorker) ActorState(ctx context.Context, id string) (*rpcpb.ActorInfo, error) {
	return cw.gcs.GetActor(ctx, &rpcpb.GetActorRequest{ActorId: id})
}

// watchActors follows actor state changes for the actors this process calls.
func (cw *CoreWorker) watchActors() {
	follow.Follow(cw.ctx, cw.gcs, &rpcpb.SubscribeRequest{Channels: []string{"actor"}}, func(m *rpcpb.PubMessage) {
		switch {
		case m.Actor != nil:
			cw.actorsMu.Lock()
			ac := cw.actors[m.Actor.Spec.ActorId]
			cw.actorsMu.Unlock()
			if ac != nil {
				ac.update(m.Actor)
			}
		case m.Channel == "subscribed": // re-read what changed while not subscribed
			cw.actorsMu.Lock()
			for _, ac := range cw.actors {
				go ac.refresh()
			}
			cw.actorsMu.Unlock()
		}
	})
}
