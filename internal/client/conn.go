package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	goruntime "runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/core"
	"github.com/goray/goray/internal/version"
	"github.com/goray/goray/proto/clientpb"
)

// DefaultKeepalive is how long a connection may be idle before the client
// pings the server (gRPC keepalive; 10 s is the shortest gRPC allows).
const DefaultKeepalive = 30 * time.Second

// GraceFromEnv reads GORAY_CLIENT_RECONNECT_GRACE_PERIOD or Ray's
// RAY_CLIENT_RECONNECT_GRACE_PERIOD: seconds, or a Go duration; 0 means
// the default (DefaultGrace, as on the server) and more than MaxGrace is
// capped at MaxGrace.
func GraceFromEnv() (time.Duration, error) {
	for _, name := range []string{"GORAY_CLIENT_RECONNECT_GRACE_PERIOD", "RAY_CLIENT_RECONNECT_GRACE_PERIOD"} {
		v := os.Getenv(name)
		if v == "" {
			continue
		}
		if s, err := strconv.ParseFloat(v, 64); err == nil && s >= 0 {
			return CheckGrace(secondsDuration(s))
		}
		if d, err := time.ParseDuration(v); err == nil && d >= 0 {
			return CheckGrace(d)
		}
		return 0, fmt.Errorf("goray: %s=%q: want seconds or a duration like 30s", name, v)
	}
	return DefaultGrace, nil
}

// DialConfig configures a client connection.
type DialConfig struct {
	Address   string // host:port of the client server
	Token     string // "" = no authentication
	Namespace string
	// Grace is how long the client tries to reconnect after its connection
	// breaks, and how long the server keeps the session meanwhile.
	Grace time.Duration
	// Keepalive is the idle time after which the connection is pinged.
	Keepalive  time.Duration
	LogOutput  io.Writer // the job's worker output
	Executable string    // default: this program
	Entrypoint string
	JobEnv     map[string]string
}

// Conn is a remote driver's session with a client server.
type Conn struct {
	cfg  DialConfig
	cc   *grpc.ClientConn
	rc   clientpb.RayClientClient
	link *link

	SessionID, JobID, Namespace, NodeID string
	binHash                             string

	nextN, nextReq atomic.Uint64
	dispatchMu     sync.Mutex // one stream at a time dispatches

	// mu guards the fields below.
	mu       sync.Mutex
	calls    map[uint64]*call
	pending  map[uint64]*RemoteRef // refs whose RefInfo has not come
	lost     error
	lostCh   chan struct{}
	closed   bool
	stopConn context.CancelFunc // the current stream
}

// RemoteRef is a ref of the session, by number; the object's id and owner
// follow once the session has made it.
type RemoteRef struct {
	N     uint64
	ready chan struct{}
	ref   core.Ref
	err   error
}

func newRemoteRef(n uint64) *RemoteRef { return &RemoteRef{N: n, ready: make(chan struct{})} }

func (r *RemoteRef) resolve(ref core.Ref, err error) {
	r.ref, r.err = ref, err
	close(r.ready)
}

// Ref waits for the ref's id and owner.
func (r *RemoteRef) Ref() (core.Ref, error) {
	<-r.ready
	return r.ref, r.err
}

type call struct {
	done   chan struct{}
	d      *clientpb.Done
	data   []byte
	appErr bool
}

