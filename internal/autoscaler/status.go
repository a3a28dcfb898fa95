package autoscaler

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// StatusNode is one node as seen by `goray status`. Total and Available map
// resource names to amounts (memory resources in bytes).
type StatusNode struct {
	ID, Type, IP string
	InstanceID   string // the node provider's id
	Alive        bool
	Reason       string // why a dead node died
	Total        map[string]float64
	Available    map[string]float64
}

// StatusDemand is a resource shape that Count tasks/actors are waiting for.
// Infeasible demands (no node type can ever fit them) are listed with the rest.
type StatusDemand struct {
	Shape      map[string]float64
	Count      int64
	Infeasible bool
}

// Status is the input to FormatStatus. Pending and Failures hold
// ready-made lines such as " <type>, <n> launching"; a zero Time means now.
type Status struct {
	Time     time.Time
	Nodes    []StatusNode
	Pending  []string
	Failures []string
	Demands  []StatusDemand
	// Requests are request_resources bundles, shown as Ray does.
	Requests []StatusDemand
	// reported holds provider ids the autoscaler's failures name, so a
	// dead node is not listed twice.
	reported map[string]bool
}

// AddReport adds what the autoscaler published: its pending nodes, in
// Ray's " <ip>: <type>, launching" form (" <type>, <n> launching" for
// nodes without an address yet), its launch failures, and the infeasible
// demands it found.
func (s *Status) AddReport(r Report) {
	launching := map[string]int{}
	for _, p := range r.Pending {
		if p.IP != "" {
			s.Pending = append(s.Pending, fmt.Sprintf(" %s: %s, launching", p.IP, p.NodeType))
		} else {
			launching[p.NodeType]++
		}
	}
	for _, typ := range slices.Sorted(maps.Keys(launching)) {
		s.Pending = append(s.Pending, fmt.Sprintf(" %s, %d launching", typ, launching[typ]))
	}
	if s.reported == nil {
		s.reported = map[string]bool{}
	}
	for _, f := range r.Failures {
		typ := f.NodeType
		if typ == "" {
			typ = "autoscaler"
		}
		when := f.Time.Local().Format("15:04:05")
		if f.NodeID != "" {
			s.reported[f.NodeID] = true
			when = f.NodeID + ", " + when
		}
		s.Failures = append(s.Failures, fmt.Sprintf(" %s: %s (%s) - %s", typ, f.Kind, when, f.Detail))
	}
	for _, d := range r.Extra {
		s.Demands = append(s.Demands, StatusDemand{Shape: d.Shape, Count: int64(d.Count)})
	}
	for _, d := range r.Infeasible {
		s.Demands = append(s.Demands, StatusDemand{Shape: d.Shape, Count: 0, Infeasible: true})
	}
	for _, d := range r.Requests {
		s.Requests = append(s.Requests, StatusDemand{Shape: d.Shape, Count: int64(d.Count), Infeasible: d.Infeasible})
	}
}

