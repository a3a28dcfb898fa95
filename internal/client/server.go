package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	goruntime "runtime"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/core"
	"github.com/goray/goray/internal/version"
	"github.com/goray/goray/proto/clientpb"
	"github.com/goray/goray/proto/rpcpb"
)

// DefaultPort is the client server's port (Ray's --ray-client-server-port).
const DefaultPort = 10001

// DefaultGrace is how long a disconnected session is kept for its client
// to reconnect (Ray's RAY_CLIENT_RECONNECT_GRACE_PERIOD).
const DefaultGrace = 30 * time.Second

// maxMsg bounds one message of the client protocol; values travel in
// chunks well below it.
const maxMsg = 64 << 20

// window is the HTTP/2 flow-control window of the client protocol, and
// ioBuffer the size of its connection buffers.
const (
	window   = 32 << 20
	ioBuffer = 1 << 20
)

// sendWindow bounds how much of a value the server queues ahead of the
// client's acknowledgements.
const sendWindow = 64 << 20

// chunk is the size of the pieces a value travels in.
const chunk = 1 << 20

// Config configures the client server on the head.
type Config struct {
	Listener         net.Listener
	GCSAddress       string
	RayletAddress    string // the head's raylet: sessions lease workers through it
	NodeID, NodeIP   string
	Token            string // "" = authentication disabled
	DashboardAddress string
	// MaxGrace caps the grace period a client asks for (default 1h).
	MaxGrace time.Duration
	Logger   *slog.Logger
}

// Server is the head's client server.
type Server struct {
	clientpb.UnimplementedRayClientServer
	cfg     Config
	log     *slog.Logger
	grpc    *grpc.Server
	gcsConn *grpc.ClientConn
	gcs     rpcpb.GcsServiceClient

	// mu guards sessions.
	mu       sync.Mutex
	sessions map[string]*session
	stopped  bool
}

// Start serves the client server on cfg.Listener.
func Start(cfg Config) (*Server, error) {
	if cfg.MaxGrace == 0 {
		cfg.MaxGrace = time.Hour
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	conn, err := grpc.NewClient(cfg.GCSAddress, append(auth.DialOptions(cfg.Token),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(maxMsg)))...)
	if err != nil {
		return nil, fmt.Errorf("client server: GCS client: %w", err)
	}
	s := &Server{cfg: cfg, log: log.With("component", "client_server"), gcsConn: conn, gcs: rpcpb.NewGcsServiceClient(conn), sessions: map[string]*session{}}
	s.grpc = grpc.NewServer(append(auth.ServerOptions(cfg.Token),
		grpc.MaxRecvMsgSize(maxMsg), grpc.MaxSendMsgSize(maxMsg),
		// Large windows and buffers: values stream through one connection.
		grpc.InitialWindowSize(window), grpc.InitialConnWindowSize(window),
		grpc.WriteBufferSize(ioBuffer), grpc.ReadBufferSize(ioBuffer), experimental.BufferPool(bufPool),
		grpc.ForceServerCodecV2(frameCodec{}),
		// Clients ping an idle connection (every 10 s at the most) so that
		// no middlebox drops it; the server pings too.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 20 * time.Second}),
	)...)
	clientpb.RegisterRayClientServer(s.grpc, s)
	go s.grpc.Serve(cfg.Listener)
	return s, nil
}

// Address is where the client server listens.
func (s *Server) Address() string { return s.cfg.Listener.Addr().String() }

// Stop ends every session (their jobs finish) and the server.
func (s *Server) Stop() {
	s.mu.Lock()
	s.stopped = true
	var all []*session
	for _, ss := range s.sessions {
		all = append(all, ss)
	}
	s.mu.Unlock()
	for _, ss := range all {
		ss.end("the head stopped")
	}
	s.grpc.Stop()
	s.gcsConn.Close()
}