// Dial checks the server, uploads this program's executable when the
// cluster lacks it, and opens a session.
func Dial(ctx context.Context, cfg DialConfig) (*Conn, error) {
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	cfg.Grace = min(cfg.Grace, MaxGrace)
	if cfg.Keepalive == 0 {
		cfg.Keepalive = DefaultKeepalive
	}
	if cfg.LogOutput == nil {
		cfg.LogOutput = os.Stderr
	}
	cc, err := grpc.NewClient(cfg.Address, append(auth.DialOptions(cfg.Token),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsg), grpc.MaxCallSendMsgSize(maxMsg), grpc.ForceCodecV2(frameCodec{})),
		grpc.WithInitialWindowSize(window), grpc.WithInitialConnWindowSize(window),
		grpc.WithWriteBufferSize(ioBuffer), grpc.WithReadBufferSize(ioBuffer), experimental.WithBufferPool(bufPool),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: max(cfg.Keepalive, 10*time.Second), Timeout: 20 * time.Second, PermitWithoutStream: true}),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
	)...)
	if err != nil {
		return nil, fmt.Errorf("goray: client server address %q: %w", cfg.Address, err)
	}
	c := &Conn{cfg: cfg, cc: cc, rc: clientpb.NewRayClientClient(cc), link: newLink(), calls: map[uint64]*call{}, pending: map[uint64]*RemoteRef{}, lostCh: make(chan struct{})}
	if err := c.open(ctx); err != nil {
		c.link.close()
		cc.Close()
		return nil, err
	}
	return c, nil
}

func (c *Conn) open(ctx context.Context) error {
	ictx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	info, err := c.rc.Info(ictx, &clientpb.InfoRequest{})
	if err != nil {
		return c.callError("connect to", err)
	}
	if err := Compatible(version.Version, goruntime.GOOS, goruntime.GOARCH, info.Version, info.Goos, info.Goarch); err != nil {
		return err
	}
	if c.binHash, err = c.upload(ctx); err != nil {
		return err
	}
	if err := c.connect(ctx); err != nil {
		return c.callError("open a session with", err)
	}
	return nil
}

func (c *Conn) callError(what string, err error) error {
	st := status.Convert(err)
	switch st.Code() {
	case codes.Unauthenticated, codes.PermissionDenied:
		const advice = "set GORAY_AUTH_TOKEN to the cluster's token (goray get-auth-token on the head)"
		if c.cfg.Token == "" {
			return fmt.Errorf("goray: the client server at %s requires an auth token and this program sent none (GORAY_AUTH_MODE=disabled or no token found); %s", c.cfg.Address, advice)
		}
		return fmt.Errorf("goray: the client server at %s refused this program's token (%s); %s", c.cfg.Address, st.Message(), advice)
	case codes.DeadlineExceeded, codes.Unavailable:
		return fmt.Errorf("goray: cannot reach a goray client server at %s: %s", c.cfg.Address, st.Message())
	case codes.Unimplemented:
		return fmt.Errorf("goray: %s is not a goray client server (%s)", c.cfg.Address, st.Message())
	}
	return fmt.Errorf("goray: %s the client server at %s: %s", what, c.cfg.Address, st.Message())
}

