package core

import (
	"bufio"
	"context"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/proto/rpcpb"
)

// The task path is a framed protocol on its own TCP listener rather than
// a gRPC stream: one unary gRPC round trip costs ~135 µs on loopback,
// a framed ping-pong ~17 µs, and a synchronous task is one round trip.
//
// A connection starts with a frame holding the cluster token, answered by
// one status byte (0 = accepted); then the owner sends TaskSpec frames
// and the worker answers TaskReply frames in the same order. A frame is a
// 4-byte big-endian length followed by that many bytes.

const maxFrame = maxMsg

var errFrameTooLarge = errors.New("core: task frame too large")

func writeFrame(w *bufio.Writer, b []byte) error {
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(b)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}

func readFrame(r *bufio.Reader, buf []byte) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxFrame {
		return nil, errFrameTooLarge
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	_, err := io.ReadFull(r, buf)
	return buf, err
}

// TaskConn is the caller's end of a framed task connection: owners push
// tasks, the GCS creates actors, callers invoke actor methods.
type TaskConn struct {
	c   *net.TCPConn
	r   *bufio.Reader
	w   *bufio.Writer
	buf []byte
}

// DialTask connects to a worker's task address and authenticates.
func DialTask(ctx context.Context, addr, token string) (*TaskConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := &TaskConn{c: c.(*net.TCPConn), r: bufio.NewReaderSize(c, 64<<10), w: bufio.NewWriterSize(c, 64<<10)}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := writeFrame(tc.w, []byte(token)); err != nil {
		c.Close()
		return nil, err
	}
	if err := tc.w.Flush(); err != nil {
		c.Close()
		return nil, err
	}
	ok, err := tc.r.ReadByte()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("core: task connection to %s: %w", addr, err)
	}
	if ok != 0 {
		c.Close()
		return nil, fmt.Errorf("core: task connection to %s refused: invalid token", addr)
	}
	c.SetDeadline(time.Time{})
	return tc, nil
}

// Send pushes one task.
func (tc *TaskConn) Send(spec *rpcpb.TaskSpec) error {
	if err := tc.Buffer(spec); err != nil {
		return err
	}
	return tc.w.Flush()
}

// Buffer queues one task without flushing; Flush sends what is queued, so
// a burst of calls costs few writes.
func (tc *TaskConn) Buffer(spec *rpcpb.TaskSpec) error {
	b, err := proto.Marshal(spec)
	if err != nil {
		return err
	}
	return writeFrame(tc.w, b)
}

// Flush sends the buffered tasks.
func (tc *TaskConn) Flush() error { return tc.w.Flush() }

// Recv reads the next reply.
func (tc *TaskConn) Recv() (*rpcpb.TaskReply, error) {
	b, err := readFrame(tc.r, tc.buf)
	if err != nil {
		return nil, err
	}
	reply := &rpcpb.TaskReply{}
	if err := proto.Unmarshal(b, reply); err != nil {
		return nil, err
	}
	if cap(b) <= 64<<10 {
		tc.buf = b // reply fields are copied out by Unmarshal
	}
	return reply, nil
}

// CloseSend tells the worker no more tasks come; replies still arrive.
func (tc *TaskConn) CloseSend() { tc.c.CloseWrite() }

func (tc *TaskConn) Close() { tc.c.Close() }

// serveTasks accepts framed task connections until ln closes.
func (cw *CoreWorker) serveTasks(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go cw.serveTaskConn(c)
	}
}

func (cw *CoreWorker) serveTaskConn(c net.Conn) {
	defer c.Close()
	r, w := bufio.NewReaderSize(c, 64<<10), bufio.NewWriterSize(c, 64<<10)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	tok, err := readFrame(r, nil)
	if err != nil {
		return
	}
	if cw.cfg.Token != "" && subtle.ConstantTimeCompare(tok, []byte(cw.cfg.Token)) != 1 {
		w.WriteByte(1)
		w.Flush()
		return
	}
	w.WriteByte(0)
	if w.Flush() != nil {
		return
	}
	c.SetDeadline(time.Time{})
	ctx, cancel := context.WithCancel(cw.ctx)
	defer cancel()
	var (
		buf     []byte
		writeMu sync.Mutex
		running sync.WaitGroup
	)
	defer running.Wait()
	for {
		b, err := readFrame(r, buf)
		if err != nil {
			return
		}
		spec := &rpcpb.TaskSpec{}
		if err := proto.Unmarshal(b, spec); err != nil {
			return
		}
		if cap(b) <= 64<<10 {
			buf = b
		}
		sem, parallel := cw.actorSlots(spec)
		if parallel {
			// Methods of an actor with max_concurrency > 1 run in parallel
			// and answer in completion order; callers match task ids.
			sem <- struct{}{}
			running.Add(1)
			go func() {
				defer func() { <-sem; running.Done() }()
				out, err := proto.Marshal(cw.execute(ctx, spec))
				if err != nil {
					return
				}
				writeMu.Lock()
				defer writeMu.Unlock()
				if writeFrame(w, out) == nil {
					w.Flush()
				}
			}()
			continue
		}
		if sem != nil {
			sem <- struct{}{} // one method at a time across all callers
		}
		out, err := proto.Marshal(cw.execute(ctx, spec))
		if sem != nil {
			<-sem
		}
		if err != nil {
			return
		}
		writeMu.Lock()
		err = writeFrame(w, out)
		// Flush only when no further task is already buffered, so a
		// pipelined burst is answered with few writes.
		if err == nil && r.Buffered() == 0 {
			err = w.Flush()
		}
		writeMu.Unlock()
		if err != nil {
			return
		}
	}
}