// Compatible checks a client's build against this process's: same goray
// version, same OS and architecture (the cluster runs the client's binary).
func Compatible(clientVersion, clientOS, clientArch, serverVersion, serverOS, serverArch string) error {
	if clientOS != serverOS || clientArch != serverArch {
		return fmt.Errorf("goray: this program is built for %s/%s but the cluster runs %s/%s: its workers run the driver's own executable, so build it with GOOS=%s GOARCH=%s",
			clientOS, clientArch, serverOS, serverArch, serverOS, serverArch)
	}
	if clientVersion != serverVersion {
		return fmt.Errorf("goray: this program is built with goray %s but the cluster runs goray %s; versions must match", clientVersion, serverVersion)
	}
	return nil
}

// Info tells a client what it connects to (and goray job submit where the
// dashboard is).
func (s *Server) Info(ctx context.Context, _ *clientpb.InfoRequest) (*clientpb.ServerInfo, error) {
	return &clientpb.ServerInfo{Version: version.Version, Goos: goruntime.GOOS, Goarch: goruntime.GOARCH, DashboardAddress: s.cfg.DashboardAddress}, nil
}

// HasBinary and PutBinary pass a client's executable through to the
// GCS package store.
func (s *Server) HasBinary(ctx context.Context, req *clientpb.BinaryRef) (*clientpb.HasBinaryReply, error) {
	r, err := s.gcs.HasBinary(ctx, &rpcpb.BinaryRef{Hash: req.Hash})
	if err != nil {
		return nil, err
	}
	return &clientpb.HasBinaryReply{Found: r.Found}, nil
}

func (s *Server) PutBinary(in clientpb.RayClient_PutBinaryServer) error {
	up, err := s.gcs.PutBinary(in.Context())
	if err != nil {
		return err
	}
	for {
		c, err := in.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if err := up.Send(&rpcpb.Chunk{Hash: c.Hash, Data: c.Data}); err != nil {
			break // the reason comes with CloseAndRecv
		}
	}
	if _, err := up.CloseAndRecv(); err != nil {
		return err
	}
	return in.SendAndClose(&clientpb.UploadReply{})
}

// Session serves one connection of a client session: a new session, or
// the resumption of one whose connection broke.
func (s *Server) Session(st clientpb.RayClient_SessionServer) error {
	f, err := st.Recv()
	if err != nil {
		return err
	}
	h := f.Hello
	if h == nil {
		return status.Error(codes.InvalidArgument, "goray: the first frame of a session must be a hello")
	}
	if err := Compatible(h.Version, h.Goos, h.Goarch, version.Version, goruntime.GOOS, goruntime.GOARCH); err != nil {
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	var ss *session
	if h.SessionId == "" {
		if ss, err = s.newSession(st.Context(), h); err != nil {
			return err
		}
	} else {
		s.mu.Lock()
		ss = s.sessions[h.SessionId]
		s.mu.Unlock()
		if ss == nil {
			return status.Errorf(codes.NotFound, "goray: client session %s is gone (ended, or disconnected longer than its grace period)", h.SessionId)
		}
	}
	gen, err := ss.attach(st, h.Received)
	if err != nil {
		return err
	}
	for {
		f, err := st.Recv()
		if err != nil {
			ss.detach(gen)
			return nil
		}
		// One stream at a time applies messages: a half-open old stream
		// may still deliver while the client's new one does.
		ss.handleMu.Lock()
		for _, m := range ss.link.receive(f) {
			ss.handle(m)
		}
		ss.handleMu.Unlock()
	}
}

func newSessionID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *Server) newSession(ctx context.Context, h *clientpb.Hello) (*session, error) {
	if has, err := s.gcs.HasBinary(ctx, &rpcpb.BinaryRef{Hash: h.BinaryHash}); err != nil {
		return nil, err
	} else if !has.Found {
		return nil, status.Errorf(codes.FailedPrecondition, "goray: executable %s was not uploaded", h.BinaryHash)
	}
	cw, err := core.Start(core.Config{
		GCSAddress: s.cfg.GCSAddress, RayletAddress: s.cfg.RayletAddress, NodeID: s.cfg.NodeID, NodeIP: s.cfg.NodeIP,
		Token: s.cfg.Token, Functions: func(string) (core.Executor, bool) { return nil, false }, Logger: s.log,
	})
	if err != nil {
		return nil, status.Errorf(codes.Internal, "goray: start the session's driver: %v", err)
	}
	id := newSessionID()
	env := map[string]string{}
	for k, v := range h.JobEnv {
		env[k] = v
	}
	env["GORAY_DRIVER_HOST"] = h.Host
	env["GORAY_CLIENT_SESSION"] = id
	job, err := cw.GCS().AddJob(ctx, &rpcpb.JobInfo{
		DriverAddress: cw.Address(), DriverIp: s.cfg.NodeIP, DriverPid: int64(os.Getpid()),
		BinaryHash: h.BinaryHash, Version: version.Version, Entrypoint: h.Entrypoint, Env: env, Namespace: h.Namespace,
	})
	if err != nil {
		cw.Stop()
		return nil, status.Errorf(codes.Internal, "goray: register the session's job: %s", status.Convert(err).Message())
	}
	cw.SetJob(job.JobId)
	grace := time.Duration(h.GraceMs) * time.Millisecond
	if grace <= 0 {
		grace = DefaultGrace
	}
	grace = min(grace, s.cfg.MaxGrace)
	ss := &session{
		s: s, id: id, cw: cw, jobID: job.JobId, namespace: job.Namespace, grace: grace, link: newLink(),
		refs: map[uint64]core.Ref{}, puts: map[uint64]chan []byte{}, reqs: map[uint64]context.CancelFunc{},
	}
	ss.ctx, ss.cancel = context.WithCancel(context.Background())
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		ss.end("the head stopped")
		return nil, status.Error(codes.Unavailable, "goray: the head is stopping")
	}
	s.sessions[id] = ss
	s.mu.Unlock()
	go cw.PrintLogs(job.JobId, logWriter{ss.link})
	s.log.Info("client session started", "session", id, "job", job.JobId, "host", h.Host)
	return ss, nil
}

