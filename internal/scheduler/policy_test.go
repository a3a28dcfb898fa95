package scheduler

import (
	"strings"
	"testing"
)

// node builds an alive node with total CPU/GPU and the given CPU in use.
func node(id string, cpu, gpu, usedCPU float64) Node {
	total := Resources{"CPU": cpu, "GPU": gpu}
	avail := total.Clone()
	avail["CPU"] -= usedCPU
	return Node{ID: id, Total: total, Available: avail, Alive: true}
}

func dead(n Node) Node { n.Alive = false; return n }

func TestPick(t *testing.T) {
	cpu1 := Resources{"CPU": 1}
	tests := []struct {
		name  string
		nodes []Node
		local string
		req   Request
		want  Decision
		// reason lists substrings Decision.Reason must contain.
		reason []string
	}{
		{
			name:  "pack on local below threshold",
			nodes: []Node{node("a", 4, 0, 1), node("b", 4, 0, 0)},
			local: "a",
			req:   Request{Shape: cpu1},
			want:  Decision{NodeID: "a", Available: true},
		},
		{
			name:  "spill to least utilised above threshold",
			nodes: []Node{node("a", 4, 0, 3), node("b", 4, 0, 2), node("c", 4, 0, 1)},
			local: "a",
			req:   Request{Shape: cpu1},
			want:  Decision{NodeID: "c", Available: true},
		},
		{
			name:  "local still wins ties above threshold",
			nodes: []Node{node("a", 4, 0, 2), node("b", 4, 0, 2)},
			local: "b",
			req:   Request{Shape: cpu1},
			want:  Decision{NodeID: "b", Available: true},
		},
		{
			name:  "ties among remote nodes go by ID",
			nodes: []Node{node("z", 4, 0, 4), node("c", 4, 0, 1), node("b", 4, 0, 1)},
			local: "z",
			req:   Request{Shape: cpu1},
			want:  Decision{NodeID: "b", Available: true},
		},
		{
			name:  "local unknown picks least utilised",
			nodes: []Node{node("a", 4, 0, 1), node("b", 4, 0, 0)},
			local: "driver",
			req:   Request{Shape: cpu1},
			want:  Decision{NodeID: "b", Available: true},
		},
		{
			name:  "utilisation uses shape's resources",
			nodes: []Node{node("a", 4, 2, 4), {ID: "b", Alive: true, Total: Resources{"GPU": 2}, Available: Resources{"GPU": 1}}},
			local: "b",
			req:   Request{Shape: Resources{"GPU": 1}},
			// a: GPU util 0 (CPU busy is irrelevant); b: GPU util 0.5, not below threshold.
			want: Decision{NodeID: "a", Available: true},
		},
		{
			name:  "no availability queues at local if feasible",
			nodes: []Node{node("a", 4, 0, 4), node("b", 4, 0, 4)},
			local: "b",
			req:   Request{Shape: cpu1},
			want:  Decision{NodeID: "b"},
		},
		{
			name:  "no availability queues at least utilised feasible node",
			nodes: []Node{node("a", 2, 0, 0), node("b", 8, 0, 7), node("c", 8, 0, 6)},
			local: "a",
			req:   Request{Shape: Resources{"CPU": 4}},
			want:  Decision{NodeID: "c"},
		},
		{
			name:   "infeasible names shape and largest",
			nodes:  []Node{node("a", 4, 2, 0), node("b", 4, 4, 0)},
			local:  "a",
			req:    Request{Shape: Resources{"GPU": 8}},
			want:   Decision{Infeasible: true},
			reason: []string{"GPU=8", "largest GPU: 4 on b"},
		},
		{
			name:   "dead nodes ignored",
			nodes:  []Node{dead(node("a", 4, 8, 0)), node("b", 4, 0, 0)},
			local:  "a",
			req:    Request{Shape: Resources{"GPU": 8}},
			want:   Decision{Infeasible: true},
			reason: []string{"GPU=8", "no node has GPU"},
		},
		{
			name:  "dead local not chosen",
			nodes: []Node{dead(node("a", 4, 0, 0)), node("b", 4, 0, 3)},
			local: "a",
			req:   Request{Shape: cpu1},
			want:  Decision{NodeID: "b", Available: true},
		},
		{
			name:  "hard affinity available",
			nodes: []Node{node("a", 4, 0, 0), node("b", 4, 0, 3)},
			local: "a",
			req:   Request{Shape: cpu1, Strategy: NodeAffinity, AffinityNodeID: "b"},
			want:  Decision{NodeID: "b", Available: true},
		},
		{
			name:  "hard affinity busy queues there",
			nodes: []Node{node("a", 4, 0, 0), node("b", 4, 0, 4)},
			local: "a",
			req:   Request{Shape: cpu1, Strategy: NodeAffinity, AffinityNodeID: "b"},
			want:  Decision{NodeID: "b"},
		},
		{
			name:   "hard affinity dead node infeasible",
			nodes:  []Node{node("a", 4, 0, 0), dead(node("b", 4, 0, 0))},
			local:  "a",
			req:    Request{Shape: cpu1, Strategy: NodeAffinity, AffinityNodeID: "b"},
			want:   Decision{Infeasible: true},
			reason: []string{`"b"`, "dead"},
		},
		{
			name:   "hard affinity unknown node infeasible",
			nodes:  []Node{node("a", 4, 0, 0)},
			local:  "a",
			req:    Request{Shape: cpu1, Strategy: NodeAffinity, AffinityNodeID: "ghost"},
			want:   Decision{Infeasible: true},
			reason: []string{`"ghost"`},
		},
		{
			name:   "hard affinity never fits",
			nodes:  []Node{node("a", 4, 0, 0), node("b", 4, 8, 0)},
			local:  "b",
			req:    Request{Shape: Resources{"CPU": 8}, Strategy: NodeAffinity, AffinityNodeID: "a"},
			want:   Decision{Infeasible: true},
			reason: []string{`"a"`, "CPU=8"},
		},
		{
			name:  "soft affinity available",
			nodes: []Node{node("a", 4, 0, 0), node("b", 4, 0, 3)},
			local: "a",
			req:   Request{Shape: cpu1, Strategy: NodeAffinity, AffinityNodeID: "b", AffinitySoft: true},
			want:  Decision{NodeID: "b", Available: true},
		},
		{
			name:  "soft affinity busy falls back to default",
			nodes: []Node{node("a", 4, 0, 0), node("b", 4, 0, 4)},
			local: "a",
			req:   Request{Shape: cpu1, Strategy: NodeAffinity, AffinityNodeID: "b", AffinitySoft: true},
			want:  Decision{NodeID: "a", Available: true},
		},
		{
			name:  "soft affinity dead falls back to default",
			nodes: []Node{node("a", 4, 0, 0), dead(node("b", 4, 0, 0))},
			local: "a",
			req:   Request{Shape: cpu1, Strategy: NodeAffinity, AffinityNodeID: "b", AffinitySoft: true},
			want:  Decision{NodeID: "a", Available: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := NewPolicy().Pick(tt.nodes, tt.local, tt.req)
			reason := got.Reason
			got.Reason = ""
			if got != tt.want {
				t.Fatalf("Pick = %+v, want %+v", got, tt.want)
			}
			if tt.want.Infeasible && reason == "" {
				t.Fatal("infeasible decision has no Reason")
			}
			for _, s := range tt.reason {
				if !strings.Contains(reason, s) {
					t.Errorf("Reason %q does not contain %q", reason, s)
				}
			}
		})
	}
}

