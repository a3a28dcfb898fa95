package goray

import (
	"context"
	"fmt"
	"sync"

	"github.com/goray/goray/internal/codec"
	"github.com/goray/goray/internal/core"
)

var (
	registryMu sync.RWMutex
	registry   = map[string]core.Executor{}
)

func register(name string, ex core.Executor) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[name]; dup {
		panic(fmt.Sprintf("goray: remote function %q registered twice", name))
	}
	registry[name] = ex
}

func lookup(name string) (core.Executor, bool) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	ex, ok := registry[name]
	return ex, ok
}

// Arg is an argument of type T to a remote call: a value (Val) or the
// ObjectRef of one, which is resolved before the task runs.
type Arg[T any] interface {
	toArg() (callArg, error)
}

type valArg[T any] struct{ v T }

func (a valArg[T]) toArg() (callArg, error) {
	b, tracked, err := codec.EncodeTracked(a.v)
	return callArg{data: b, contained: trackedRefs(tracked)}, err
}

// Val passes a value as a remote call's argument.
func Val[T any](v T) Arg[T] { return valArg[T]{v} }

func (r ObjectRef[T]) toArg() (callArg, error) {
	if err := r.submitErr(); err != nil {
		return callArg{}, err
	}
	return callArg{ref: r.h}, nil
}

type fn struct {
	name string
	opts []Option
}

func (f fn) with(opts []Option) fn {
	return fn{name: f.name, opts: append(append([]Option(nil), f.opts...), opts...)}
}

func submit[R any](f fn, args ...interface{ toArg() (callArg, error) }) ObjectRef[R] {
	r, err := current()
	if err != nil {
		return ObjectRef[R]{err: err}
	}
	cargs := make([]callArg, len(args))
	for i, a := range args {
		if cargs[i], err = a.toArg(); err != nil {
			return ObjectRef[R]{err: fmt.Errorf("goray: argument %d of %s: %w", i, f.name, err)}
		}
	}
	o := applyOptions(f.opts)
	if err := o.validate(); err != nil {
		return ObjectRef[R]{err: err}
	}
	return ObjectRef[R]{h: r.be.submitTask(f.name, cargs, o.task())}
}

func decodeArg[T any](b []byte) (T, error) {
	var v T
	err := codec.Decode(b, &v)
	return v, err
}

func encodeResult[R any](v R, err error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	return codec.Encode(v)
}

func checkArgs(name string, args [][]byte, n int) error {
	if len(args) != n {
		return fmt.Errorf("goray: %s takes %d arguments, got %d", name, n, len(args))
	}
	return nil
}

// Func0 is a remote function with no arguments returning R.
type Func0[R any] struct{ f fn }

// Register0 registers fn under name; call it at package level so the
// workers (the same binary) know it too.
func Register0[R any](name string, f func(context.Context) (R, error)) Func0[R] {
	register(name, func(ctx context.Context, args [][]byte) ([]byte, error) {
		if err := checkArgs(name, args, 0); err != nil {
			return nil, err
		}
		return encodeResult(f(ctx))
	})
	return Func0[R]{fn{name: name}}
}

// Options returns the function with per-call options applied.
func (f Func0[R]) Options(opts ...Option) Func0[R] { return Func0[R]{f.f.with(opts)} }

// Remote calls the function on the cluster.
func (f Func0[R]) Remote() ObjectRef[R] { return submit[R](f.f) }

// Func1 is a remote function of one argument returning R.
type Func1[A, R any] struct{ f fn }

// Register1 registers fn under name (see Register0).
func Register1[A, R any](name string, f func(context.Context, A) (R, error)) Func1[A, R] {
	register(name, func(ctx context.Context, args [][]byte) ([]byte, error) {
		if err := checkArgs(name, args, 1); err != nil {
			return nil, err
		}
		a, err := decodeArg[A](args[0])
		if err != nil {
			return nil, err
		}
		return encodeResult(f(ctx, a))
	})
	return Func1[A, R]{fn{name: name}}
}

// Options returns the function with per-call options applied.
func (f Func1[A, R]) Options(opts ...Option) Func1[A, R] { return Func1[A, R]{f.f.with(opts)} }

// Remote calls the function on the cluster.
func (f Func1[A, R]) Remote(a Arg[A]) ObjectRef[R] { return submit[R](f.f, a) }

// Func2 is a remote function of two arguments returning R.
type Func2[A, B, R any] struct{ f fn }

// Register2 registers fn under name (see Register0).
func Register2[A, B, R any](name string, f func(context.Context, A, B) (R, error)) Func2[A, B, R] {
	register(name, func(ctx context.Context, args [][]byte) ([]byte, error) {
		if err := checkArgs(name, args, 2); err != nil {
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
		return encodeResult(f(ctx, a, b))
	})
	return Func2[A, B, R]{fn{name: name}}
}

// Options returns the function with per-call options applied.
func (f Func2[A, B, R]) Options(opts ...Option) Func2[A, B, R] {
	return Func2[A, B, R]{f.f.with(opts)}
}

// Remote calls the function on the cluster.
func (f Func2[A, B, R]) Remote(a Arg[A], b Arg[B]) ObjectRef[R] { return submit[R](f.f, a, b) }
