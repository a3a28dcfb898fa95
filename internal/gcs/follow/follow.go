// Package follow keeps a subscription to the GCS's pub/sub open.
package follow

import (
	"context"
	"time"

	"google.golang.org/grpc"

	"github.com/goray/goray/proto/rpcpb"
)

// Follow subscribes to req's channels and calls handle with each message
// until ctx ends, subscribing again (after a short pause) whenever the
// stream breaks. Each subscription starts with a message on channel
// "subscribed": messages published while it was down are lost, so a
// handler that needs them reads the current state then.
func Follow(ctx context.Context, c rpcpb.GcsServiceClient, req *rpcpb.SubscribeRequest, handle func(*rpcpb.PubMessage)) {
	for ctx.Err() == nil {
		stream, err := c.Subscribe(ctx, req, grpc.WaitForReady(true))
		for err == nil {
			var m *rpcpb.PubMessage
			if m, err = stream.Recv(); err == nil {
				handle(m)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}
