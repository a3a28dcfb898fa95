package autoscaler

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/goray/goray/internal/scheduler"
)

type R = scheduler.Resources

func testConfig() Config {
	return Config{
		MaxWorkers: 3, UpscalingSpeed: 1, IdleTimeout: time.Minute, HeadType: "head",
		Types: map[string]TypeConfig{
			"head":   {Resources: R{"CPU": 0}},
			"worker": {Resources: R{"CPU": 2}, MaxWorkers: 3, LaunchHash: "h1"},
		},
	}
}

func headNode() NodeState {
	return NodeState{ID: "head", Type: "head", Head: true, Total: R{"CPU": 0}, Available: R{"CPU": 0}}
}

func worker(id string, availCPU float64, idle time.Duration) NodeState {
	return NodeState{ID: id, Type: "worker", Total: R{"CPU": 2}, Available: R{"CPU": availCPU}, IdleFor: idle, LaunchHash: "h1"}
}

func ids(ts []Termination) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.ID)
	}
	return out
}

func TestDecide(t *testing.T) {
	gpuTypes := testConfig()
	gpuTypes.MaxWorkers = 10
	gpuTypes.Types = map[string]TypeConfig{
		"head": {Resources: R{}},
		"gpu":  {Resources: R{"CPU": 8, "GPU": 1}, MaxWorkers: 5},
		"cpu":  {Resources: R{"CPU": 4}, MaxWorkers: 5},
	}
	minOne := testConfig()
	minOne.Types["worker"] = TypeConfig{Resources: R{"CPU": 2}, MinWorkers: 1, MaxWorkers: 3, LaunchHash: "h1"}
	wide := testConfig()
	wide.MaxWorkers = 100
	wide.Types["worker"] = TypeConfig{Resources: R{"CPU": 1}, MaxWorkers: 100}
	fast := wide
	fast.UpscalingSpeed = 2

	tests := []struct {
		name          string
		cfg           Config
		nodes         []NodeState
		demands       []Demand
		requests      []R
		launch        map[string]int
		terminate     []string
		infeasible    []string
		reasonContain string
	}{
		{name: "six one-CPU tasks need three 2-CPU nodes", cfg: testConfig(), nodes: []NodeState{headNode()},
			demands: []Demand{{R{"CPU": 1}, 6}}, launch: map[string]int{"worker": 3}},
		{name: "capped by max_workers", cfg: testConfig(), nodes: []NodeState{headNode()},
			demands: []Demand{{R{"CPU": 1}, 20}}, launch: map[string]int{"worker": 3}},
		{name: "full running nodes: launch the rest", cfg: testConfig(), nodes: []NodeState{headNode(), worker("a", 0, 0), worker("b", 0, 0)},
			demands: []Demand{{R{"CPU": 1}, 4}}, launch: map[string]int{"worker": 1}},
		{name: "free capacity absorbs demand", cfg: testConfig(), nodes: []NodeState{headNode(), worker("a", 2, 0)},
			demands: []Demand{{R{"CPU": 1}, 2}}, launch: map[string]int{}},
		{name: "launching nodes absorb demand", cfg: testConfig(),
			nodes:   []NodeState{headNode(), {ID: "l1", Type: "worker", Launching: true, Total: R{"CPU": 2}, LaunchHash: "h1"}, {ID: "l2", Type: "worker", Launching: true, Total: R{"CPU": 2}, LaunchHash: "h1"}},
			demands: []Demand{{R{"CPU": 1}, 4}}, launch: map[string]int{}},
		{name: "999 GPUs is infeasible and launches nothing", cfg: testConfig(), nodes: []NodeState{headNode()},
			demands: []Demand{{R{"GPU": 999}, 1}}, launch: map[string]int{}, infeasible: []string{"GPU"}},
		{name: "a shape larger than every type is infeasible", cfg: testConfig(), nodes: []NodeState{headNode()},
			demands: []Demand{{R{"CPU": 3}, 2}, {R{"CPU": 1}, 1}}, launch: map[string]int{"worker": 1}, infeasible: []string{"CPU=3"}},
		{name: "no declared resources still needs 1 CPU to place", cfg: testConfig(), nodes: []NodeState{headNode()},
			demands: []Demand{{R{"CPU": 1}, 1}}, launch: map[string]int{"worker": 1}},
		{name: "CPU work avoids GPU nodes", cfg: gpuTypes, nodes: []NodeState{{ID: "head", Type: "head", Head: true}},
			demands: []Demand{{R{"CPU": 4}, 2}}, launch: map[string]int{"cpu": 2}},
		{name: "GPU work gets a GPU node", cfg: gpuTypes, nodes: []NodeState{{ID: "head", Type: "head", Head: true}},
			demands: []Demand{{R{"CPU": 1, "GPU": 1}, 1}}, launch: map[string]int{"gpu": 1}},
		{name: "min_workers kept up without demand", cfg: minOne, nodes: []NodeState{headNode()}, launch: map[string]int{"worker": 1}},
		{name: "idle nodes go, the most recently used is kept for min_workers", cfg: minOne,
			nodes:  []NodeState{headNode(), worker("old", 2, 10*time.Minute), worker("newer", 2, 2*time.Minute)},
			launch: map[string]int{}, terminate: []string{"old"}, reasonContain: "idle"},
		{name: "a busy node satisfies min_workers", cfg: minOne,
			nodes:  []NodeState{headNode(), worker("old", 2, 10*time.Minute), worker("newer", 2, 2*time.Minute), worker("busy", 1, 0)},
			launch: map[string]int{}, terminate: []string{"newer", "old"}, reasonContain: "idle"},
		{name: "idle below the timeout stays", cfg: testConfig(), nodes: []NodeState{headNode(), worker("a", 2, 30*time.Second)},
			launch: map[string]int{}},
		{name: "request_resources launches against total capacity", cfg: testConfig(), nodes: []NodeState{headNode()},
			requests: []R{{"CPU": 1}, {"CPU": 1}, {"CPU": 1}, {"CPU": 1}}, launch: map[string]int{"worker": 2}},
		{name: "request_resources keeps idle nodes", cfg: testConfig(),
			nodes:    []NodeState{headNode(), worker("a", 2, time.Hour), worker("b", 2, time.Hour)},
			requests: []R{{"CPU": 2}}, launch: map[string]int{}, terminate: []string{"b"}},
		{name: "outdated and removed types are terminated", cfg: testConfig(),
			nodes:  []NodeState{headNode(), {ID: "x", Type: "gone", Total: R{"CPU": 2}}, {ID: "o", Type: "worker", Total: R{"CPU": 2}, Available: R{"CPU": 0}, LaunchHash: "h0"}},
			launch: map[string]int{}, terminate: []string{"x", "o"}},
		{name: "above max_workers the least recently used go", cfg: testConfig(),
			nodes:  []NodeState{headNode(), worker("a", 0, 0), worker("b", 2, 5*time.Second), worker("c", 2, 20*time.Second), worker("d", 1, 0)},
			launch: map[string]int{}, terminate: []string{"c"}, reasonContain: "max_workers"},
		{name: "upscaling_speed: at most 5 pending from zero", cfg: wide, nodes: []NodeState{headNode()},
			demands: []Demand{{R{"CPU": 1}, 40}}, launch: map[string]int{"worker": 5}},
		{name: "upscaling_speed: a multiple of running nodes, less those launching", cfg: fast,
			nodes:   append([]NodeState{headNode(), {ID: "l", Type: "worker", Launching: true, Total: R{"CPU": 1}}}, busyWorkers(10)...),
			demands: []Demand{{R{"CPU": 1}, 40}}, launch: map[string]int{"worker": 19}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := Decide(Snapshot{Config: tc.cfg, Nodes: tc.nodes, Demands: tc.demands, Requests: tc.requests})
			if !reflect.DeepEqual(p.Launch, tc.launch) {
				t.Errorf("launch = %v, want %v", p.Launch, tc.launch)
			}
			if got := ids(p.Terminate); !reflect.DeepEqual(got, tc.terminate) {
				t.Errorf("terminate = %v, want %v (%+v)", got, tc.terminate, p.Terminate)
			}
			for _, term := range p.Terminate {
				if tc.reasonContain != "" && !strings.Contains(term.Reason, tc.reasonContain) {
					t.Errorf("reason %q lacks %q", term.Reason, tc.reasonContain)
				}
			}
			var inf []string
			for _, d := range p.Infeasible {
				inf = append(inf, d.Shape.Key())
			}
			if len(inf) != len(tc.infeasible) {
				t.Fatalf("infeasible = %v, want %v", inf, tc.infeasible)
			}
			for i := range inf {
				if !strings.Contains(inf[i], tc.infeasible[i]) {
					t.Errorf("infeasible = %v, want %v", inf, tc.infeasible)
				}
			}
			if again := Decide(Snapshot{Config: tc.cfg, Nodes: tc.nodes, Demands: tc.demands, Requests: tc.requests}); !reflect.DeepEqual(again, p) {
				t.Errorf("Decide is not deterministic: %+v then %+v", p, again)
			}
		})
	}
}

func busyWorkers(n int) []NodeState {
	var out []NodeState
	for i := 0; i < n; i++ {
		out = append(out, NodeState{ID: string(rune('a' + i)), Type: "worker", Total: R{"CPU": 1}, Available: R{"CPU": 0}})
	}
	return out
}