// upload stores this program's executable in the cluster's package store
// unless it holds the same content already, and returns its hash.
func (c *Conn) upload(ctx context.Context) (string, error) {
	path := c.cfg.Executable
	if path == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("goray: find own executable: %w", err)
		}
		path = exe
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("goray: upload own executable: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("goray: hash own executable: %w", err)
	}
	hash := hex.EncodeToString(h.Sum(nil))
	has, err := c.rc.HasBinary(ctx, &clientpb.BinaryRef{Hash: hash})
	if err != nil {
		return "", c.callError("upload the executable to", err)
	}
	if has.Found {
		return hash, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	up, err := c.rc.PutBinary(ctx)
	if err != nil {
		return "", c.callError("upload the executable to", err)
	}
	buf := make([]byte, chunk)
	first := true
	for {
		n, rerr := f.Read(buf)
		if n > 0 || first {
			msg := &clientpb.BinaryChunk{Data: buf[:n]}
			if first {
				msg.Hash, first = hash, false
			}
			if err := up.Send(msg); err != nil {
				break // the reason comes with CloseAndRecv
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return "", fmt.Errorf("goray: read own executable: %w", rerr)
		}
	}
	if _, err := up.CloseAndRecv(); err != nil {
		return "", c.callError("upload the executable to", err)
	}
	return hash, nil
}

// connect opens a session stream (a new session, or the resumption of
// this one) and serves it until it breaks.
func (c *Conn) connect(ctx context.Context) error {
	sctx, stop := context.WithCancel(context.Background())
	st, err := c.rc.Session(sctx)
	if err != nil {
		stop()
		return err
	}
	host, _ := os.Hostname()
	hello := &clientpb.Hello{
		SessionId: c.SessionID, Version: version.Version, Goos: goruntime.GOOS, Goarch: goruntime.GOARCH,
		BinaryHash: c.binHash, Namespace: c.cfg.Namespace, GraceMs: c.cfg.Grace.Milliseconds(),
		Received: c.link.received(), Entrypoint: c.cfg.Entrypoint, Host: host, JobEnv: c.cfg.JobEnv,
	}
	type result struct {
		f   *clientpb.Frame
		err error
	}
	got := make(chan result, 1)
	go func() {
		if err := st.Send(&clientpb.Frame{Hello: hello}); err != nil {
			// The server's reason comes with Recv.
		}
		f, err := st.Recv()
		got <- result{f, err}
	}()
	var r result
	select {
	case r = <-got:
	case <-ctx.Done():
		stop()
		return ctx.Err()
	}
	if r.err == nil && r.f.Welcome == nil {
		r.err = status.Error(codes.Internal, "goray: the server did not welcome the session")
	}
	if r.err != nil {
		stop()
		return r.err
	}
	w := r.f.Welcome
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		stop()
		return ErrSessionLost
	}
	c.SessionID, c.JobID, c.Namespace, c.NodeID = w.SessionId, w.JobId, w.Namespace, w.NodeId
	old := c.stopConn
	c.stopConn = stop
	c.mu.Unlock()
	if old != nil {
		old() // the previous stream, if it still lingers
	}
	gen := c.link.attach(st, w.Received)
	go c.read(st, gen)
	return nil
}

// read dispatches what the server sends; when the stream breaks it
// reconnects.
func (c *Conn) read(st clientpb.RayClient_SessionClient, gen int) {
	for {
		f, err := st.Recv()
		if err != nil {
			c.link.detach(gen)
			c.reconnect()
			return
		}
		c.dispatchMu.Lock()
		for _, m := range c.link.receive(f) {
			c.dispatch(m)
		}
		c.dispatchMu.Unlock()
	}
}

func (c *Conn) reconnect() {
	deadline := time.Now().Add(c.cfg.Grace)
	wait := 50 * time.Millisecond
	var last error
	for time.Now().Before(deadline) {
		c.mu.Lock()
		closed := c.closed
		c.mu.Unlock()
		if closed {
			return
		}
		ctx, cancel := context.WithDeadline(context.Background(), minTime(deadline, time.Now().Add(5*time.Second)))
		err := c.connect(ctx)
		cancel()
		if err == nil {
			return
		}
		last = err
		if code := status.Code(err); code == codes.NotFound || code == codes.FailedPrecondition || errors.Is(err, ErrSessionLost) {
			c.setLost(fmt.Errorf("%w: %s", ErrSessionLost, status.Convert(err).Message()))
			return
		}
		time.Sleep(wait)
		wait = min(2*wait, time.Second)
	}
	msg := fmt.Sprintf("%v: the connection to %s broke and did not come back within the %s grace period; the cluster released this session's objects and actors", ErrSessionLost, c.cfg.Address, c.cfg.Grace)
	if last != nil {
		msg += " (last attempt: " + status.Convert(last).Message() + ")"
	}
	c.setLost(&remoteError{msg: msg, base: ErrSessionLost})
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func (c *Conn) setLost(err error) {
	c.mu.Lock()
	if c.lost != nil {
		c.mu.Unlock()
		return
	}
	c.lost = err
	close(c.lostCh)
	pending := c.pending
	c.pending = map[uint64]*RemoteRef{}
	c.mu.Unlock()
	for _, r := range pending {
		r.resolve(core.Ref{}, err)
	}
	c.link.close()
}

// Lost is the error of a lost session, or nil.
func (c *Conn) Lost() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lost
}

