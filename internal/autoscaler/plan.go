package autoscaler

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/goray/goray/internal/scheduler"
)

// MaxDemandVectorSize caps the demands one round considers, as Ray's
// AUTOSCALER_MAX_RESOURCE_DEMAND_VECTOR_SIZE does.
const MaxDemandVectorSize = 1000

// TypeConfig is one node type as the planner sees it.
type TypeConfig struct {
	Resources  scheduler.Resources // what a node of this type advertises
	MinWorkers int
	MaxWorkers int
	// IdleTimeout overrides the cluster's idle timeout when positive.
	IdleTimeout time.Duration
	// LaunchHash is the current ray-launch-config hash; nodes carrying
	// another are outdated. "" disables the check.
	LaunchHash string
}

// Config is the part of the cluster config the planner needs.
type Config struct {
	MaxWorkers     int     // global cap on worker nodes (the head excluded)
	UpscalingSpeed float64 // pending-node budget as a multiple of running nodes
	IdleTimeout    time.Duration
	HeadType       string
	Types          map[string]TypeConfig
}

// NodeState is one node in a snapshot.
type NodeState struct {
	ID   string // node provider id
	Type string // available_node_types key
	Head bool
	// Launching nodes have not joined the cluster yet; they count with
	// their type's resources, all free.
	Launching        bool
	Total, Available scheduler.Resources
	// IdleFor is how long the node has had no leases and no primary
	// objects (0 while busy).
	IdleFor    time.Duration
	LaunchHash string
}

// Demand is Count tasks, actors or job entrypoints waiting for Shape.
type Demand struct {
	Shape scheduler.Resources `json:"shape"`
	Count int                 `json:"count"`
}

// Snapshot is everything one planning round looks at.
type Snapshot struct {
	Config   Config
	Nodes    []NodeState
	Demands  []Demand
	Requests []scheduler.Resources // request_resources bundles
}

// Termination says which node goes and why.
type Termination struct {
	ID, Type, Reason string
}

// Plan is what one round decides.
type Plan struct {
	Launch     map[string]int // node type → nodes to launch now
	Terminate  []Termination
	Infeasible []Demand // shapes no node and no launchable node type can ever fit
	// InfeasibleRequests are request_resources bundles of such shapes.
	InfeasibleRequests []Demand
}

