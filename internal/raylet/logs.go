package raylet

import (
	"context"
	"sync"
	"time"

	"github.com/goray/goray/proto/rpcpb"
)

// logPublisher batches worker output lines and publishes them on the GCS
// "logs" channel, from which drivers print them.
type logPublisher struct {
	gcs  rpcpb.GcsServiceClient
	mu   sync.Mutex
	buf  []*rpcpb.LogBatch
	n    int
	kick chan struct{}
}

func newLogPublisher(gcs rpcpb.GcsServiceClient) *logPublisher {
	return &logPublisher{gcs: gcs, kick: make(chan struct{}, 1)}
}

// add appends a line to the batch of its (worker, task, stream).
func (p *logPublisher) add(key *rpcpb.LogBatch, line string) {
	p.mu.Lock()
	if n := len(p.buf); n > 0 {
		last := p.buf[n-1]
		if last.Pid == key.Pid && last.TaskName == key.TaskName && last.IsStderr == key.IsStderr {
			last.Lines = append(last.Lines, line)
			p.mu.Unlock()
			p.signal()
			return
		}
	}
	key.Lines = []string{line}
	p.buf = append(p.buf, key)
	p.mu.Unlock()
	p.signal()
}

func (p *logPublisher) signal() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

func (p *logPublisher) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
		}
		// Let a burst of lines gather into one publish.
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		p.mu.Lock()
		batch := p.buf
		p.buf = nil
		p.mu.Unlock()
		for _, b := range batch {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			p.gcs.Publish(cctx, &rpcpb.PubMessage{Channel: "logs", Logs: b})
			cancel()
		}
	}
}
