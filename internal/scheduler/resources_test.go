package scheduler

import "testing"

func TestFits(t *testing.T) {
	tests := []struct {
		name     string
		r, avail Resources
		want     bool
	}{
		{"exact", Resources{"CPU": 2}, Resources{"CPU": 2}, true},
		{"less", Resources{"CPU": 1}, Resources{"CPU": 2, "GPU": 1}, true},
		{"more", Resources{"CPU": 3}, Resources{"CPU": 2}, false},
		{"missing key is zero", Resources{"GPU": 1}, Resources{"CPU": 8}, false},
		{"zero entry ignored", Resources{"GPU": 0, "CPU": 1}, Resources{"CPU": 1}, true},
		{"within tolerance", Resources{"GPU": 0.3}, Resources{"GPU": 0.1 + 0.2 - 1e-10}, true},
		{"beyond tolerance", Resources{"GPU": 0.3}, Resources{"GPU": 0.3 - 1e-6}, false},
		{"empty shape", Resources{}, nil, true},
		{"negative avail", Resources{"CPU": 1}, Resources{"CPU": -1}, false},
	}
	for _, tt := range tests {
		if got := tt.r.Fits(tt.avail); got != tt.want {
			t.Errorf("%s: %v.Fits(%v) = %v, want %v", tt.name, tt.r, tt.avail, got, tt.want)
		}
	}
}

func TestAddSubClone(t *testing.T) {
	r := Resources{"CPU": 4}
	c := r.Clone()
	r.Sub(Resources{"CPU": 5, "GPU": 1})
	if r["CPU"] != -1 || r["GPU"] != -1 {
		t.Fatalf("Sub: got %v, want CPU=-1 GPU=-1 (oversubscription allowed)", r)
	}
	r.Add(Resources{"CPU": 5, "GPU": 1})
	if r["CPU"] != 4 || r["GPU"] != 0 {
		t.Fatalf("Add: got %v", r)
	}
	if len(c) != 1 || c["CPU"] != 4 {
		t.Fatalf("Clone changed with original: %v", c)
	}
	if Resources(nil).Clone() == nil {
		t.Fatal("Clone of nil should be non-nil")
	}
}

func TestKey(t *testing.T) {
	tests := []struct {
		r    Resources
		want string
	}{
		{Resources{"GPU": 0.5, "CPU": 1}, "CPU=1,GPU=0.5"},
		{Resources{"memory": 1e9, "CPU": 2, "GPU": 0, "accel": 1}, "CPU=2,accel=1,memory=1e+09"},
		{Resources{"GPU": 0}, ""},
		{nil, ""},
	}
	for _, tt := range tests {
		if got := tt.r.Key(); got != tt.want {
			t.Errorf("%v.Key() = %q, want %q", tt.r, got, tt.want)
		}
	}
}
