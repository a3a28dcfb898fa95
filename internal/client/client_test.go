package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/core"
	"github.com/goray/goray/internal/version"
	"github.com/goray/goray/proto/clientpb"
	"github.com/goray/goray/proto/rpcpb"
)

// lossySender delivers frames to a peer link until cut, then drops them.
type lossySender struct {
	mu    sync.Mutex
	peer  *link
	cut   bool
	gotMu *sync.Mutex
	got   *[]uint64
}

func (s *lossySender) Send(f *clientpb.Frame) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cut {
		return errors.New("connection cut")
	}
	for _, m := range s.peer.receive(f) {
		s.gotMu.Lock()
		*s.got = append(*s.got, m.GetRelease().Refs[0])
		s.gotMu.Unlock()
	}
	return nil
}

func (s *lossySender) setCut() {
	s.mu.Lock()
	s.cut = true
	s.mu.Unlock()
}

func release(n uint64) *clientpb.Msg {
	return &clientpb.Msg{Body: &clientpb.Msg_Release{Release: &clientpb.Release{Refs: []uint64{n}}}}
}

// TestLinkResendsAfterReattach: messages sent while a stream is cut, or
// lost with it, arrive after the next attach exactly once and in order.
func TestLinkResendsAfterReattach(t *testing.T) {
	a, b := newLink(), newLink()
	defer a.close()
	defer b.close()
	var got []uint64
	var mu sync.Mutex
	snapshot := func() []uint64 {
		mu.Lock()
		defer mu.Unlock()
		return append([]uint64(nil), got...)
	}
	s1 := &lossySender{peer: b, gotMu: &mu, got: &got}
	a.attach(s1, 0)
	for i := uint64(1); i <= 100; i++ {
		a.send(release(i))
		if i == 40 {
			s1.setCut()
		}
	}
	time.Sleep(50 * time.Millisecond)
	s2 := &lossySender{peer: b, gotMu: &mu, got: &got}
	a.attach(s2, b.received())
	for i := uint64(101); i <= 120; i++ {
		a.send(release(i))
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(snapshot()) < 120 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	g := snapshot()
	if len(g) != 120 {
		t.Fatalf("received %d messages, want 120: %v", len(g), g)
	}
	for i, n := range g {
		if n != uint64(i+1) {
			t.Fatalf("message %d is %d: %v", i, n, g)
		}
	}
	// A duplicate of an old frame is dropped.
	if out := b.receive(&clientpb.Frame{Seq: 5, Msgs: []*clientpb.Msg{release(5)}}); len(out) != 0 {
		t.Fatalf("duplicate delivered: %v", out)
	}
}

// TestLinkAcks: acknowledged messages are no longer kept.
func TestLinkAcks(t *testing.T) {
	l := newLink()
	defer l.close()
	for i := uint64(1); i <= 10; i++ {
		l.send(release(i))
	}
	l.receive(&clientpb.Frame{Ack: 7})
	l.mu.Lock()
	n, base := len(l.unacked), l.base
	l.mu.Unlock()
	if n != 3 || base != 8 {
		t.Fatalf("after ack 7: %d kept from %d, want 3 from 8", n, base)
	}
}

func TestCompatible(t *testing.T) {
	for _, tc := range []struct {
		cv, co, ca, sv, so, sa string
		want                   string
	}{
		{"1", "linux", "amd64", "1", "linux", "amd64", ""},
		{"1", "darwin", "arm64", "1", "linux", "amd64", "built for darwin/arm64 but the cluster runs linux/amd64"},
		{"1", "linux", "arm64", "1", "linux", "amd64", "GOOS=linux GOARCH=amd64"},
		{"1", "linux", "amd64", "2", "linux", "amd64", "built with goray 1 but the cluster runs goray 2"},
	} {
		err := Compatible(tc.cv, tc.co, tc.ca, tc.sv, tc.so, tc.sa)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Compatible(%v) = %v, want %q", tc, err, tc.want)
		}
	}
}

func TestGraceFromEnv(t *testing.T) {
	for _, tc := range []struct {
		goray, ray string
		want       time.Duration
		bad        bool
	}{
		{"", "", DefaultGrace, false},
		{"5", "", 5 * time.Second, false},
		{"", "7", 7 * time.Second, false},
		{"1.5", "9", 1500 * time.Millisecond, false},
		{"250ms", "", 250 * time.Millisecond, false},
		{"soon", "", 0, true},
		{"-1", "", 0, true},
		// 0 means the default, as on the server; huge values are capped at
		// the server's 1 h instead of overflowing.
		{"0", "", DefaultGrace, false},
		{"0s", "", DefaultGrace, false},
		{"1e300", "", MaxGrace, false},
		{"100000h", "", MaxGrace, false},
	} {
		t.Setenv("GORAY_CLIENT_RECONNECT_GRACE_PERIOD", tc.goray)
		t.Setenv("RAY_CLIENT_RECONNECT_GRACE_PERIOD", tc.ray)
		got, err := GraceFromEnv()
		if (err != nil) != tc.bad || (!tc.bad && got != tc.want) {
			t.Errorf("%q/%q: %v %v, want %v", tc.goray, tc.ray, got, err, tc.want)
		}
	}
}