// logWriter forwards the job's worker output to the client.
type logWriter struct{ l *link }

func (w logWriter) Write(p []byte) (int, error) {
	w.l.send(&clientpb.Msg{Body: &clientpb.Msg_Log{Log: &clientpb.Log{Data: append([]byte(nil), p...)}}})
	return len(p), nil
}

// session is one client's driver on the head.
type session struct {
	s         *Server
	id        string
	cw        *core.CoreWorker
	jobID     string
	namespace string
	grace     time.Duration
	link      *link
	ctx       context.Context
	cancel    context.CancelFunc
	endOnce   sync.Once
	handleMu  sync.Mutex // held while a stream's messages are applied

	// mu guards the fields below. refs are the session's ref numbers, each
	// holding one local reference of cw; puts are values being received.
	mu    sync.Mutex
	refs  map[uint64]core.Ref
	puts  map[uint64]chan []byte        // chunks of values being stored
	reqs  map[uint64]context.CancelFunc // requests in progress, for Abort
	gen   int
	timer *time.Timer // the grace period while disconnected
	ended bool
}

func (ss *session) attach(st clientpb.RayClient_SessionServer, peerRecvd uint64) (int, error) {
	ss.mu.Lock()
	if ss.ended {
		ss.mu.Unlock()
		return 0, status.Errorf(codes.NotFound, "goray: client session %s is gone", ss.id)
	}
	if ss.timer != nil {
		ss.timer.Stop()
		ss.timer = nil
	}
	ss.mu.Unlock()
	w := &clientpb.Welcome{SessionId: ss.id, JobId: ss.jobID, Namespace: ss.namespace, NodeId: ss.s.cfg.NodeID, Received: ss.link.received()}
	if err := st.Send(&clientpb.Frame{Welcome: w}); err != nil {
		ss.startGrace()
		return 0, err
	}
	gen := ss.link.attach(st, peerRecvd)
	ss.mu.Lock()
	ss.gen = gen
	ss.mu.Unlock()
	return gen, nil
}

// detach notes that stream gen broke; the session waits out its grace
// period for the client to come back.
func (ss *session) detach(gen int) {
	if ss.link.detach(gen) {
		ss.s.log.Info("client session disconnected", "session", ss.id, "grace", ss.grace)
		ss.startGrace()
	}
}

