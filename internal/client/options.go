package client

import (
	"github.com/goray/goray/internal/core"
	"github.com/goray/goray/proto/clientpb"
	"github.com/goray/goray/proto/rpcpb"
)

func taskOptions(o core.TaskOptions) *clientpb.Options {
	return &clientpb.Options{
		Name: o.Name, Resources: o.Resources, MaxRetries: int32(o.MaxRetries), Strategy: int32(o.Strategy),
		AffinityNode: o.AffinityNodeID, AffinitySoft: o.AffinitySoft,
	}
}

func fromTaskOptions(o *clientpb.Options) core.TaskOptions {
	if o == nil {
		return core.TaskOptions{MaxRetries: 3}
	}
	return core.TaskOptions{
		Name: o.Name, Resources: o.Resources, MaxRetries: int(o.MaxRetries), Strategy: rpcpb.SchedulingStrategy(o.Strategy),
		AffinityNodeID: o.AffinityNode, AffinitySoft: o.AffinitySoft,
	}
}

func actorOptions(o core.ActorOptions) *clientpb.Options {
	return &clientpb.Options{
		Resources: o.Resources, MaxRestarts: int32(o.MaxRestarts), MaxTaskRetries: int32(o.MaxTaskRetries),
		MaxConcurrency: int32(o.MaxConcurrency), ActorName: o.Name, Namespace: o.Namespace, Detached: o.Detached,
		Strategy: int32(o.Strategy), AffinityNode: o.AffinityNodeID, AffinitySoft: o.AffinitySoft,
	}
}

func fromActorOptions(o *clientpb.Options) core.ActorOptions {
	if o == nil {
		return core.ActorOptions{MaxConcurrency: 1}
	}
	return core.ActorOptions{
		Resources: o.Resources, MaxRestarts: int(o.MaxRestarts), MaxTaskRetries: int(o.MaxTaskRetries),
		MaxConcurrency: int(o.MaxConcurrency), Name: o.ActorName, Namespace: o.Namespace, Detached: o.Detached,
		Strategy: rpcpb.SchedulingStrategy(o.Strategy), AffinityNodeID: o.AffinityNode, AffinitySoft: o.AffinitySoft,
	}
}