func (c *Conn) dispatch(m *clientpb.Msg) {
	switch b := m.Body.(type) {
	case *clientpb.Msg_RefInfo:
		c.mu.Lock()
		r := c.pending[b.RefInfo.N]
		delete(c.pending, b.RefInfo.N)
		c.mu.Unlock()
		if r != nil {
			var err error
			if b.RefInfo.Ref == nil || b.RefInfo.Ref.Id == "" {
				err = fmt.Errorf("%w: the session refused the call", core.ErrObjectUnknown)
			}
			r.resolve(fromRef(b.RefInfo.Ref), err)
		}
	case *clientpb.Msg_Data:
		d := b.Data
		c.mu.Lock()
		cl := c.calls[d.Req]
		if cl == nil {
			c.mu.Unlock()
			return
		}
		if cl.data == nil {
			cl.data = make([]byte, 0, d.Size)
		}
		cl.data = append(cl.data, d.Data...)
		cl.appErr = d.AppError
		if d.Last {
			delete(c.calls, d.Req)
			cl.d = &clientpb.Done{Req: d.Req}
		}
		c.mu.Unlock()
		if d.Last {
			close(cl.done)
		}
	case *clientpb.Msg_Done:
		c.mu.Lock()
		cl := c.calls[b.Done.Req]
		delete(c.calls, b.Done.Req)
		c.mu.Unlock()
		if cl != nil {
			cl.d = b.Done
			close(cl.done)
		}
	case *clientpb.Msg_Log:
		c.cfg.LogOutput.Write(b.Log.Data)
	}
}

func (c *Conn) send(m *clientpb.Msg) error {
	if err := c.Lost(); err != nil {
		return err
	}
	c.link.send(m)
	return nil
}

// do sends a request and waits for its answer, for ctx, or for the
// session's loss. A request abandoned for ctx is aborted on the server.
func (c *Conn) do(ctx context.Context, req uint64, msgs ...*clientpb.Msg) (*call, error) {
	cl := &call{done: make(chan struct{})}
	c.mu.Lock()
	if c.lost != nil {
		c.mu.Unlock()
		return nil, c.lost
	}
	c.calls[req] = cl
	c.mu.Unlock()
	for i, m := range msgs {
		if i < len(msgs)-1 {
			c.link.queue(m)
		} else {
			c.link.sendNow(m) // sends the queue from here: the caller waits anyway
		}
	}
	select {
	case <-cl.done:
		return cl, doneError(cl.d)
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			// The server got the same deadline: its answer (say, infeasible
			// rather than timed out) is on its way unless disconnected.
			select {
			case <-cl.done:
				return cl, doneError(cl.d)
			case <-time.After(300 * time.Millisecond):
			}
		}
		c.mu.Lock()
		delete(c.calls, req)
		c.mu.Unlock()
		c.link.send(&clientpb.Msg{Body: &clientpb.Msg_Abort{Abort: &clientpb.Abort{Req: req}}})
		return nil, ctx.Err()
	case <-c.lostCh:
		return nil, c.Lost()
	}
}

// Arg is one argument of a call: a value, or a ref of the session.
type Arg struct {
	Data      []byte
	Ref       *RemoteRef
	Contained []core.Ref
}

func toArgs(args []Arg) []*clientpb.Arg {
	out := make([]*clientpb.Arg, len(args))
	for i, a := range args {
		out[i] = &clientpb.Arg{Data: a.Data}
		if a.Ref != nil {
			out[i].Ref = a.Ref.N
		}
		if len(a.Contained) > 0 {
			out[i].Contained = toRefs(a.Contained)
		}
	}
	return out
}

func (c *Conn) submit(s *clientpb.Submit) *RemoteRef {
	s.N = c.nextN.Add(1)
	r := newRemoteRef(s.N)
	c.mu.Lock()
	if c.lost != nil {
		err := c.lost
		c.mu.Unlock()
		r.resolve(core.Ref{}, err)
		return r
	}
	c.pending[s.N] = r
	c.mu.Unlock()
	// Queued for the writer, which batches a burst of submissions.
	c.link.send(&clientpb.Msg{Body: &clientpb.Msg_Submit{Submit: s}})
	return r
}

