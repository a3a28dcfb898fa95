package scheduler

import (
	"fmt"
	"testing"
)

// BenchmarkPick measures one placement decision on a 100-node view, the
// work a raylet does per lease request.
func BenchmarkPick(b *testing.B) {
	nodes := make([]Node, 100)
	for i := range nodes {
		nodes[i] = Node{
			ID: fmt.Sprintf("node%03d", i), Alive: true,
			Total:     Resources{"CPU": 16, "memory": 64 << 30},
			Available: Resources{"CPU": float64(i % 17), "memory": 32 << 30},
		}
	}
	for name, s := range map[string]Strategy{"default": Default, "spread": Spread} {
		b.Run(name, func(b *testing.B) {
			p := NewPolicy()
			req := Request{Shape: Resources{"CPU": 2}, Strategy: s}
			for b.Loop() {
				if d := p.Pick(nodes, "node000", req); d.NodeID == "" {
					b.Fatal("no node picked")
				}
			}
		})
	}
}
