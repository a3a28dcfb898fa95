package autoscaler

import (
	"fmt"
	"testing"
	"time"

	"github.com/goray/goray/internal/scheduler"
)

// BenchmarkDecide plans for a 200-node cluster of three types with the
// full demand vector (1,000 shapes of four kinds) and 100 requested bundles.
func BenchmarkDecide(b *testing.B) {
	cfg := Config{MaxWorkers: 500, UpscalingSpeed: 1, IdleTimeout: time.Minute, HeadType: "head",
		Types: map[string]TypeConfig{
			"head": {Resources: scheduler.Resources{"CPU": 8}},
			"cpu":  {Resources: scheduler.Resources{"CPU": 16, "memory": 64 << 30}, MaxWorkers: 300},
			"gpu":  {Resources: scheduler.Resources{"CPU": 8, "GPU": 4}, MaxWorkers: 100},
			"big":  {Resources: scheduler.Resources{"CPU": 64, "memory": 256 << 30}, MaxWorkers: 100},
		}}
	nodes := []NodeState{{ID: "head", Type: "head", Head: true, Total: scheduler.Resources{"CPU": 8}, Available: scheduler.Resources{"CPU": 2}}}
	for i := 0; i < 200; i++ {
		typ := []string{"cpu", "gpu", "big"}[i%3]
		t := cfg.Types[typ].Resources
		avail := t.Clone()
		avail["CPU"] = float64(i % 4)
		nodes = append(nodes, NodeState{ID: fmt.Sprintf("n%03d", i), Type: typ, Total: t, Available: avail, IdleFor: time.Duration(i) * time.Second})
	}
	demands := []Demand{
		{Shape: scheduler.Resources{"CPU": 1}, Count: 600},
		{Shape: scheduler.Resources{"CPU": 2, "GPU": 1}, Count: 200},
		{Shape: scheduler.Resources{"CPU": 4, "memory": 8 << 30}, Count: 150},
		{Shape: scheduler.Resources{"CPU": 32}, Count: 50},
	}
	var reqs []scheduler.Resources
	for i := 0; i < 100; i++ {
		reqs = append(reqs, scheduler.Resources{"CPU": 4})
	}
	s := Snapshot{Config: cfg, Nodes: nodes, Demands: demands, Requests: reqs}
	b.ReportAllocs()
	for b.Loop() {
		Decide(s)
	}
}
