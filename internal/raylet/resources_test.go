package raylet

import (
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

func writeTestFile(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDetectGPUs(t *testing.T) {
	tests := []struct {
		name   string
		script string // "" means no nvidia-smi on PATH
		want   int
	}{
		{"two GPUs", "#!/bin/sh\n[ \"$1\" = -L ] || exit 2\necho 'GPU 0: NVIDIA H100 (UUID: GPU-aaaa)'\necho 'GPU 1: NVIDIA H100 (UUID: GPU-bbbb)'\necho '  MIG 1g.10gb Device 0: (UUID: MIG-cccc)'\n", 2},
		{"fails", "#!/bin/sh\necho 'GPU 0: NVIDIA H100'\nexit 1\n", 0},
		{"missing", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.script != "" {
				writeTestFile(t, dir, "nvidia-smi", tt.script, 0o755)
			}
			t.Setenv("PATH", dir)
			if got := DetectGPUs(); got != tt.want {
				t.Errorf("DetectGPUs() = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestCgroupCPUQuota(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		content string
		want    int
	}{
		{"max 100000\n", 0},
		{"150000 100000\n", 2},
		{"200000 100000\n", 2},
		{"50000 100000", 1},
		{"garbage", 0},
	}
	for _, tt := range tests {
		p := writeTestFile(t, dir, "cpu.max", tt.content, 0o644)
		if got := cgroupCPUQuota(p); got != tt.want {
			t.Errorf("cgroupCPUQuota(%q) = %d, want %d", tt.content, got, tt.want)
		}
	}
	if got := cgroupCPUQuota(filepath.Join(dir, "absent")); got != 0 {
		t.Errorf("missing file: got %d, want 0", got)
	}
}

func TestDetectCPUs(t *testing.T) {
	old := cgroupCPUMax
	t.Cleanup(func() { cgroupCPUMax = old })
	dir := t.TempDir()
	cgroupCPUMax = writeTestFile(t, dir, "cpu.max", "max 100000\n", 0o644)
	if got := DetectCPUs(); got != runtime.NumCPU() {
		t.Errorf("no quota: got %d, want %d", got, runtime.NumCPU())
	}
	if runtime.NumCPU() > 1 {
		cgroupCPUMax = writeTestFile(t, dir, "cpu.max", "50000 100000\n", 0o644)
		if got := DetectCPUs(); got != 1 {
			t.Errorf("quota 0.5 CPU: got %d, want 1", got)
		}
	}
}

func TestMemInfo(t *testing.T) {
	dir := t.TempDir()
	full := writeTestFile(t, dir, "a", "MemTotal:       16000000 kB\nMemFree:         1000 kB\nMemAvailable:    8000000 kB\n", 0o644)
	noAvail := writeTestFile(t, dir, "b", "MemTotal:       16000000 kB\nMemFree:         1000 kB\n", 0o644)
	if got, want := memInfo(full), int64(8000000*1024); got != want {
		t.Errorf("MemAvailable: got %d, want %d", got, want)
	}
	if got, want := memInfo(noAvail), int64(16000000*1024); got != want {
		t.Errorf("MemTotal fallback: got %d, want %d", got, want)
	}
	if got := memInfo(filepath.Join(dir, "absent")); got != 0 {
		t.Errorf("unreadable: got %d, want 0", got)
	}
	if runtime.GOOS == "linux" && DetectMemory() <= 0 {
		t.Errorf("DetectMemory() = %d on linux, want > 0", DetectMemory())
	}
}

func TestParseResources(t *testing.T) {
	tests := []struct {
		in      string
		want    map[string]float64
		wantErr string // substring; "" means success
	}{
		{"", map[string]float64{}, ""},
		{"{}", map[string]float64{}, ""},
		{` {"Resource1": 4, "accel": 0.5, "z": 0} `, map[string]float64{"Resource1": 4, "accel": 0.5, "z": 0}, ""},
		{`[1]`, nil, "not a JSON object"},
		{`null`, nil, "not a JSON object"},
		{`{"a": 1`, nil, "not a JSON object"},
		{`{"a": 1} x`, nil, "not a JSON object"},
		{`{"a": "4"}`, nil, `"a": value 4 is not a number`},
		{`{"a": {"b": 1}}`, nil, `"a"`},
		{`{"a": -1}`, nil, `"a": value -1 must be a non-negative number`},
		{`{"CPU": 4}`, nil, `"CPU" cannot be set here; use --num-cpus`},
		{`{"GPU": 1}`, nil, "--num-gpus"},
		{`{"memory": 1}`, nil, "--memory"},
		{`{"object_store_memory": 1}`, nil, "--object-store-memory"},
		{`{"": 1}`, nil, "empty resource name"},
	}
	for _, tt := range tests {
		got, err := ParseResources(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "raylet: ") {
				t.Errorf("ParseResources(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseResources(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseLabels(t *testing.T) {
	tests := []struct {
		in      string
		want    map[string]string
		wantErr string
	}{
		{"", map[string]string{}, ""},
		{"{}", map[string]string{}, ""},
		{" zone = us-west-1a , team=ml.infra,example.com/tier=gold,empty= ", map[string]string{"zone": "us-west-1a", "team": "ml.infra", "example.com/tier": "gold", "empty": ""}, ""},
		{`{"zone": " us-west-1a ", "a_b": "c"}`, map[string]string{"zone": "us-west-1a", "a_b": "c"}, ""},
		{"zone", nil, `"zone": missing '='`},
		{"a=1,,b=2", nil, `"": missing '='`},
		{"=v", nil, `"=v": empty key`},
		{"a=1,a=2", nil, `"a=2": duplicate key "a"`},
		{`{"a": "1", "a": "2"}`, nil, `duplicate key "a"`},
		{`{"a": 1}`, nil, `"a": value 1 is not a string`},
		{`{"a": ["x"]}`, nil, `"a"`},
		{`{"a": "1"`, nil, "not a JSON object"},
		{"a b=1", nil, `"a b=1": key may only contain`},
		{"k=v/w", nil, `"k=v/w": value may only contain`},
		{"k=a b", nil, `"k=a b": value may only contain`},
		{"ray.io/node-id=x", nil, `"ray.io/node-id=x": the ray.io/ key prefix is reserved`},
		{`{"ray.io/market-type": "spot"}`, nil, "reserved"},
	}
	for _, tt := range tests {
		got, err := ParseLabels(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "raylet: ") {
				t.Errorf("ParseLabels(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseLabels(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}
