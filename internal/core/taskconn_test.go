package core

import (
	"bufio"
	"context"
	"encoding/binary"
	"net"
	"strings"
	"testing"

	"github.com/goray/goray/internal/codec"
	"github.com/goray/goray/proto/rpcpb"
)

// newTaskServer serves framed task connections of a core worker that knows
// one function, without any cluster around it.
func newTaskServer(t *testing.T, token string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cw := &CoreWorker{
		cfg: Config{Token: token, NodeID: "node1", NodeIP: "127.0.0.1", Functions: func(name string) (Executor, bool) {
			if name != "echo" {
				return nil, false
			}
			return func(ctx context.Context, args [][]byte) ([]byte, error) { return args[0], nil }, true
		}},
		ctx: ctx, cancel: cancel, running: map[string]context.CancelFunc{},
	}
	go cw.serveTasks(ln)
	t.Cleanup(func() { cancel(); ln.Close() })
	return ln.Addr().String()
}

func TestTaskConnPipelinesInOrder(t *testing.T) {
	addr := newTaskServer(t, "secret")
	tc, err := DialTask(context.Background(), addr, "secret")
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	const n = 50
	for i := 0; i < n; i++ {
		arg, _ := codec.Encode(i)
		if err := tc.Send(&rpcpb.TaskSpec{TaskId: string(rune('a' + i%26)), Function: "echo", Args: [][]byte{arg}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		r, err := tc.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var got int
		if err := codec.Decode(r.Result, &got); err != nil || got != i || r.NodeId != "node1" {
			t.Fatalf("reply %d: %d %v %+v", i, got, err, r)
		}
	}
	// An unknown function is an application error, not a broken connection.
	tc.Send(&rpcpb.TaskSpec{TaskId: "x", Function: "nope"})
	r, err := tc.Recv()
	if err != nil || !r.AppError {
		t.Fatalf("unknown function: %+v %v", r, err)
	}
	te := &TaskError{}
	if codec.Decode(r.Result, te); !strings.Contains(te.Message, "not registered") {
		t.Fatalf("unknown function message: %q", te.Message)
	}
}

func TestTaskConnRefusesWrongToken(t *testing.T) {
	addr := newTaskServer(t, "secret")
	if _, err := DialTask(context.Background(), addr, "guess"); err == nil || !strings.Contains(err.Error(), "invalid token") {
		t.Fatalf("wrong token: %v", err)
	}
	if _, err := DialTask(context.Background(), addr, ""); err == nil {
		t.Fatal("missing token accepted")
	}
}

func TestTaskConnRejectsOversizedFrame(t *testing.T) {
	addr := newTaskServer(t, "")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := bufio.NewWriter(c)
	writeFrame(w, nil) // empty token: auth disabled on this server
	w.Flush()
	r := bufio.NewReader(c)
	if ok, err := r.ReadByte(); err != nil || ok != 0 {
		t.Fatalf("handshake: %d %v", ok, err)
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], maxFrame+1)
	c.Write(hdr[:])
	// The server drops the connection rather than allocating the frame.
	if _, err := r.ReadByte(); err == nil {
		t.Fatal("server answered an oversized frame")
	}
}