func TestErrorCodesRoundTrip(t *testing.T) {
	for _, c := range errorCodes {
		err := fmt.Errorf("wrapped: %w", c.err)
		d := &clientpb.Done{Code: errorCode(err), Error: err.Error()}
		back := doneError(d)
		if !errors.Is(back, c.err) || back.Error() != err.Error() {
			t.Errorf("%v came back as %v", err, back)
		}
	}
	if errorCode(errors.New("other")) != clientpb.ErrorCode_OTHER || doneError(&clientpb.Done{}) != nil {
		t.Error("plain errors")
	}
	if !errors.Is(doneError(&clientpb.Done{Code: clientpb.ErrorCode_SHUTDOWN, Error: "x"}), core.ErrShutdown) {
		t.Error("shutdown")
	}
}

// startServer runs a client server whose GCS does not exist: enough for
// the checks a session makes before it needs the cluster.
func startServer(t *testing.T, token string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Start(Config{Listener: ln, GCSAddress: "127.0.0.1:1", Token: token, DashboardAddress: "127.0.0.1:8265"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s.Address()
}

func hello(t *testing.T, addr, token string, h *clientpb.Hello) error {
	t.Helper()
	cc, err := grpc.NewClient(addr, append(auth.DialOptions(token), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(frameCodec{})))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := clientpb.NewRayClientClient(cc).Session(ctx)
	if err != nil {
		return err
	}
	st.Send(&clientpb.Frame{Hello: h})
	_, err = st.Recv()
	return err
}

// TestSessionRefusals: the server refuses a client of another platform or
// version (with a message that says so), a wrong or missing token, and an
// unknown session.
func TestSessionRefusals(t *testing.T) {
	addr := startServer(t, "secret")
	ok := func() *clientpb.Hello {
		return &clientpb.Hello{Version: version.Version, Goos: goruntime.GOOS, Goarch: goruntime.GOARCH}
	}
	other := "arm64"
	if goruntime.GOARCH == "arm64" {
		other = "amd64"
	}
	h := ok()
	h.Goarch = other
	err := hello(t, addr, "secret", h)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), fmt.Sprintf("built for %s/%s but the cluster runs %s/%s", goruntime.GOOS, other, goruntime.GOOS, goruntime.GOARCH)) {
		t.Errorf("other arch: %v", err)
	}
	h = ok()
	h.Version = "0.0.0-elsewhere"
	if err := hello(t, addr, "secret", h); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "versions must match") {
		t.Errorf("other version: %v", err)
	}
	if err := hello(t, addr, "wrong", ok()); status.Code(err) != codes.PermissionDenied {
		t.Errorf("wrong token: %v", err)
	}
	if err := hello(t, addr, "", ok()); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no token: %v", err)
	}
	h = ok()
	h.SessionId = "gone"
	if err := hello(t, addr, "secret", h); status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "is gone") {
		t.Errorf("unknown session: %v", err)
	}
	if err := hello(t, addr, "secret", nil); status.Code(err) != codes.InvalidArgument {
		t.Errorf("no hello: %v", err)
	}
	// Info answers with the token; DashboardAddress uses it.
	dash, err := DashboardAddress(context.Background(), addr, "secret")
	if err != nil || dash != "127.0.0.1:8265" {
		t.Errorf("dashboard: %q %v", dash, err)
	}
	if _, err := DashboardAddress(context.Background(), addr, "wrong"); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("dashboard with a wrong token: %v", err)
	}
	// No token sent (GORAY_AUTH_MODE=disabled): say so, and advise once.
	_, err = DashboardAddress(context.Background(), addr, "")
	if err == nil || !strings.Contains(err.Error(), "this program sent none") || strings.Contains(err.Error(), "refused this program's token") ||
		strings.Count(err.Error(), "GORAY_AUTH_TOKEN") != 1 {
		t.Errorf("dashboard with no token: %v", err)
	}
	// A GCS call to the client server suggests goray://.
	cc, err := grpc.NewClient(addr, append(auth.DialOptions("secret"), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(NotGCSInterceptor(addr)))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	_, err = rpcpb.NewGcsServiceClient(cc).GetAllNodes(context.Background(), &rpcpb.Empty{})
	if status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), "use the address goray://"+addr) {
		t.Errorf("GCS call to the client server: %v", err)
	}
}

