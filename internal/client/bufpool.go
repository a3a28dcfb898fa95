package client

import (
	"math/bits"
	"sync"
)

// dirtyPool is gRPC's buffer pool for the client protocol: buffers in
// power-of-two size classes, not cleared on reuse (gRPC fills a buffer
// before it reads it), so streaming large values does not pay for zeroing.
type dirtyPool struct{ classes [33]sync.Pool }

var bufPool = &dirtyPool{}

func sizeClass(n int) int {
	if n <= 1 {
		return 0
	}
	return bits.Len(uint(n - 1))
}

func (p *dirtyPool) Get(n int) *[]byte {
	c := sizeClass(n)
	if c >= len(p.classes) {
		b := make([]byte, n)
		return &b
	}
	if b, ok := p.classes[c].Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<c)
	return &b
}

func (p *dirtyPool) Put(b *[]byte) {
	c := sizeClass(cap(*b))
	if c < len(p.classes) && cap(*b) == 1<<c {
		p.classes[c].Put(b)
	}
}