// SubmitTask calls a function; it does not wait for the server.
func (c *Conn) SubmitTask(function string, args []Arg, o core.TaskOptions) *RemoteRef {
	return c.submit(&clientpb.Submit{Function: function, Args: toArgs(args), Options: taskOptions(o)})
}

// SubmitActorTask calls an actor's method; calls run in submission order.
func (c *Conn) SubmitActorTask(actorID, method string, args []Arg) *RemoteRef {
	return c.submit(&clientpb.Submit{Function: method, ActorId: actorID, Args: toArgs(args)})
}

// Put stores an encoded value given as consecutive parts, sent in chunks
// that alias the parts (the first chunk carries the size and the refs
// inside the value). The parts must not change until Put returns: the
// server answers once it has every chunk, so none is sent again later.
func (c *Conn) Put(ctx context.Context, parts [][]byte, contained []core.Ref) (*RemoteRef, error) {
	req, n := c.nextReq.Add(1), c.nextN.Add(1)
	size := 0
	for _, p := range parts {
		size += len(p)
	}
	var msgs []*clientpb.Msg
	add := func(data []byte, last bool) {
		p := &clientpb.Put{Req: req, N: n, Size: int64(size), Data: data, Last: last}
		if len(msgs) == 0 {
			p.Contained = toRefs(contained)
		}
		msgs = append(msgs, &clientpb.Msg{Body: &clientpb.Msg_Put{Put: p}})
	}
	for i, part := range parts {
		lastPart := i == len(parts)-1
		for off := 0; ; off += chunk {
			end := min(off+chunk, len(part))
			if end > off || lastPart {
				add(part[off:end], lastPart && end == len(part))
			}
			if end == len(part) {
				break
			}
		}
	}
	if len(msgs) == 0 {
		add(nil, true)
	}
	cl, err := c.do(ctx, req, msgs...)
	if err != nil {
		return nil, err
	}
	r := newRemoteRef(n)
	r.resolve(fromRef(cl.d.Ref), nil)
	return r, nil
}

// Get waits for a value; timeout (when positive) bounds the wait on the
// server too. appErr says the value is a task's error.
func (c *Conn) Get(ctx context.Context, r *RemoteRef, timeout time.Duration) (data []byte, appErr bool, err error) {
	req := c.nextReq.Add(1)
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	cl, err := c.do(ctx, req, &clientpb.Msg{Body: &clientpb.Msg_Get{Get: &clientpb.Get{Req: req, N: r.N, TimeoutMs: timeout.Milliseconds()}}})
	if errors.Is(err, context.DeadlineExceeded) {
		return nil, false, fmt.Errorf("%w: no answer from the cluster in time", core.ErrGetTimeout)
	}
	if err != nil {
		return nil, false, err
	}
	return cl.data, cl.appErr, nil
}

// Wait reports which refs are ready once num of them are or ctx ends.
func (c *Conn) Wait(ctx context.Context, refs []*RemoteRef, num int, timeout time.Duration) ([]bool, error) {
	req := c.nextReq.Add(1)
	ns := make([]uint64, len(refs))
	for i, r := range refs {
		ns[i] = r.N
	}
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	cl, err := c.do(ctx, req, &clientpb.Msg{Body: &clientpb.Msg_Wait{Wait: &clientpb.Wait{Req: req, Refs: ns, NumReturns: int32(num), TimeoutMs: timeout.Milliseconds()}}})
	if errors.Is(err, context.DeadlineExceeded) {
		return make([]bool, len(refs)), nil // nothing known ready in time
	}
	if err != nil {
		return nil, err
	}
	return cl.d.Ready, nil
}

// Cancel cancels the task of r.
func (c *Conn) Cancel(ctx context.Context, r *RemoteRef, force bool) error {
	req := c.nextReq.Add(1)
	_, err := c.do(ctx, req, &clientpb.Msg{Body: &clientpb.Msg_Cancel{Cancel: &clientpb.Cancel{Req: req, N: r.N, Force: force}}})
	return err
}