func TestParseAddress(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok, bad  bool
	}{
		{"10.0.0.1:6379", "", false, false},
		{"http://h:8265", "", false, false},
		{"", "", false, false},
		{"goray://h:1234", "h:1234", true, false},
		{"ray://h:1234", "h:1234", true, false},
		{"GORAY://h:1234", "h:1234", true, false},
		{"Ray://h", "h:10001", true, false},
		{"goray://h", "h:10001", true, false},
		{"goray://h/", "h:10001", true, false},
		{"goray://10.1.2.3", "10.1.2.3:10001", true, false},
		{"goray://[::1]", "[::1]:10001", true, false},
		{"goray://[::1]:7", "[::1]:7", true, false},
		{"goray://h:", "", true, true},
		{"goray://", "", true, true},
		{"goray://:10001", "", true, true},
		{"goray://h:port", "", true, true},
		{"goray://h:99999", "", true, true},
	} {
		got, ok, err := ParseAddress(tc.in)
		if got != tc.want || ok != tc.ok || (err != nil) != tc.bad {
			t.Errorf("ParseAddress(%q) = %q %v %v, want %q %v bad=%v", tc.in, got, ok, err, tc.want, tc.ok, tc.bad)
		}
		if err != nil && (!strings.Contains(err.Error(), "want goray://HOST[:PORT]") || strings.Contains(err.Error(), "resolver")) {
			t.Errorf("ParseAddress(%q): unclear error %v", tc.in, err)
		}
	}
}

func TestCheckGrace(t *testing.T) {
	if _, err := CheckGrace(-time.Second); err == nil {
		t.Error("negative grace accepted")
	}
	if g, _ := CheckGrace(0); g != DefaultGrace {
		t.Errorf("0 -> %s", g)
	}
	if g, _ := CheckGrace(1000 * time.Hour); g != MaxGrace {
		t.Errorf("1000h -> %s", g)
	}
}

func TestFrameCodecRoundTrip(t *testing.T) {
	f := &clientpb.Frame{Seq: 9, Ack: 4, Msgs: []*clientpb.Msg{
		{Body: &clientpb.Msg_Put{Put: &clientpb.Put{Req: 1, N: 2, Size: 5, Data: []byte("hello"), Contained: []*clientpb.Ref{{Id: "a", Owner: "b"}}}}},
		release(3),
		{Body: &clientpb.Msg_Data{Data: &clientpb.Data{Req: 4, Size: 0, Last: true}}},
		{Body: &clientpb.Msg_Data{Data: &clientpb.Data{Req: 5, Size: 3, Data: []byte("abc"), AppError: true, Last: true}}},
	}}
	c := frameCodec{}
	wire, err := c.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	if string(f.Msgs[0].GetPut().Data) != "hello" {
		t.Fatal("Marshal changed the frame")
	}
	var back clientpb.Frame
	if err := c.Unmarshal(wire, &back); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(f, &back) {
		t.Fatalf("round trip:\n%v\n%v", f, &back)
	}
	// Truncated or padded input is refused, never a panic.
	b := wire.Materialize()
	for _, bad := range [][]byte{b[:len(b)-1], append(append([]byte(nil), b...), 0), b[:3], nil, {0xff}} {
		var x clientpb.Frame
		if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(bad)}, &x); err == nil {
			t.Errorf("malformed frame %q accepted", bad)
		}
	}
	// Other messages are plain protobuf.
	wire, err = c.Marshal(&clientpb.ServerInfo{Version: "v"})
	if err != nil {
		t.Fatal(err)
	}
	var info clientpb.ServerInfo
	if err := c.Unmarshal(wire, &info); err != nil || info.Version != "v" {
		t.Fatalf("proto message: %v %v", &info, err)
	}
}

// TestLinkWaitRoom: a sender waits while too much is unacknowledged and
// resumes once the peer acknowledges.
func TestLinkWaitRoom(t *testing.T) {
	l := newLink()
	defer l.close()
	big := &clientpb.Msg{Body: &clientpb.Msg_Data{Data: &clientpb.Data{Data: make([]byte, 1000)}}}
	l.send(big)
	l.send(big)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := l.waitRoom(ctx, 1500); err == nil {
		t.Fatal("waitRoom returned with 2000 bytes unacknowledged")
	}
	done := make(chan error, 1)
	go func() { done <- l.waitRoom(context.Background(), 1500) }()
	time.Sleep(20 * time.Millisecond)
	l.receive(&clientpb.Frame{Ack: 1})
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waitRoom did not return after the ack")
	}
	if err := l.waitRoom(context.Background(), 1500); err != nil {
		t.Fatal(err)
	}
}