func (ss *session) startGrace() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.timer == nil && !ss.ended {
		ss.timer = time.AfterFunc(ss.grace, func() { ss.end("disconnected longer than the grace period") })
	}
}

// end releases everything the session holds: its job finishes (the GCS
// kills its non-detached actors, raylets end its workers) and its core
// worker stops.
func (ss *session) end(reason string) {
	ss.endOnce.Do(func() {
		ss.mu.Lock()
		ss.ended = true
		if ss.timer != nil {
			ss.timer.Stop()
		}
		ss.mu.Unlock()
		ss.s.mu.Lock()
		delete(ss.s.sessions, ss.id)
		ss.s.mu.Unlock()
		ss.s.log.Info("client session ended", "session", ss.id, "job", ss.jobID, "reason", reason)
		ss.cancel()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ss.cw.GCS().MarkJobFinished(ctx, &rpcpb.JobID{JobId: ss.jobID})
		cancel()
		ss.cw.Stop()
		ss.link.close()
	})
}

// reply answers a request (from its goroutine: it sends at once).
func (ss *session) reply(d *clientpb.Done) {
	ss.link.sendNow(&clientpb.Msg{Body: &clientpb.Msg_Done{Done: d}})
}

func (ss *session) fail(req uint64, err error) {
	ss.reply(&clientpb.Done{Req: req, Code: errorCode(err), Error: err.Error()})
}

func (ss *session) ref(n uint64) (core.Ref, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	r, ok := ss.refs[n]
	return r, ok
}

func (ss *session) setRef(n uint64, r core.Ref) {
	ss.mu.Lock()
	ss.refs[n] = r
	ss.mu.Unlock()
}

func (ss *session) args(in []*clientpb.Arg) ([]core.Arg, error) {
	out := make([]core.Arg, len(in))
	for i, a := range in {
		out[i] = core.Arg{Data: a.Data, Contained: fromRefs(a.Contained)}
		if a.Ref != 0 {
			r, ok := ss.ref(a.Ref)
			if !ok {
				return nil, fmt.Errorf("%w: argument %d is no ref of this session", core.ErrObjectUnknown, i)
			}
			out[i] = core.Arg{Ref: &r}
		}
	}
	return out, nil
}

// request runs a request that may block in its own goroutine, cancelable
// by Abort and bounded by timeoutMs when positive.
func (ss *session) request(req uint64, timeoutMs int64, f func(ctx context.Context)) {
	ctx, cancel := context.WithCancel(ss.ctx)
	if timeoutMs > 0 {
		ctx, cancel = context.WithTimeout(ss.ctx, time.Duration(timeoutMs)*time.Millisecond)
	}
	ss.mu.Lock()
	ss.reqs[req] = cancel
	ss.mu.Unlock()
	go func() {
		defer func() {
			ss.mu.Lock()
			delete(ss.reqs, req)
			ss.mu.Unlock()
			cancel()
		}()
		f(ctx)
	}()
}

