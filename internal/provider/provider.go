// Package provider defines the node provider interface the autoscaler and
// the cluster launcher drive, after Ray's NodeProvider (v1): nodes are
// namespaced by cluster name, carry string tags, and go from pending to
// running to terminated. Implementations live in subpackages (process,
// docker).
package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Tag keys, as in Ray's autoscaler/tags.py.
const (
	TagClusterName   = "ray-cluster-name"
	TagNodeName      = "ray-node-name"
	TagNodeKind      = "ray-node-type" // holds the kind: head, worker or unmanaged (Ray's legacy spelling)
	TagNodeKindName  = "ray-node-kind" // the kind again, under a key that says what it holds
	TagUserNodeType  = "ray-user-node-type"
	TagNodeStatus    = "ray-node-status"
	TagLaunchConfig  = "ray-launch-config"
	TagRuntimeConfig = "ray-runtime-config"
)

// Node kinds and statuses (tag values).
const (
	KindHead      = "head"
	KindWorker    = "worker"
	KindUnmanaged = "unmanaged"

	StatusUninitialized = "uninitialized"
	StatusUpToDate      = "up-to-date"
	StatusUpdateFailed  = "update-failed"
)

// Environment a provider gives each node it starts, so that the node
// registers with the GCS under its provider id and node type (Ray's
// RAY_CLOUD_INSTANCE_ID and RAY_NODE_TYPE_NAME; both spellings are read).
const (
	EnvInstanceID   = "GORAY_CLOUD_INSTANCE_ID"
	EnvNodeTypeName = "GORAY_NODE_TYPE_NAME"
)

// Node is one non-terminated node as the provider sees it.
type Node struct {
	ID         string
	Tags       map[string]string
	InternalIP string // the IP the node's goray runtime advertises
	ExternalIP string
	// Running is false while the node is still being created.
	Running bool
}

// CreateRequest asks for Count nodes of one node type.
type CreateRequest struct {
	NodeType   string
	NodeConfig map[string]any // the type's node_config, provider-specific
	Tags       map[string]string
	Count      int
	// Resources and Labels are the type's advertised resources and labels;
	// providers that start goray themselves pass them to `goray start`.
	Resources map[string]float64
	Labels    map[string]string
}

// NodeProvider is the interface of every node provider. Calls may block on
// the infrastructure; errors name the provider and the node.
type NodeProvider interface {
	// NonTerminatedNodes lists pending and running nodes of this cluster
	// whose tags match every filter.
	NonTerminatedNodes(ctx context.Context, tagFilters map[string]string) ([]Node, error)
	// CreateNodes launches nodes carrying req.Tags (plus the cluster name
	// tag). It returns once the provider accepted them; they may still be
	// pending.
	CreateNodes(ctx context.Context, req CreateRequest) error
	// SetNodeTags merges tags into a node's tags.
	SetNodeTags(ctx context.Context, id string, tags map[string]string) error
	// TerminateNodes removes nodes; unknown ids are not an error.
	TerminateNodes(ctx context.Context, ids []string) error
	// InternalIP and ExternalIP return a node's addresses.
	InternalIP(ctx context.Context, id string) (string, error)
	ExternalIP(ctx context.Context, id string) (string, error)
	// Close releases the provider's own resources; nodes keep running.
	Close() error
}

// Failure is why a node went away on its own.
type Failure struct {
	NodeID, NodeType string
	Detail           string // e.g. the exit status and the end of its log
}

func (f Failure) String() string {
	return fmt.Sprintf("node %s (%s): %s", f.NodeID, f.NodeType, f.Detail)
}

// FailureLog is the bounded, drain-once record behind a provider's
// Failures method; embed it. It is safe for concurrent use.
type FailureLog struct {
	mu   sync.Mutex
	list []Failure
}

// maxFailures bounds a FailureLog: the autoscaler drains it every round.
const maxFailures = 100

// Record adds a failure, dropping the oldest past the bound.
func (l *FailureLog) Record(f Failure) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.list = append(l.list, f)
	if len(l.list) > maxFailures {
		l.list = l.list[len(l.list)-maxFailures:]
	}
}

// Failures returns the failures recorded since the last call, oldest
// first (FailureReporter).
func (l *FailureLog) Failures() []Failure {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.list
	l.list = nil
	return f
}

// FailureReporter is implemented by providers that see why a node went
// away on its own (a process or container that exited, a setup that
// failed). Failures returns each such event once, oldest first.
type FailureReporter interface {
	Failures() []Failure
}

// Cleaner is implemented by providers that create cluster-wide resources
// of their own (a Docker network); Cleanup removes them and any node left,
// like Ray's cleanup_cluster_resources. The head calls it as it stops.
type Cleaner interface {
	Cleanup(ctx context.Context) error
}

// Params is what every provider that starts goray itself needs to know to
// make a node join the cluster.
type Params struct {
	ClusterName string
	GCSAddress  string // HOST:PORT the nodes join
	Token       string // cluster token, "" when auth is off
}

// Host is what providers that run nodes on the head's own host need:
// the temp root the nodes share, a directory for their logs, and the IP
// they advertise.
type Host struct {
	TempRoot, LogDir, IP string
	Logger               *slog.Logger
}

// StartArgs renders the `goray start` arguments (after "start") for a
// worker node of the given resources and labels, as Ray's launcher turns a
// node type's resources into `ray start` flags: CPU and GPU become
// --num-cpus and --num-gpus, memory and object_store_memory their flags,
// everything else --resources JSON.
func StartArgs(gcsAddress string, resources map[string]float64, labels map[string]string) []string {
	args := []string{"--address=" + gcsAddress, "--block"}
	custom := map[string]float64{}
	for k, v := range resources {
		switch k {
		case "CPU":
			args = append(args, "--num-cpus="+strconv.FormatFloat(v, 'f', -1, 64))
		case "GPU":
			args = append(args, "--num-gpus="+strconv.FormatFloat(v, 'f', -1, 64))
		case "memory":
			args = append(args, fmt.Sprintf("--memory=%d", int64(v)))
		case "object_store_memory":
			args = append(args, fmt.Sprintf("--object-store-memory=%d", int64(v)))
		default:
			custom[k] = v
		}
	}
	if len(custom) > 0 {
		b, _ := json.Marshal(custom)
		args = append(args, "--resources="+string(b))
	}
	if len(labels) > 0 {
		keys := make([]string, 0, len(labels))
		for k := range labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var kv []string
		for _, k := range keys {
			kv = append(kv, k+"="+labels[k])
		}
		args = append(args, "--labels="+strings.Join(kv, ","))
	}
	sort.Strings(args[2:])
	return args
}

// Matches reports whether tags carry every filter.
func Matches(tags, filters map[string]string) bool {
	for k, v := range filters {
		if tags[k] != v {
			return false
		}
	}
	return true
}