// Decide turns a snapshot into a plan. It follows Ray's v1 autoscaler:
// terminate nodes of removed types, outdated nodes, nodes above per-type
// and global maxima (least recently used first) and nodes idle past their
// timeout (unless min_workers or request_resources need them); then launch
// min_workers, nodes that request_resources bundles need against total
// capacity, and nodes for pending demands that do not bin-pack onto free
// capacity, choosing the type with the best utilisation score and never a
// GPU type for work that needs no GPU when another type fits. Launches for
// demand are limited per type to max(5, upscaling_speed × running nodes of
// the type) pending at once; min_workers and request_resources bypass the
// limit. Decide is pure: the same snapshot always gives the same plan.
func Decide(s Snapshot) Plan {
	cfg := s.Config
	plan := Plan{Launch: map[string]int{}}

	var head []NodeState
	byType := map[string][]NodeState{}
	for _, n := range s.Nodes {
		if n.Head {
			head = append(head, n)
			continue
		}
		t, ok := cfg.Types[n.Type]
		switch {
		case !ok || n.Type == cfg.HeadType:
			plan.Terminate = append(plan.Terminate, Termination{n.ID, n.Type, fmt.Sprintf("node type %q is not a worker type in the config", n.Type)})
		case t.LaunchHash != "" && n.LaunchHash != "" && n.LaunchHash != t.LaunchHash:
			plan.Terminate = append(plan.Terminate, Termination{n.ID, n.Type, "outdated: its node_config changed"})
		default:
			byType[n.Type] = append(byType[n.Type], n)
		}
	}
	// Most recently used first: launching and busy nodes, then idle ones
	// from the shortest idle time.
	recent := func(a, b NodeState) int {
		return cmp.Or(cmp.Compare(a.IdleFor, b.IdleFor), cmp.Compare(a.ID, b.ID))
	}
	var kept []NodeState
	for _, typ := range slices.Sorted(maps.Keys(byType)) {
		ns := byType[typ]
		slices.SortFunc(ns, recent)
		limit := cfg.Types[typ].MaxWorkers
		for i, n := range ns {
			if i >= limit {
				plan.Terminate = append(plan.Terminate, Termination{n.ID, typ, fmt.Sprintf("above max_workers (%d) of its type", limit)})
				continue
			}
			kept = append(kept, n)
		}
	}
	slices.SortFunc(kept, recent)
	if len(kept) > cfg.MaxWorkers {
		for _, n := range kept[cfg.MaxWorkers:] {
			plan.Terminate = append(plan.Terminate, Termination{n.ID, n.Type, fmt.Sprintf("above the cluster's max_workers (%d)", cfg.MaxWorkers)})
		}
		kept = kept[:cfg.MaxWorkers]
	}

	// Idle nodes go unless min_workers or request_resources need them.
	needed := requestedNodes(head, kept, s.Requests)
	perType := map[string]int{}
	var live []NodeState
	for _, n := range kept {
		t := cfg.Types[n.Type]
		timeout := cmp.Or(t.IdleTimeout, cfg.IdleTimeout)
		idle := !n.Launching && n.IdleFor >= timeout && !needed[n.ID]
		if idle && perType[n.Type] >= t.MinWorkers {
			plan.Terminate = append(plan.Terminate, Termination{n.ID, n.Type, fmt.Sprintf("idle for %s (timeout %s)", n.IdleFor.Round(time.Second), timeout)})
			continue
		}
		perType[n.Type]++
		live = append(live, n)
	}

	// Capacity the launches are planned against.
	var avail, total []scheduler.Resources
	for _, n := range append(append([]NodeState{}, head...), live...) {
		total = append(total, n.Total.Clone())
		if n.Launching {
			avail = append(avail, n.Total.Clone())
		} else {
			avail = append(avail, n.Available.Clone())
		}
	}
	running, launching := map[string]int{}, map[string]int{}
	for _, n := range live {
		if n.Launching {
			launching[n.Type]++
		} else {
			running[n.Type]++
		}
	}
	workers := len(live)
	add := func(typ string, counts map[string]int) {
		r := cfg.Types[typ].Resources
		avail = append(avail, r.Clone())
		total = append(total, r.Clone())
		perType[typ]++
		counts[typ]++
		workers++
	}

	// 1. min_workers.
	bypass := map[string]int{}
	for _, typ := range slices.Sorted(maps.Keys(cfg.Types)) {
		if typ == cfg.HeadType {
			continue
		}
		t := cfg.Types[typ]
		for perType[typ] < min(t.MinWorkers, t.MaxWorkers) && workers < cfg.MaxWorkers {
			add(typ, bypass)
		}
	}

	// 2. request_resources: fit against total capacity, ignoring usage.
	residual := binPack(total, countShapes(s.Requests))
	residual = nodesFor(cfg, perType, &workers, residual, func(typ string) { add(typ, bypass) })
	plan.InfeasibleRequests = filterDemands(residual, func(sh scheduler.Resources) bool { return !canEverFit(cfg, s.Nodes, sh) })

	// 3. pending demands against what is free now.
	var demands []Demand
	left := MaxDemandVectorSize
	for _, d := range s.Demands {
		if len(d.Shape) == 0 || d.Count <= 0 || left == 0 {
			continue
		}
		n := min(d.Count, left)
		left -= n
		demands = append(demands, Demand{Shape: d.Shape, Count: n})
	}
	residual = binPack(avail, merge(demands))
	feasible := filterDemands(residual, func(sh scheduler.Resources) bool { return canEverFit(cfg, s.Nodes, sh) })
	plan.Infeasible = filterDemands(residual, func(sh scheduler.Resources) bool { return !canEverFit(cfg, s.Nodes, sh) })
	forDemand := map[string]int{}
	nodesFor(cfg, perType, &workers, feasible, func(typ string) { add(typ, forDemand) })

	// 4. upscaling_speed limits launches for demand, per type.
	for _, typ := range slices.Sorted(maps.Keys(cfg.Types)) {
		want := bypass[typ] + forDemand[typ]
		if want == 0 {
			continue
		}
		maxPending := max(5, int(cfg.UpscalingSpeed*float64(max(running[typ], 1))))
		allowed := max(maxPending-launching[typ], bypass[typ])
		plan.Launch[typ] = min(want, allowed)
		if plan.Launch[typ] <= 0 {
			delete(plan.Launch, typ)
		}
	}
	return plan
}