// FormatStatus renders s in the layout of Ray's autoscaler v1
// format_info_string (non-verbose), as printed by `ray status`: healthy nodes
// counted per type, failures for dead nodes, resource usage summed over alive
// nodes (names containing "node:" and "accelerator_type:*" are hidden, as in
// Ray), and pending demands. The result has no trailing newline.
func FormatStatus(s Status) string {
	t := s.Time
	if t.IsZero() {
		t = time.Now()
	}
	header := "======== Autoscaler status: " + t.Local().Format("2006-01-02 15:04:05.000000") + " ========"
	sep := strings.Repeat("-", len(header))

	healthy := map[string]int{}
	var failures []string
	total, avail := map[string]float64{}, map[string]float64{}
	for _, n := range s.Nodes {
		if !n.Alive {
			if s.reported[n.InstanceID] && n.InstanceID != "" {
				continue // the autoscaler's entry says more
			}
			line := fmt.Sprintf(" %s: NodeTerminated (ip: %s)", n.Type, n.IP)
			if n.Reason != "" {
				line += " - " + n.Reason
			}
			failures = append(failures, line)
			continue
		}
		healthy[n.Type]++
		for k, v := range n.Total {
			total[k] += v
			avail[k] += n.Available[k]
		}
	}
	var healthyLines []string
	for _, typ := range slices.Sorted(maps.Keys(healthy)) {
		healthyLines = append(healthyLines, fmt.Sprintf(" %d %s", healthy[typ], typ))
	}

	var usage []string
	for _, k := range slices.Sorted(maps.Keys(total)) {
		if strings.Contains(k, "node:") || strings.HasPrefix(k, "accelerator_type:") {
			continue
		}
		used, tot := total[k]-avail[k], total[k]
		if k == "memory" || k == "object_store_memory" {
			usage = append(usage, fmt.Sprintf(" %s/%s %s", formatMemory(used), formatMemory(tot), k))
		} else {
			usage = append(usage, fmt.Sprintf(" %s/%s %s", pyFloat(used), pyFloat(tot), k))
		}
	}

	failures = append(failures, s.Failures...)

	counts := map[string]int64{} // Ray merges demands of the same shape.
	infeasible := map[string]bool{}
	for _, d := range s.Demands {
		counts[pyDict(d.Shape)] += d.Count
		infeasible[pyDict(d.Shape)] = infeasible[pyDict(d.Shape)] || d.Infeasible
	}
	var demands []string
	reqCounts := map[string]int64{}
	reqInfeasible := map[string]bool{}
	for _, d := range s.Requests {
		reqCounts[pyDict(d.Shape)] += d.Count
		reqInfeasible[pyDict(d.Shape)] = reqInfeasible[pyDict(d.Shape)] || d.Infeasible
	}
	for _, shape := range slices.Sorted(maps.Keys(reqCounts)) {
		line := fmt.Sprintf(" %s: %d+ from request_resources()", shape, reqCounts[shape])
		if reqInfeasible[shape] {
			line += " (infeasible: no node type can ever fit it)"
		}
		demands = append(demands, line)
	}
	for _, shape := range slices.Sorted(maps.Keys(counts)) {
		if counts[shape] == 0 {
			continue // only the autoscaler's note; no raylet reports it waiting now
		}
		line := fmt.Sprintf(" %s: %d+ pending tasks/actors", shape, counts[shape])
		if infeasible[shape] {
			line += " (infeasible: no node type can ever fit it)"
		}
		demands = append(demands, line)
	}

	var b strings.Builder
	line := func(parts ...string) {
		for _, p := range parts {
			b.WriteString(p)
			b.WriteByte('\n')
		}
	}
	line(header, "Node status", sep, "Healthy:", strings.Join(healthyLines, "\n"), "Pending:")
	line(orDefault(s.Pending, " (no pending nodes)"), "Recent failures:", orDefault(failures, " (no failures)"))
	line("", "Resources", sep, "Usage:", strings.Join(usage, "\n"), "Demands:")
	b.WriteString(orDefault(demands, " (no resource demands)"))
	return b.String()
}

func orDefault(lines []string, empty string) string {
	if len(lines) == 0 {
		return empty
	}
	return strings.Join(lines, "\n")
}

// formatMemory follows Ray's format_memory: two decimals in the largest binary
// unit (TiB, GiB, MiB, KiB) not exceeding the value, else whole bytes ("0B").
func formatMemory(bytes float64) string {
	for _, u := range []struct {
		suffix string
		size   float64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if bytes >= u.size {
			return fmt.Sprintf("%.2f%s", bytes/u.size, u.suffix)
		}
	}
	return fmt.Sprintf("%dB", int64(bytes))
}

// pyFloat formats f like Python's repr(float): shortest round-trip digits,
// always with a decimal point, exponent form only below 1e-4 or from 1e16.
func pyFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	e := strconv.FormatFloat(f, 'e', -1, 64) // e.g. "1.5e+06"; Go and Python both pad to 2 exponent digits
	if exp, _ := strconv.Atoi(e[strings.LastIndexByte(e, 'e')+1:]); f != 0 && (exp < -4 || exp >= 16) {
		return e
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

// pyDict renders a shape like Python's repr of a dict with sorted keys,
// e.g. {'CPU': 1.0, 'GPU': 8.0}.
func pyDict(m map[string]float64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, pyStr(k)+": "+pyFloat(m[k]))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// pyStr quotes s like Python's repr(str) for printable text: single quotes
// unless s contains ' and no ".
func pyStr(s string) string {
	q := "'"
	if strings.Contains(s, "'") && !strings.Contains(s, `"`) {
		q = `"`
	}
	s = strings.ReplaceAll(s, `\`, `\\`)
	return q + strings.ReplaceAll(s, q, `\`+q) + q
}
