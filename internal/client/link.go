// Package client is Ray Client for goray: the head's client server, which
// runs a per-client session (a core worker and a DRIVER job of its own)
// on behalf of a remote driver, and the remote driver's side of the
// protocol (Conn), which the goray package uses for goray:// addresses.
//
// Both sides exchange numbered messages over one gRPC stream (link.go);
// after the connection breaks, the client reconnects within its grace
// period and both sides send again what the other did not acknowledge,
// so the session resumes with every message delivered once, in order.
package client

import (
	"context"
	"sync"
	"time"

	"github.com/goray/goray/proto/clientpb"
)

// frameSender is the sending half of a session stream (client or server).
type frameSender interface {
	Send(*clientpb.Frame) error
}

// Frames carry up to this many messages or about this many bytes.
const (
	frameMsgs  = 1024
	frameBytes = 4 << 20
	// ackEvery is how soon a received message is acknowledged when
	// nothing else goes back to carry the ack.
	ackEvery = 10 * time.Millisecond
)

// link is one direction's reliable delivery over a succession of streams.
// mu guards the fields below it; Send is called with sendMu held (gRPC
// allows one sender at a time), by the writer goroutine or by sendNow.
type link struct {
	sendMu  sync.Mutex
	mu      sync.Mutex
	base    uint64          // seq of unacked[0]
	unacked []*clientpb.Msg // sent or queued, not acknowledged by the peer
	sent    int             // how many of unacked went out on the current stream
	recvd   uint64          // highest seq received from the peer, in order
	ackSent uint64          // recvd as last told to the peer
	st      frameSender     // current stream; nil while disconnected
	gen     int             // bumped by each attach
	closed  bool
	ackDue  bool // a timer will wake the writer to acknowledge
	// pending is the size of unacked; room, when set, is closed once
	// acknowledgements shrink it (see waitRoom).
	pending int
	room    chan struct{}
	wake    chan struct{}
	done    chan struct{}
}

func newLink() *link {
	l := &link{base: 1, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go l.write()
	return l
}

// send queues m; it goes out now if a stream is attached, else after the
// next attach.
func (l *link) send(m *clientpb.Msg) {
	l.queue(m)
	l.poke()
}

func (l *link) queue(m *clientpb.Msg) {
	l.mu.Lock()
	if !l.closed {
		l.unacked = append(l.unacked, m)
		l.pending += msgSize(m)
	}
	l.mu.Unlock()
}

// waitRoom waits until less than limit bytes wait for the peer's
// acknowledgement, so a large value is not queued whole. It must not be
// called from the goroutine that receives the peer's frames.
func (l *link) waitRoom(ctx context.Context, limit int) error {
	for {
		l.mu.Lock()
		if l.closed || l.pending < limit {
			l.mu.Unlock()
			return nil
		}
		if l.room == nil {
			l.room = make(chan struct{})
		}
		room := l.room
		l.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// freeRoom wakes waitRoom. Caller holds mu.
func (l *link) freeRoom() {
	if l.room != nil {
		close(l.room)
		l.room = nil
	}
}

// sendNow queues m and sends what is queued from the calling goroutine
// unless a send is under way (then the writer sends it): for messages
// whose sender waits for the answer, it saves a goroutine hop.
func (l *link) sendNow(m *clientpb.Msg) {
	l.queue(m)
	if l.sendMu.TryLock() {
		l.flush()
		l.sendMu.Unlock()
		return
	}
	l.poke()
}

func (l *link) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// attach makes st the current stream; the peer has received up to
// peerRecvd, and everything after it is sent again. It returns the
// stream's generation for detach.
func (l *link) attach(st frameSender, peerRecvd uint64) int {
	l.mu.Lock()
	l.ackTo(peerRecvd)
	l.st, l.sent = st, 0
	l.gen++
	gen := l.gen
	l.ackSent = 0
	l.mu.Unlock()
	l.poke()
	return gen
}

// detach forgets stream generation gen (if still current).
func (l *link) detach(gen int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.gen != gen || l.st == nil {
		return false
	}
	l.st = nil
	return true
}

func (l *link) received() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.recvd
}

// receive takes a frame from the peer and returns its messages that are
// new, in order.
func (l *link) receive(f *clientpb.Frame) []*clientpb.Msg {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f.Ack > 0 {
		l.ackTo(f.Ack)
	}
	var out []*clientpb.Msg
	for i, m := range f.Msgs {
		seq := f.Seq + uint64(i)
		if seq != l.recvd+1 {
			continue // a duplicate from before a reconnect
		}
		l.recvd = seq
		out = append(out, m)
	}
	if len(out) > 0 && !l.ackDue {
		// Acknowledge soon, unless a frame going back carries it first.
		l.ackDue = true
		time.AfterFunc(ackEvery, func() {
			l.mu.Lock()
			l.ackDue = false
			l.mu.Unlock()
			l.poke()
		})
	}
	return out
}

// ackTo drops the messages the peer has received. Caller holds mu.
func (l *link) ackTo(a uint64) {
	freed := false
	for len(l.unacked) > 0 && l.base <= a {
		l.pending -= msgSize(l.unacked[0])
		freed = true
		l.unacked[0] = nil
		l.unacked = l.unacked[1:]
		l.base++
		if l.sent > 0 {
			l.sent--
		}
	}
	if freed {
		l.freeRoom()
	}
}

func (l *link) close() {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		l.unacked, l.pending = nil, 0
		l.freeRoom()
		close(l.done)
	}
	l.mu.Unlock()
}

func msgSize(m *clientpb.Msg) int {
	switch b := m.Body.(type) {
	case *clientpb.Msg_Put:
		return len(b.Put.Data) + 32
	case *clientpb.Msg_Data:
		return len(b.Data.Data) + 32
	case *clientpb.Msg_Submit:
		n := 64
		for _, a := range b.Submit.Args {
			n += len(a.Data)
		}
		return n
	case *clientpb.Msg_Log:
		return len(b.Log.Data) + 16
	}
	return 64
}

// write is the link's sender in the background: it batches queued
// messages into frames and acknowledges received ones.
func (l *link) write() {
	for {
		select {
		case <-l.wake:
		case <-l.done:
			return
		}
		l.sendMu.Lock()
		l.flush()
		l.sendMu.Unlock()
	}
}

// flush sends everything queued, and an ack if one is due. Caller holds
// sendMu.
func (l *link) flush() {
	for {
		l.mu.Lock()
		st, gen := l.st, l.gen
		if st == nil || l.closed {
			l.mu.Unlock()
			return
		}
		end, size := l.sent, 0
		for end < len(l.unacked) && end-l.sent < frameMsgs && size < frameBytes {
			size += msgSize(l.unacked[end])
			end++
		}
		if end == l.sent && l.recvd == l.ackSent {
			l.mu.Unlock()
			return
		}
		// A copy: ackTo clears acknowledged entries while Send encodes.
		msgs := append([]*clientpb.Msg(nil), l.unacked[l.sent:end]...)
		f := &clientpb.Frame{Seq: l.base + uint64(l.sent), Ack: l.recvd, Msgs: msgs}
		l.sent, l.ackSent = end, l.recvd
		l.mu.Unlock()
		if err := st.Send(f); err != nil {
			l.detach(gen) // the stream's reader sees the error too
			return
		}
	}
}