func filterDemands(ds []Demand, keep func(scheduler.Resources) bool) []Demand {
	var out []Demand
	for _, d := range ds {
		if keep(d.Shape) {
			out = append(out, d)
		}
	}
	return out
}

// countShapes merges equal shapes into demands, sorted by shape.
func countShapes(shapes []scheduler.Resources) []Demand {
	ds := make([]Demand, len(shapes))
	for i, sh := range shapes {
		ds[i] = Demand{Shape: sh, Count: 1}
	}
	return merge(ds)
}

// merge adds up demands of equal shapes; the result is sorted by shape.
func merge(ds []Demand) []Demand {
	byKey := map[string]*Demand{}
	for _, d := range ds {
		k := d.Shape.Key()
		if m := byKey[k]; m != nil {
			m.Count += d.Count
		} else {
			byKey[k] = &Demand{Shape: d.Shape, Count: d.Count}
		}
	}
	out := make([]Demand, 0, len(byKey))
	for _, k := range slices.Sorted(maps.Keys(byKey)) {
		out = append(out, *byKey[k])
	}
	return out
}

// requestedNodes bin-packs request_resources bundles onto node totals,
// busy nodes first, and returns the worker nodes the packing used.
func requestedNodes(head, workers []NodeState, requests []scheduler.Resources) map[string]bool {
	used := map[string]bool{}
	if len(requests) == 0 {
		return used
	}
	nodes := append(append([]NodeState{}, head...), workers...)
	slices.SortStableFunc(nodes[len(head):], func(a, b NodeState) int { return cmp.Compare(a.IdleFor, b.IdleFor) })
	free := make([]scheduler.Resources, len(nodes))
	for i, n := range nodes {
		free[i] = n.Total.Clone()
	}
	for _, d := range sortDemands(countShapes(requests)) {
		left := d.Count
		for i := range free {
			if left == 0 {
				break
			}
			if n := copiesFitting(d.Shape, free[i], left); n > 0 {
				subTimes(free[i], d.Shape, n)
				left -= n
				if !nodes[i].Head {
					used[nodes[i].ID] = true
				}
			}
		}
	}
	return used
}

// canEverFit reports whether some alive node's total, or some node type
// that may still be launched, fits shape.
func canEverFit(cfg Config, nodes []NodeState, shape scheduler.Resources) bool {
	for _, n := range nodes {
		if shape.Fits(n.Total) {
			return true
		}
	}
	for typ, t := range cfg.Types {
		if typ != cfg.HeadType && t.MaxWorkers > 0 && cfg.MaxWorkers > 0 && shape.Fits(t.Resources) {
			return true
		}
	}
	return false
}

// sortDemands orders demands for first-fit packing as Ray does: most
// resource kinds first, then the largest total amount, then by key.
func sortDemands(ds []Demand) []Demand {
	type keyed struct {
		d   Demand
		sum float64
		key string
	}
	ks := make([]keyed, len(ds))
	for i, d := range ds {
		ks[i] = keyed{d: d, key: d.Shape.Key()}
		for _, v := range d.Shape {
			ks[i].sum += v
		}
	}
	slices.SortStableFunc(ks, func(a, b keyed) int {
		return cmp.Or(cmp.Compare(len(b.d.Shape), len(a.d.Shape)), cmp.Compare(b.sum, a.sum), cmp.Compare(a.key, b.key))
	})
	out := make([]Demand, len(ks))
	for i, k := range ks {
		out[i] = k.d
	}
	return out
}