// handle applies one client message. Messages that name refs resolve
// them here, in order; blocking work runs in goroutines.
func (ss *session) handle(m *clientpb.Msg) {
	cw := ss.cw
	switch b := m.Body.(type) {
	case *clientpb.Msg_Submit:
		req := b.Submit
		var ref core.Ref
		args, err := ss.args(req.Args)
		switch {
		case err != nil:
			// No ref: a Get of it reports the object unknown.
			ss.s.log.Warn("client submission refused", "session", ss.id, "function", req.Function, "error", err)
			ss.link.send(&clientpb.Msg{Body: &clientpb.Msg_RefInfo{RefInfo: &clientpb.RefInfo{N: req.N}}})
			return
		case req.ActorId != "":
			ref = cw.SubmitActorTask(req.ActorId, req.Function, args, req.Function)
		default:
			ref = cw.SubmitTask(req.Function, args, fromTaskOptions(req.Options))
		}
		ss.setRef(req.N, ref)
		ss.link.send(&clientpb.Msg{Body: &clientpb.Msg_RefInfo{RefInfo: &clientpb.RefInfo{N: req.N, Ref: toRef(ref)}}})
	case *clientpb.Msg_Put:
		ss.put(b.Put)
	case *clientpb.Msg_Get:
		g := b.Get
		ref, ok := ss.ref(g.N)
		if !ok {
			ss.fail(g.Req, fmt.Errorf("%w: no ref %d in this session", core.ErrObjectUnknown, g.N))
			return
		}
		get := func(ctx context.Context, inline bool) {
			res, err := cw.Get(ctx, ref)
			if err != nil {
				ss.fail(g.Req, err)
				return
			}
			if inline && len(res.Data) > chunk {
				// Large: sent at the pace of the client's acknowledgements,
				// which this goroutine (the reader) must keep receiving.
				go func() {
					ss.sendData(g.Req, res.Data, res.AppErr)
					res.Release()
				}()
				return
			}
			ss.sendData(g.Req, res.Data, res.AppErr)
			res.Release()
		}
		if readyHere(cw, ref) {
			get(ss.ctx, true) // answered at once, without a goroutine of its own
			return
		}
		ss.request(g.Req, g.TimeoutMs, func(ctx context.Context) { get(ctx, false) })
	case *clientpb.Msg_Wait:
		w := b.Wait
		refs := make([]core.Ref, len(w.Refs))
		for i, n := range w.Refs {
			r, ok := ss.ref(n)
			if !ok {
				ss.fail(w.Req, fmt.Errorf("%w: no ref %d in this session", core.ErrObjectUnknown, n))
				return
			}
			refs[i] = r
		}
		ss.request(w.Req, w.TimeoutMs, func(ctx context.Context) {
			ready, err := cw.Wait(ctx, refs, int(w.NumReturns))
			if err != nil {
				ss.fail(w.Req, err)
				return
			}
			ss.reply(&clientpb.Done{Req: w.Req, Ready: ready})
		})
	case *clientpb.Msg_Cancel:
		c := b.Cancel
		ref, ok := ss.ref(c.N)
		ss.request(c.Req, 0, func(context.Context) {
			err := core.ErrObjectUnknown
			if ok {
				err = cw.Cancel(ref, c.Force)
			}
			if err != nil {
				ss.fail(c.Req, err)
				return
			}
			ss.reply(&clientpb.Done{Req: c.Req})
		})
	case *clientpb.Msg_CreateActor:
		c := b.CreateActor
		args, err := ss.args(c.Args)
		if err != nil {
			ss.fail(c.Req, err)
			return
		}
		ss.request(c.Req, 0, func(ctx context.Context) {
			id, err := cw.CreateActor(ctx, c.Class, args, fromActorOptions(c.Options))
			if err != nil {
				ss.fail(c.Req, err)
				return
			}
			ss.reply(&clientpb.Done{Req: c.Req, ActorId: id})
		})
	case *clientpb.Msg_GetActor:
		g := b.GetActor
		ss.request(g.Req, 0, func(ctx context.Context) {
			id, class, err := cw.GetActor(ctx, g.Name, g.Namespace)
			if err != nil {
				ss.fail(g.Req, err)
				return
			}
			ss.reply(&clientpb.Done{Req: g.Req, ActorId: id, Class: class})
		})
	case *clientpb.Msg_KillActor:
		k := b.KillActor
		ss.request(k.Req, 0, func(ctx context.Context) {
			if err := cw.KillActor(ctx, k.ActorId, k.NoRestart); err != nil {
				ss.fail(k.Req, err)
				return
			}
			ss.reply(&clientpb.Done{Req: k.Req})
		})
	case *clientpb.Msg_Release:
		for _, n := range b.Release.Refs {
			ss.mu.Lock()
			r, ok := ss.refs[n]
			delete(ss.refs, n)
			ss.mu.Unlock()
			if ok {
				cw.RemoveLocalRef(r.ID)
			}
		}
	case *clientpb.Msg_Adopt:
		r := fromRef(b.Adopt.Ref)
		cw.AddBorrowedRef(r)
		ss.setRef(b.Adopt.N, r)
	case *clientpb.Msg_Pin:
		cw.Pin(fromRef(b.Pin.Ref))
	case *clientpb.Msg_KvPut:
		kv := b.KvPut
		ss.request(kv.Req, 0, func(ctx context.Context) {
			if _, err := cw.GCS().KVPut(ctx, &rpcpb.KVRequest{Namespace: kv.Namespace, Key: kv.Key, Value: kv.Value, Overwrite: true}); err != nil {
				ss.fail(kv.Req, errors.New(status.Convert(err).Message()))
				return
			}
			ss.reply(&clientpb.Done{Req: kv.Req})
		})
	case *clientpb.Msg_Abort:
		ss.mu.Lock()
		cancel := ss.reqs[b.Abort.Req]
		ss.mu.Unlock()
		if cancel != nil {
			cancel()
		}
	case *clientpb.Msg_Bye:
		req := b.Bye.Req
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			cw.GCS().MarkJobFinished(ctx, &rpcpb.JobID{JobId: ss.jobID})
			cancel()
			ss.reply(&clientpb.Done{Req: req})
			// The client closes once it has the answer; if it never comes
			// for it, the grace period ends the session.
			time.AfterFunc(2*time.Second, func() { ss.end("the client shut down") })
		}()
	}
}

