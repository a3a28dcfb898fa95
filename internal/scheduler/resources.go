// Package scheduler makes pure placement decisions for tasks and actors: given a
// snapshot of cluster nodes and a resource request it picks a node. It does no
// I/O and starts no goroutines; callers own the node view and apply decisions.
package scheduler

import (
	"sort"
	"strconv"
	"strings"
)

// tolerance absorbs float rounding from fractional resources (e.g. 0.1 GPU).
const tolerance = 1e-9

// Resources maps resource names (CPU, GPU, memory, custom) to logical quantities.
// A missing name means zero.
type Resources map[string]float64

// Fits reports whether every positive quantity in r is at most the matching
// quantity in avail (missing = 0), within a 1e-9 tolerance. Zero entries in r
// are ignored.
func (r Resources) Fits(avail Resources) bool {
	for k, v := range r {
		if v > 0 && v > avail[k]+tolerance {
			return false
		}
	}
	return true
}

// Add adds o to r in place. r must be non-nil.
func (r Resources) Add(o Resources) {
	for k, v := range o {
		r[k] += v
	}
}

// Sub subtracts o from r in place. Results may go negative (blocked workers
// release their CPU and oversubscribe the node, as in Ray). r must be non-nil.
func (r Resources) Sub(o Resources) {
	for k, v := range o {
		r[k] -= v
	}
}

// Clone returns an independent copy of r (non-nil even when r is nil).
func (r Resources) Clone() Resources {
	c := make(Resources, len(r))
	for k, v := range r {
		c[k] = v
	}
	return c
}

// Key returns a canonical form such as "CPU=1,GPU=0.5": names sorted, zero
// entries skipped. Equal shapes give equal keys, so it serves as the
// scheduling-class key.
func (r Resources) Key() string {
	names := make([]string, 0, len(r))
	for k, v := range r {
		if v != 0 {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	var b strings.Builder
	for i, k := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(strconv.FormatFloat(r[k], 'g', -1, 64))
	}
	return b.String()
}
