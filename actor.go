package goray

import (
	"context"
	"fmt"
	"reflect"
	"sync"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/goray/goray/internal/core"
)

// ErrActorDied is returned by calls to a dead actor; the error says why it
// died (killed, process or node died, constructor failed, job finished).
var ErrActorDied = core.ErrActorDied

var (
	actorMu      sync.RWMutex
	actorClasses = map[string]*core.ActorClass{}
	actorTypes   = map[reflect.Type]string{} // state type → class name
)

func registerActor(name string, t reflect.Type, newFn func(ctx context.Context, args [][]byte) (any, error)) {
	actorMu.Lock()
	defer actorMu.Unlock()
	if _, dup := actorClasses[name]; dup {
		panic(fmt.Sprintf("goray: actor class %q registered twice", name))
	}
	actorClasses[name] = &core.ActorClass{Name: name, New: newFn, Methods: map[string]func(context.Context, any, [][]byte) ([]byte, error){}}
	actorTypes[t] = name
}

func registerMethod(class, name string, m func(context.Context, any, [][]byte) ([]byte, error)) {
	actorMu.Lock()
	defer actorMu.Unlock()
	c := actorClasses[class]
	if c == nil {
		panic(fmt.Sprintf("goray: method %s of unregistered actor class %q", name, class))
	}
	if _, dup := c.Methods[name]; dup {
		panic(fmt.Sprintf("goray: method %s.%s registered twice", class, name))
	}
	c.Methods[name] = m
}

func lookupActor(name string) (*core.ActorClass, bool) {
	actorMu.RLock()
	defer actorMu.RUnlock()
	c, ok := actorClasses[name]
	return c, ok
}

// ActorHandle refers to an actor whose state has type S. Handles can be
// passed to tasks and other actors (as arguments or inside values).
type ActorHandle[S any] struct {
	id    string
	class string
}

// ID is the actor's id.
func (h ActorHandle[S]) ID() string { return h.id }

func (h ActorHandle[S]) actorID() string { return h.id }

// EncodeMsgpack lets handles travel inside values.
func (h ActorHandle[S]) EncodeMsgpack(enc *msgpack.Encoder) error {
	return enc.EncodeMulti(h.id, h.class)
}

// DecodeMsgpack is the inverse of EncodeMsgpack.
func (h *ActorHandle[S]) DecodeMsgpack(dec *msgpack.Decoder) error {
	return dec.DecodeMulti(&h.id, &h.class)
}

// AnyActor is an actor handle of any state type, for Kill.
type AnyActor interface{ actorID() string }

type class struct {
	name string
	opts []Option
}

func (c class) create(args ...interface{ toArg() (callArg, error) }) (string, error) {
	r, err := current()
	if err != nil {
		return "", err
	}
	cargs := make([]callArg, len(args))
	for i, a := range args {
		if cargs[i], err = a.toArg(); err != nil {
			return "", fmt.Errorf("goray: argument %d of actor %s: %w", i, c.name, err)
		}
	}
	o := applyOptions(c.opts)
	if err := o.validate(); err != nil {
		return "", err
	}
	return r.be.createActor(context.Background(), c.name, cargs, o.actor(r.namespace))
}

// ActorClass0 is an actor type whose constructor takes no argument.
type ActorClass0[S any] struct{ c class }

// RegisterActor registers an actor class under name; call it at package
// level so the workers (the same binary) know it too.
func RegisterActor[S any](name string, ctor func(context.Context) (*S, error)) ActorClass0[S] {
	registerActor(name, reflect.TypeFor[S](), func(ctx context.Context, args [][]byte) (any, error) {
		if err := checkArgs(name, args, 0); err != nil {
			return nil, err
		}
		return ctor(ctx)
	})
	return ActorClass0[S]{class{name: name}}
}

// Options returns the class with creation options applied.
func (c ActorClass0[S]) Options(opts ...Option) ActorClass0[S] {
	return ActorClass0[S]{class{c.c.name, append(append([]Option(nil), c.c.opts...), opts...)}}
}

// Remote creates an actor; its constructor runs in a worker process of
// its own, placed by the GCS. Errors are those of registration (a name
// taken, no running job); a failing constructor makes the actor DEAD.
func (c ActorClass0[S]) Remote() (ActorHandle[S], error) {
	id, err := c.c.create()
	return ActorHandle[S]{id: id, class: c.c.name}, err
}

func (c ActorClass0[S]) className() string { return c.c.name }

// ActorClass1 is an actor type whose constructor takes one argument.
type ActorClass1[S, A any] struct{ c class }

// RegisterActor1 registers an actor class whose constructor takes an A.
func RegisterActor1[S, A any](name string, ctor func(context.Context, A) (*S, error)) ActorClass1[S, A] {
	registerActor(name, reflect.TypeFor[S](), func(ctx context.Context, args [][]byte) (any, error) {
		if err := checkArgs(name, args, 1); err != nil {
			return nil, err
		}
		a, err := decodeArg[A](args[0])
		if err != nil {
			return nil, err
		}
		return ctor(ctx, a)
	})
	return ActorClass1[S, A]{class{name: name}}
}

// Options returns the class with creation options applied.
func (c ActorClass1[S, A]) Options(opts ...Option) ActorClass1[S, A] {
	return ActorClass1[S, A]{class{c.c.name, append(append([]Option(nil), c.c.opts...), opts...)}}
}

// Remote creates an actor (see ActorClass0.Remote).
func (c ActorClass1[S, A]) Remote(a Arg[A]) (ActorHandle[S], error) {
	id, err := c.c.create(a)
	return ActorHandle[S]{id: id, class: c.c.name}, err
}