// copiesFitting is how many copies of shape fit in free (at most limit).
func copiesFitting(shape, free scheduler.Resources, limit int) int {
	n := limit
	for k, v := range shape {
		if v <= 0 {
			continue
		}
		n = min(n, int(math.Floor(free[k]/v+1e-9)))
		if n <= 0 {
			return 0
		}
	}
	return n
}

// subTimes subtracts n copies of shape from free.
func subTimes(free, shape scheduler.Resources, n int) {
	for k, v := range shape {
		free[k] -= v * float64(n)
	}
}

// binPack places demands first-fit onto nodes' free resources (subtracting
// what it places) and returns what fits nowhere. Copies of one shape fill
// a node before the next, as first-fit over the expanded list would.
func binPack(free []scheduler.Resources, ds []Demand) []Demand {
	var rest []Demand
	for _, d := range sortDemands(ds) {
		left := d.Count
		for _, f := range free {
			if left == 0 {
				break
			}
			if n := copiesFitting(d.Shape, f, left); n > 0 {
				subTimes(f, d.Shape, n)
				left -= n
			}
		}
		if left > 0 {
			rest = append(rest, Demand{Shape: d.Shape, Count: left})
		}
	}
	return rest
}

// nodesFor adds nodes, one at a time, of the best-scoring type for the
// remaining demands until they are all absorbed, no type fits, or the
// maxima are reached; launch is called for each node added. It returns
// the demands left.
func nodesFor(cfg Config, perType map[string]int, workers *int, ds []Demand, launch func(typ string)) []Demand {
	ds = sortDemands(ds)
	types := slices.Sorted(maps.Keys(cfg.Types))
	for len(ds) > 0 && *workers < cfg.MaxWorkers {
		best, bestScore := "", score{}
		var bestRest []Demand
		for _, typ := range types {
			t := cfg.Types[typ]
			if typ == cfg.HeadType || perType[typ] >= t.MaxWorkers {
				continue
			}
			sc, rest, ok := scoreType(t.Resources, ds)
			if ok && (best == "" || bestScore.less(sc)) {
				best, bestScore, bestRest = typ, sc, rest
			}
		}
		if best == "" {
			break
		}
		launch(best)
		ds = bestRest
	}
	return ds
}

// score ranks a node type for a set of demands, higher is better, after
// Ray's autoscaler v2 scorer: not a GPU node for GPU-free work, then the
// number of the node's resource kinds the demands use, then the minimum
// and the mean utilisation of those kinds.
type score struct {
	gpuOK     int
	kinds     int
	minU, avg float64
}

func (a score) less(b score) bool {
	switch {
	case a.gpuOK != b.gpuOK:
		return a.gpuOK < b.gpuOK
	case a.kinds != b.kinds:
		return a.kinds < b.kinds
	case a.minU != b.minU:
		return a.minU < b.minU
	}
	return a.avg < b.avg
}

// scoreType packs demands into one fresh node of resources r and scores
// the result; ok is false when nothing fits. rest holds what did not fit.
func scoreType(r scheduler.Resources, ds []Demand) (sc score, rest []Demand, ok bool) {
	free := r.Clone()
	usedKinds := map[string]bool{}
	gpuDemand := false
	for _, d := range ds {
		n := copiesFitting(d.Shape, free, d.Count)
		if n < d.Count {
			rest = append(rest, Demand{Shape: d.Shape, Count: d.Count - n})
		}
		if n == 0 {
			continue
		}
		ok = true
		subTimes(free, d.Shape, n)
		for k, v := range d.Shape {
			if v > 0 {
				usedKinds[k] = true
				if k == "GPU" {
					gpuDemand = true
				}
			}
		}
	}
	if !ok {
		return score{}, ds, false
	}
	sc.gpuOK = 1
	if r["GPU"] > 0 && !gpuDemand {
		sc.gpuOK = 0
	}
	sc.minU = math.Inf(1)
	n := 0
	for k := range usedKinds {
		tot := r[k]
		if tot <= 0 {
			continue
		}
		u := (tot - free[k]) / tot
		sc.kinds++
		sc.minU = math.Min(sc.minU, u)
		sc.avg += u
		n++
	}
	if n == 0 {
		sc.minU = 0
	} else {
		sc.avg /= float64(n)
	}
	return sc, rest, true
}
