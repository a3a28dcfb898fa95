package gcs

import (
	"sync"

	"github.com/goray/goray/proto/rpcpb"
)

// pubsub fans GCS changes out to subscribers. A subscriber that falls more
// than its buffer behind loses messages rather than stalling the GCS.
type pubsub struct {
	mu   sync.Mutex
	subs map[*subscriber]struct{}
}

type subscriber struct {
	channels map[string]bool
	jobID    string
	ch       chan *rpcpb.PubMessage
}

func newPubsub() *pubsub { return &pubsub{subs: map[*subscriber]struct{}{}} }

func (p *pubsub) subscribe(req *rpcpb.SubscribeRequest) *subscriber {
	s := &subscriber{channels: map[string]bool{}, jobID: req.JobId, ch: make(chan *rpcpb.PubMessage, 4096)}
	for _, c := range req.Channels {
		s.channels[c] = true
	}
	p.mu.Lock()
	p.subs[s] = struct{}{}
	p.mu.Unlock()
	return s
}

func (p *pubsub) unsubscribe(s *subscriber) {
	p.mu.Lock()
	delete(p.subs, s)
	p.mu.Unlock()
}

func (p *pubsub) publish(m *rpcpb.PubMessage) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for s := range p.subs {
		if !s.channels[m.Channel] {
			continue
		}
		if m.Channel == "logs" && s.jobID != "" && m.Logs.GetJobId() != s.jobID {
			continue
		}
		select {
		case s.ch <- m:
		default:
		}
	}
}