// CreateActor creates an actor and returns its id.
func (c *Conn) CreateActor(ctx context.Context, class string, args []Arg, o core.ActorOptions) (string, error) {
	req := c.nextReq.Add(1)
	cl, err := c.do(ctx, req, &clientpb.Msg{Body: &clientpb.Msg_CreateActor{CreateActor: &clientpb.CreateActor{Req: req, Class: class, Args: toArgs(args), Options: actorOptions(o)}}})
	if err != nil {
		return "", err
	}
	return cl.d.ActorId, nil
}

// GetActor looks up a named actor.
func (c *Conn) GetActor(ctx context.Context, name, namespace string) (id, class string, err error) {
	req := c.nextReq.Add(1)
	cl, err := c.do(ctx, req, &clientpb.Msg{Body: &clientpb.Msg_GetActor{GetActor: &clientpb.GetActor{Req: req, Name: name, Namespace: namespace}}})
	if err != nil {
		return "", "", err
	}
	return cl.d.ActorId, cl.d.Class, nil
}

// KillActor kills an actor.
func (c *Conn) KillActor(ctx context.Context, id string, noRestart bool) error {
	req := c.nextReq.Add(1)
	_, err := c.do(ctx, req, &clientpb.Msg{Body: &clientpb.Msg_KillActor{KillActor: &clientpb.KillActor{Req: req, ActorId: id, NoRestart: noRestart}}})
	return err
}

// KVPut writes the cluster's internal KV.
func (c *Conn) KVPut(ctx context.Context, namespace, key string, value []byte) error {
	req := c.nextReq.Add(1)
	_, err := c.do(ctx, req, &clientpb.Msg{Body: &clientpb.Msg_KvPut{KvPut: &clientpb.KVPut{Req: req, Namespace: namespace, Key: key, Value: value}}})
	return err
}

// Release drops the session's ref number n.
func (c *Conn) Release(n uint64) {
	c.send(&clientpb.Msg{Body: &clientpb.Msg_Release{Release: &clientpb.Release{Refs: []uint64{n}}}})
}

// Adopt makes a ref this program decoded a ref of the session (which
// borrows it from its owner).
func (c *Conn) Adopt(ref core.Ref) *RemoteRef {
	r := newRemoteRef(c.nextN.Add(1))
	r.resolve(ref, nil)
	c.send(&clientpb.Msg{Body: &clientpb.Msg_Adopt{Adopt: &clientpb.Adopt{N: r.N, Ref: toRef(ref)}}})
	return r
}

// Pin keeps a ref for the session's life.
func (c *Conn) Pin(ref core.Ref) {
	c.send(&clientpb.Msg{Body: &clientpb.Msg_Pin{Pin: &clientpb.Pin{Ref: toRef(ref)}}})
}

// Close ends the session: its job finishes on the cluster.
func (c *Conn) Close() {
	if c.Lost() == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		req := c.nextReq.Add(1)
		c.do(ctx, req, &clientpb.Msg{Body: &clientpb.Msg_Bye{Bye: &clientpb.Bye{Req: req}}})
		cancel()
	}
	c.mu.Lock()
	c.closed = true
	stop := c.stopConn
	c.mu.Unlock()
	c.setLost(fmt.Errorf("%w: Shutdown was called", ErrSessionLost))
	if stop != nil {
		stop()
	}
	c.cc.Close()
}

// DashboardAddress asks the client server at addr (host:port) where the
// head's dashboard HTTP API listens, as Ray's Jobs SDK does for ray://
// addresses.
func DashboardAddress(ctx context.Context, addr, token string) (string, error) {
	cc, err := grpc.NewClient(addr, append(auth.DialOptions(token), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		return "", fmt.Errorf("goray: client server address %q: %w", addr, err)
	}
	defer cc.Close()
	info, err := clientpb.NewRayClientClient(cc).Info(ctx, &clientpb.InfoRequest{})
	if err != nil {
		return "", (&Conn{cfg: DialConfig{Address: addr, Token: token}}).callError("ask", err)
	}
	if info.DashboardAddress == "" {
		return "", fmt.Errorf("goray: the client server at %s knows no dashboard address", addr)
	}
	return info.DashboardAddress, nil
}