func (c ActorClass1[S, A]) className() string { return c.c.name }

// ActorClassOf is implemented by ActorClass0 and ActorClass1 of state S.
type ActorClassOf[S any] interface{ className() string }

func callActor[R any](h interface{ actorID() string }, method string, args ...interface{ toArg() (callArg, error) }) ObjectRef[R] {
	r, err := current()
	if err != nil {
		return ObjectRef[R]{err: err}
	}
	if h.actorID() == "" {
		return ObjectRef[R]{err: fmt.Errorf("goray: call %s on an empty actor handle", method)}
	}
	cargs := make([]callArg, len(args))
	for i, a := range args {
		if cargs[i], err = a.toArg(); err != nil {
			return ObjectRef[R]{err: fmt.Errorf("goray: argument %d of %s: %w", i, method, err)}
		}
	}
	return ObjectRef[R]{h: r.be.submitActorTask(h.actorID(), method, cargs)}
}

func stateOf[S any](inst any) (*S, error) {
	s, ok := inst.(*S)
	if !ok {
		return nil, fmt.Errorf("goray: actor state is %T, not *%s", inst, reflect.TypeFor[S]())
	}
	return s, nil
}

// ActorMethod0 is an actor method without arguments returning R.
type ActorMethod0[S, R any] struct{ name string }

// Method0 registers a method of an actor class.
func Method0[S, R any](c ActorClassOf[S], name string, m func(context.Context, *S) (R, error)) ActorMethod0[S, R] {
	full := c.className() + "." + name
	registerMethod(c.className(), full, func(ctx context.Context, inst any, args [][]byte) ([]byte, error) {
		if err := checkArgs(full, args, 0); err != nil {
			return nil, err
		}
		s, err := stateOf[S](inst)
		if err != nil {
			return nil, err
		}
		return encodeResult(m(ctx, s))
	})
	return ActorMethod0[S, R]{full}
}

// Remote calls the method on the actor; calls from one caller run in
// submission order (unless the actor has max_concurrency > 1).
func (m ActorMethod0[S, R]) Remote(h ActorHandle[S]) ObjectRef[R] { return callActor[R](h, m.name) }

// ActorMethod1 is an actor method of one argument returning R.
type ActorMethod1[S, A, R any] struct{ name string }

// Method1 registers a method of an actor class.
func Method1[S, A, R any](c ActorClassOf[S], name string, m func(context.Context, *S, A) (R, error)) ActorMethod1[S, A, R] {
	full := c.className() + "." + name
	registerMethod(c.className(), full, func(ctx context.Context, inst any, args [][]byte) ([]byte, error) {
		if err := checkArgs(full, args, 1); err != nil {
			return nil, err
		}
		s, err := stateOf[S](inst)
		if err != nil {
			return nil, err
		}
		a, err := decodeArg[A](args[0])
		if err != nil {
			return nil, err
		}
		return encodeResult(m(ctx, s, a))
	})
	return ActorMethod1[S, A, R]{full}
}

// Remote calls the method on the actor (see ActorMethod0.Remote).
func (m ActorMethod1[S, A, R]) Remote(h ActorHandle[S], a Arg[A]) ObjectRef[R] {
	return callActor[R](h, m.name, a)
}

// ActorMethod2 is an actor method of two arguments returning R.
type ActorMethod2[S, A, B, R any] struct{ name string }

// Method2 registers a method of an actor class.
func Method2[S, A, B, R any](c ActorClassOf[S], name string, m func(context.Context, *S, A, B) (R, error)) ActorMethod2[S, A, B, R] {
	full := c.className() + "." + name
	registerMethod(c.className(), full, func(ctx context.Context, inst any, args [][]byte) ([]byte, error) {
		if err := checkArgs(full, args, 2); err != nil {
			return nil, err
		}
		s, err := stateOf[S](inst)
		if err != nil {
			return nil, err
		}
		a, err := decodeArg[A](args[0])
		if err != nil {
			return nil, err
		}
		b, err := decodeArg[B](args[1])
		if err != nil {
			return nil, err
		}
		return encodeResult(m(ctx, s, a, b))
	})
	return ActorMethod2[S, A, B, R]{full}
}

// Remote calls the method on the actor (see ActorMethod0.Remote).
func (m ActorMethod2[S, A, B, R]) Remote(h ActorHandle[S], a Arg[A], b Arg[B]) ObjectRef[R] {
	return callActor[R](h, m.name, a, b)
}

// GetActor returns the named actor of state type S in this job's
// namespace (or ActorNamespace's), like ray.get_actor.
func GetActor[S any](name string, opts ...Option) (ActorHandle[S], error) {
	r, err := current()
	if err != nil {
		return ActorHandle[S]{}, err
	}
	ns := applyOptions(opts).actor(r.namespace).Namespace
	id, cls, err := r.be.getActor(context.Background(), name, ns)
	if err != nil {
		return ActorHandle[S]{}, err
	}
	actorMu.RLock()
	want, known := actorTypes[reflect.TypeFor[S]()]
	actorMu.RUnlock()
	if known && want != cls {
		return ActorHandle[S]{}, fmt.Errorf("goray: actor %q is a %s, not a %s", name, cls, want)
	}
	return ActorHandle[S]{id: id, class: cls}, nil
}

// Kill kills an actor's process, like ray.kill: with noRestart it is DEAD
// for good and pending calls fail; otherwise it restarts if it has
// max_restarts left.
func Kill(h AnyActor, noRestart bool) error {
	r, err := current()
	if err != nil {
		return err
	}
	return r.be.killActor(context.Background(), h.actorID(), noRestart)
}
