package goray

import (
	"context"
	"fmt"
	"time"

	"github.com/goray/goray/internal/autoscaler/request"
	"github.com/goray/goray/proto/rpcpb"
)

// RequestResources asks the cluster's autoscaler to scale to at least
// enough capacity to hold every bundle at once (each a map of resource
// name to amount, memory in bytes), ignoring current usage, like Ray's
// ray.autoscaler.sdk.request_resources(bundles=...). Each call replaces the
// previous request; no bundles clears it. Nodes the request needs are not
// terminated as idle; a bundle no node type can hold launches nothing and
// shows as infeasible in `goray status`. It returns an error for empty
// bundles, negative or non-finite amounts, more than 10,000 bundles, or
// when the driver is not connected.
func RequestResources(bundles ...map[string]float64) error {
	r, err := current()
	if err != nil {
		return err
	}
	b, err := request.Encode(bundles)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.be.kvPut(ctx, request.Namespace, request.Key, b); err != nil {
		return fmt.Errorf("goray: request resources: %w", err)
	}
	return nil
}

func kvRequest(namespace, key string, value []byte) *rpcpb.KVRequest {
	return &rpcpb.KVRequest{Namespace: namespace, Key: key, Value: value, Overwrite: true}
}

// RequestCPUs is RequestResources with n bundles of {"CPU": 1}, Ray's
// request_resources(num_cpus=n).
func RequestCPUs(n int) error {
	b, err := request.CPUs(n)
	if err != nil {
		return err
	}
	return RequestResources(b...)
}
