package autoscaler

import (
	"strings"
	"testing"
	"time"
)

var statusTime = time.Date(2026, 11, 30, 2, 3, 59, 123456000, time.Local)

const gib = 1 << 30

func node(id, typ string, alive bool, total, avail map[string]float64) StatusNode {
	return StatusNode{ID: id, Type: typ, IP: "10.0.0." + id, Alive: alive, Total: total, Available: avail}
}

func TestFormatStatus(t *testing.T) {
	tests := []struct {
		name string
		in   Status
		want string
	}{
		{
			name: "example",
			in: Status{Time: statusTime, Nodes: []StatusNode{
				node("1", "node_x", true, map[string]float64{"CPU": 2, "memory": 0.5 * gib, "node:10.0.0.1": 1}, map[string]float64{"CPU": 0, "memory": 0.5 * gib, "node:10.0.0.1": 1}),
				node("2", "node_x", true, map[string]float64{"CPU": 2, "memory": 0.5 * gib}, map[string]float64{"CPU": 2, "memory": 0.5 * gib}),
				node("3", "node_x", true, map[string]float64{"CPU": 2, "memory": 0.5 * gib}, map[string]float64{"CPU": 2, "memory": 0.5 * gib}),
			}},
			want: `======== Autoscaler status: 2026-11-30 02:03:59.123456 ========
Node status
---------------------------------------------------------------
Healthy:
 3 node_x
Pending:
 (no pending nodes)
Recent failures:
 (no failures)

Resources
---------------------------------------------------------------
Usage:
 2.0/6.0 CPU
 0B/1.50GiB memory
Demands:
 (no resource demands)`,
		},
		{
			name: "dead node, pending, several types",
			in: Status{Time: statusTime, Pending: []string{" gpu_worker, 2 launching"}, Nodes: []StatusNode{
				node("1", "head", true, map[string]float64{"CPU": 8, "object_store_memory": 2 * gib, "custom": 1, "accelerator_type:H100": 1}, map[string]float64{"CPU": 7.5, "object_store_memory": 1.5 * gib, "custom": 0.75, "accelerator_type:H100": 1}),
				node("2", "worker", true, map[string]float64{"CPU": 4, "GPU": 1}, map[string]float64{"CPU": 4, "GPU": 0}),
				node("3", "worker", false, map[string]float64{"CPU": 100, "GPU": 8}, map[string]float64{"CPU": 100, "GPU": 8}),
			}},
			want: `======== Autoscaler status: 2026-11-30 02:03:59.123456 ========
Node status
---------------------------------------------------------------
Healthy:
 1 head
 1 worker
Pending:
 gpu_worker, 2 launching
Recent failures:
 worker: NodeTerminated (ip: 10.0.0.3)

Resources
---------------------------------------------------------------
Usage:
 0.5/12.0 CPU
 1.0/1.0 GPU
 0.25/1.0 custom
 512.00MiB/2.00GiB object_store_memory
Demands:
 (no resource demands)`,
		},
		{
			name: "demands incl. infeasible, merged by shape",
			in: Status{Time: statusTime, Nodes: []StatusNode{
				node("1", "head", true, map[string]float64{"CPU": 1}, map[string]float64{"CPU": 0}),
			}, Demands: []StatusDemand{
				{Shape: map[string]float64{"GPU": 8, "CPU": 1}, Count: 5, Infeasible: true},
				{Shape: map[string]float64{"CPU": 1}, Count: 3},
				{Shape: map[string]float64{"CPU": 1}, Count: 2},
				{Shape: map[string]float64{"custom": 0.5}, Count: 1},
			}},
			want: `======== Autoscaler status: 2026-11-30 02:03:59.123456 ========
Node status
---------------------------------------------------------------
Healthy:
 1 head
Pending:
 (no pending nodes)
Recent failures:
 (no failures)

Resources
---------------------------------------------------------------
Usage:
 1.0/1.0 CPU
Demands:
 {'CPU': 1.0, 'GPU': 8.0}: 5+ pending tasks/actors (infeasible: no node type can ever fit it)
 {'CPU': 1.0}: 5+ pending tasks/actors
 {'custom': 0.5}: 1+ pending tasks/actors`,
		},
		{
			name: "with the autoscaler's report",
			in: func() Status {
				st := Status{Time: statusTime, Nodes: []StatusNode{
					node("1", "head", true, map[string]float64{"CPU": 0}, map[string]float64{"CPU": 0}),
					{ID: "2", Type: "worker", IP: "10.0.0.2", Reason: "health check failed", Total: map[string]float64{"CPU": 2}},
				}}
				st.AddReport(Report{
					Pending:    []PendingNode{{ID: "a", NodeType: "worker"}, {ID: "b", NodeType: "worker"}, {ID: "c", NodeType: "gpu", IP: "10.0.0.7"}},
					Failures:   []Failure{{Time: statusTime, NodeType: "gpu", Kind: "LaunchFailed", Detail: "quota exceeded"}},
					Infeasible: []Demand{{Shape: map[string]float64{"GPU": 999}, Count: 1}},
					Extra:      []Demand{{Shape: map[string]float64{"CPU": 1}, Count: 2}},
					Requests: []RequestDemand{{Demand: Demand{Shape: map[string]float64{"CPU": 2}, Count: 3}},
						{Demand: Demand{Shape: map[string]float64{"TPU": 1}, Count: 1}, Infeasible: true}},
				})
				st.Demands = append(st.Demands, StatusDemand{Shape: map[string]float64{"GPU": 999}, Count: 1})
				return st
			}(),
			want: `======== Autoscaler status: 2026-11-30 02:03:59.123456 ========
Node status
---------------------------------------------------------------
Healthy:
 1 head
Pending:
 10.0.0.7: gpu, launching
 worker, 2 launching
Recent failures:
 worker: NodeTerminated (ip: 10.0.0.2) - health check failed
 gpu: LaunchFailed (` + statusTime.Local().Format("15:04:05") + `) - quota exceeded

Resources
---------------------------------------------------------------
Usage:
 0.0/0.0 CPU
Demands:
 {'CPU': 2.0}: 3+ from request_resources()
 {'TPU': 1.0}: 1+ from request_resources() (infeasible: no node type can ever fit it)
 {'CPU': 1.0}: 2+ pending tasks/actors
 {'GPU': 999.0}: 1+ pending tasks/actors (infeasible: no node type can ever fit it)`,
		},
		{
			name: "no alive nodes",
			in:   Status{Time: statusTime, Nodes: []StatusNode{node("9", "w", false, map[string]float64{"CPU": 1}, nil)}},
			want: `======== Autoscaler status: 2026-11-30 02:03:59.123456 ========
Node status
---------------------------------------------------------------
Healthy:

Pending:
 (no pending nodes)
Recent failures:
 w: NodeTerminated (ip: 10.0.0.9)

Resources
---------------------------------------------------------------
Usage:

Demands:
 (no resource demands)`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FormatStatus(tt.in); got != tt.want {
				t.Errorf("FormatStatus mismatch\ngot:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestFormatStatusDashes(t *testing.T) {
	out := FormatStatus(Status{Time: statusTime})
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "-") && l != strings.Repeat("-", 63) {
			t.Errorf("separator %q has %d characters, want 63", l, len(l))
		}
	}
}

func TestFormatMemory(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{0, "0B"},
		{1023, "1023B"},
		{1023.9, "1023B"},
		{1 << 10, "1.00KiB"},
		{1<<20 - 1, "1024.00KiB"},
		{1 << 20, "1.00MiB"},
		{1<<30 - 1<<20, "1023.00MiB"},
		{1 << 30, "1.00GiB"},
		{1.5 * (1 << 30), "1.50GiB"},
		{1 << 40, "1.00TiB"},
		{3 << 40, "3.00TiB"},
		{1 << 50, "1024.00TiB"},
	}
	for _, tt := range tests {
		if got := formatMemory(tt.in); got != tt.want {
			t.Errorf("formatMemory(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestPyFloat(t *testing.T) {
	tenth := 0.1 // a variable, so the sum below is not folded exactly at compile time
	tests := []struct {
		in   float64
		want string
	}{
		{0, "0.0"},
		{2, "2.0"},
		{0.5, "0.5"},
		{1.25, "1.25"},
		{tenth + 0.2, "0.30000000000000004"},
		{1e6, "1000000.0"},
		{123456789012345, "123456789012345.0"},
		{1e16, "1e+16"},
		{1.5e20, "1.5e+20"},
		{0.0001, "0.0001"},
		{0.00001, "1e-05"},
		{-3, "-3.0"},
	}
	for _, tt := range tests {
		if got := pyFloat(tt.in); got != tt.want {
			t.Errorf("pyFloat(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := pyDict(map[string]float64{"it's": 1, "a": 2}); got != `{'a': 2.0, "it's": 1.0}` {
		t.Errorf("pyDict = %s", got)
	}
}