// put stores a value that arrives in chunks: the first starts the put,
// and the chunks are written into the object as they come.
func (ss *session) put(p *clientpb.Put) {
	ss.mu.Lock()
	ch, ok := ss.puts[p.N]
	if ok && p.Last {
		delete(ss.puts, p.N)
	}
	ss.mu.Unlock()
	if ok {
		select {
		case ch <- p.Data:
		case <-ss.ctx.Done(): // the session ended while the put was stalled
			return
		}
		if p.Last {
			close(ch)
		}
		return
	}
	ch = make(chan []byte, 16)
	ch <- p.Data
	if p.Last {
		close(ch)
	} else {
		ss.mu.Lock()
		ss.puts[p.N] = ch
		ss.mu.Unlock()
	}
	contained := fromRefs(p.Contained)
	ss.request(p.Req, 0, func(ctx context.Context) {
		defer func() {
			for { // a put that failed early still takes its chunks
				select {
				case _, more := <-ch:
					if !more {
						return
					}
				case <-ss.ctx.Done():
					return
				}
			}
		}()
		ref, err := ss.cw.PutEncoded(ctx, p.Size, func(w io.WriterAt) error {
			var off int64
			for {
				var data []byte
				var more bool
				select {
				case data, more = <-ch:
				case <-ctx.Done():
					return ctx.Err()
				}
				if !more {
					break
				}
				if _, err := w.WriteAt(data, off); err != nil {
					return err
				}
				off += int64(len(data))
			}
			if off != p.Size {
				return fmt.Errorf("goray: put of %d bytes got %d", p.Size, off)
			}
			return nil
		}, contained...)
		if err != nil {
			ss.fail(p.Req, err)
			return
		}
		ss.setRef(p.N, ref)
		ss.reply(&clientpb.Done{Req: p.Req, Ref: toRef(ref)})
	})
}

// readyHere reports whether ref's value is ready in cw's process, so a
// Get of it does not wait.
func readyHere(cw *core.CoreWorker, ref core.Ref) bool {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Wait answers from what is ready now
	ready, err := cw.Wait(ctx, []core.Ref{ref}, 1)
	return err == nil && ready[0]
}

// sendData sends a value in chunks (copies: data may alias shared memory
// released before the client acknowledges it), at most sendWindow bytes
// ahead of the client's acknowledgements. Not from the reader goroutine
// unless data fits in one chunk.
func (ss *session) sendData(req uint64, data []byte, appErr bool) {
	size := int64(len(data))
	for off := 0; ; off += chunk {
		if off > 0 {
			if err := ss.link.waitRoom(ss.ctx, sendWindow); err != nil {
				return // the session ended
			}
		}
		end := min(off+chunk, len(data))
		m := &clientpb.Msg{Body: &clientpb.Msg_Data{Data: &clientpb.Data{
			Req: req, Size: size, Data: append([]byte(nil), data[off:end]...), AppError: appErr, Last: end == len(data),
		}}}
		if end == len(data) {
			ss.link.sendNow(m)
			return
		}
		ss.link.send(m) // the writer sends it: waitRoom needs it on its way
	}
}
