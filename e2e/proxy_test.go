package e2e

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// proxy is a TCP proxy a test controls: it can cut every connection
// (and refuse new ones) until restored, and it can drop connections that
// carry no bytes for longer than an idle timeout, as NATs and load
// balancers do.
type proxy struct {
	ln       net.Listener
	target   string
	idle     time.Duration
	accepted atomic.Int64

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
}

func startProxy(t *testing.T, target string, idle time.Duration) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, idle: idle, conns: map[net.Conn]struct{}{}}
	t.Cleanup(func() { ln.Close(); p.Cut() })
	go p.serve()
	return p
}

func (p *proxy) Addr() string { return p.ln.Addr().String() }

// Accepted is how many connections the proxy has passed through.
func (p *proxy) Accepted() int64 { return p.accepted.Load() }

// Cut closes every connection and refuses new ones until Restore.
func (p *proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]struct{}{}
}

func (p *proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

func (p *proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *proxy) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil || !p.track(in, out) {
			in.Close()
			if out != nil {
				out.Close()
			}
			continue
		}
		p.accepted.Add(1)
		var last atomic.Int64
		last.Store(time.Now().UnixNano())
		pipe := func(dst, src net.Conn) {
			buf := make([]byte, 256<<10)
			for {
				n, err := src.Read(buf)
				if n > 0 {
					last.Store(time.Now().UnixNano())
					if _, err := dst.Write(buf[:n]); err != nil {
						break
					}
				}
				if err != nil { // io.EOF or a closed connection
					break
				}
			}
			in.Close()
			out.Close()
		}
		go pipe(in, out)
		go pipe(out, in)
		if p.idle > 0 {
			go func() {
				for {
					time.Sleep(100 * time.Millisecond)
					if time.Since(time.Unix(0, last.Load())) > p.idle {
						in.Close()
						out.Close()
						return
					}
					p.mu.Lock()
					_, live := p.conns[in]
					p.mu.Unlock()
					if !live {
						return
					}
				}
			}()
		}
	}
}