func TestSpreadCoversAllNodes(t *testing.T) {
	nodes := []Node{node("c", 4, 0, 0), node("a", 4, 0, 0), dead(node("d", 4, 0, 0)), node("b", 4, 0, 0)}
	p := NewPolicy()
	req := Request{Shape: Resources{"CPU": 1}, Strategy: Spread}
	var got []string
	for range 6 {
		d := p.Pick(nodes, "a", req)
		if !d.Available {
			t.Fatalf("idle cluster gave unavailable decision %+v", d)
		}
		got = append(got, d.NodeID)
	}
	if s := strings.Join(got, ","); s != "a,b,c,a,b,c" {
		t.Fatalf("spread order = %s, want a,b,c,a,b,c", s)
	}
}

func TestSpreadSkipsBusyAndQueues(t *testing.T) {
	p := NewPolicy()
	req := Request{Shape: Resources{"CPU": 1}, Strategy: Spread}
	busy := []Node{node("a", 4, 0, 0), node("b", 4, 0, 4), node("c", 4, 0, 0)}
	var got []string
	for range 4 {
		got = append(got, p.Pick(busy, "a", req).NodeID)
	}
	if s := strings.Join(got, ","); s != "a,c,a,c" {
		t.Fatalf("spread with busy b = %s, want a,c,a,c", s)
	}

	full := []Node{node("a", 4, 0, 4), node("b", 4, 0, 4), node("small", 0.5, 0, 0)}
	seen := map[string]bool{}
	for range 2 {
		d := p.Pick(full, "a", req)
		if d.Available || d.Infeasible {
			t.Fatalf("full cluster: got %+v, want queued", d)
		}
		seen[d.NodeID] = true
	}
	if !seen["a"] || !seen["b"] {
		t.Fatalf("queued picks %v should rotate over feasible a and b", seen)
	}

	if d := p.Pick(full, "a", Request{Shape: Resources{"GPU": 1}, Strategy: Spread}); !d.Infeasible {
		t.Fatalf("spread GPU on CPU cluster = %+v, want infeasible", d)
	}
}
