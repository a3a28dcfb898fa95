package goray

import (
	"fmt"
	"math"

	"github.com/goray/goray/internal/core"
	"github.com/goray/goray/proto/rpcpb"
)

// Option is a per-call option of a remote function or an actor class
// (Ray's .options()). Options that do not apply to the call are ignored.
type Option func(*options)

type options struct {
	resources      map[string]float64
	maxRetries     int
	name           string
	strategy       rpcpb.SchedulingStrategy
	affinityNode   string
	affinitySoft   bool
	maxRestarts    int
	maxTaskRetries int
	maxConcurrency int
	actorName      string
	namespace      *string
	detached       bool
}

func applyOptions(opts []Option) *options {
	o := &options{maxRetries: 3, maxConcurrency: 1}
	for _, opt := range opts {
		opt(o)
	}
	return o
}

func (o *options) task() core.TaskOptions {
	return core.TaskOptions{
		Name: o.name, Resources: o.resources, MaxRetries: o.maxRetries,
		Strategy: o.strategy, AffinityNodeID: o.affinityNode, AffinitySoft: o.affinitySoft,
	}
}

func (o *options) actor(defaultNamespace string) core.ActorOptions {
	ns := defaultNamespace
	if o.namespace != nil {
		ns = *o.namespace
	}
	return core.ActorOptions{
		Resources: o.resources, MaxRestarts: o.maxRestarts, MaxTaskRetries: o.maxTaskRetries,
		MaxConcurrency: o.maxConcurrency, Name: o.actorName, Namespace: ns, Detached: o.detached,
		Strategy: o.strategy, AffinityNodeID: o.affinityNode, AffinitySoft: o.affinitySoft,
	}
}

// validate refuses resource quantities a scheduler cannot honour.
func (o *options) validate() error {
	for k, v := range o.resources {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("goray: resource %s = %v: quantities must be finite and non-negative", k, v)
		}
	}
	if o.maxConcurrency < 1 {
		return fmt.Errorf("goray: max_concurrency %d must be at least 1", o.maxConcurrency)
	}
	if o.maxRestarts < -1 || o.maxTaskRetries < -1 || o.maxRetries < -1 {
		return fmt.Errorf("goray: retry and restart counts must be -1 (unlimited) or more")
	}
	return nil
}

func setRes(name string, v float64) Option {
	return func(o *options) {
		if o.resources == nil {
			o.resources = map[string]float64{}
		}
		o.resources[name] = v
	}
}

// NumCPUs sets the CPUs a call needs (tasks: default 1; actors: default
// 1 to be placed and none held while they run, as in Ray).
func NumCPUs(n float64) Option { return setRes("CPU", n) }

// NumGPUs sets the GPUs a call needs; the task or actor sees its GPU ids
// in CUDA_VISIBLE_DEVICES.
func NumGPUs(n float64) Option { return setRes("GPU", n) }

// Memory sets the logical memory a call needs, in bytes.
func Memory(bytes int64) Option { return setRes("memory", float64(bytes)) }

// Resources adds custom resources a call needs.
func Resources(r map[string]float64) Option {
	return func(o *options) {
		for k, v := range r {
			setRes(k, v)(o)
		}
	}
}

// MaxRetries sets how often a task is retried when its worker or node
// dies (default 3, -1 = forever; application errors are not retried).
func MaxRetries(n int) Option { return func(o *options) { o.maxRetries = n } }

// Name names the task in logs and errors (default: the function's name).
func Name(name string) Option { return func(o *options) { o.name = name } }

// Spread spreads calls across nodes (Ray's "SPREAD" strategy).
func Spread() Option { return func(o *options) { o.strategy = rpcpb.SchedulingStrategy_SPREAD } }

// NodeAffinity runs calls on the given node; with soft they may run
// elsewhere when it is busy or gone, otherwise they fail if it is dead.
func NodeAffinity(nodeID string, soft bool) Option {
	return func(o *options) {
		o.strategy = rpcpb.SchedulingStrategy_NODE_AFFINITY
		o.affinityNode, o.affinitySoft = nodeID, soft
	}
}

// MaxRestarts sets how often an actor is restarted after its process or
// node dies (default 0, -1 = unlimited).
func MaxRestarts(n int) Option { return func(o *options) { o.maxRestarts = n } }

// MaxTaskRetries sets how often an actor call is retried when the actor
// dies while running it (default 0, -1 = unlimited).
func MaxTaskRetries(n int) Option { return func(o *options) { o.maxTaskRetries = n } }

// MaxConcurrency lets up to n methods of an actor run at once (default 1:
// in submission order).
func MaxConcurrency(n int) Option { return func(o *options) { o.maxConcurrency = n } }

// ActorName names an actor so GetActor finds it in its namespace.
func ActorName(name string) Option { return func(o *options) { o.actorName = name } }

// ActorNamespace puts a named actor in another namespace than the job's.
func ActorNamespace(ns string) Option { return func(o *options) { o.namespace = &ns } }

// Detached makes an actor outlive its job (Ray's lifetime="detached");
// it lives until killed.
func Detached() Option { return func(o *options) { o.detached = true } }
