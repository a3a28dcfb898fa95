package autoscaler

import (
	"cmp"
	"fmt"
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
	for _, typ := range sortedKeys(byType) {
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
	for _, typ := range sortedKeys(cfg.Types) {
		if typ == cfg.HeadType {
			continue
		}
		t := cfg.Types[typ]
		for perType[typ] < min(t.MinWorkers, t.MaxWorkers) && workers < cfg.MaxWorkers {
			add(typ, bypass)
		}
	}

	// 2. request_resources: fit against total capacity, ignoring usage.
	residual := binPack(total, s.Requests)
	residual = nodesFor(cfg, perType, &workers, residual, func(typ string) { add(typ, bypass) })
	plan.InfeasibleRequests = countShapes(filterShapes(residual, func(sh scheduler.Resources) bool { return !canEverFit(cfg, s.Nodes, sh) }))

	// 3. pending demands against what is free now.
	var shapes []scheduler.Resources
	for _, d := range s.Demands {
		if len(d.Shape) == 0 {
			continue
		}
		for i := 0; i < d.Count && len(shapes) < MaxDemandVectorSize; i++ {
			shapes = append(shapes, d.Shape)
		}
	}
	residual = binPack(avail, shapes)
	feasible := filterShapes(residual, func(sh scheduler.Resources) bool { return canEverFit(cfg, s.Nodes, sh) })
	plan.Infeasible = countShapes(filterShapes(residual, func(sh scheduler.Resources) bool { return !canEverFit(cfg, s.Nodes, sh) }))
	forDemand := map[string]int{}
	nodesFor(cfg, perType, &workers, feasible, func(typ string) { add(typ, forDemand) })

	// 4. upscaling_speed limits launches for demand, per type.
	for _, typ := range sortedKeys(cfg.Types) {
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

func filterShapes(shapes []scheduler.Resources, keep func(scheduler.Resources) bool) []scheduler.Resources {
	var out []scheduler.Resources
	for _, sh := range shapes {
		if keep(sh) {
			out = append(out, sh)
		}
	}
	return out
}

// countShapes merges equal shapes into demands, sorted by shape.
func countShapes(shapes []scheduler.Resources) []Demand {
	byKey := map[string]*Demand{}
	for _, sh := range shapes {
		d := byKey[sh.Key()]
		if d == nil {
			d = &Demand{Shape: sh}
			byKey[sh.Key()] = d
		}
		d.Count++
	}
	var out []Demand
	for _, k := range sortedKeys(byKey) {
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
	for _, r := range sortDemands(requests) {
		for i := range free {
			if r.Fits(free[i]) {
				free[i].Sub(r)
				if !nodes[i].Head {
					used[nodes[i].ID] = true
				}
				break
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

// sortDemands orders shapes for first-fit packing as Ray does: most
// resource kinds first, then the largest total amount, then by key.
func sortDemands(shapes []scheduler.Resources) []scheduler.Resources {
	out := slices.Clone(shapes)
	sum := func(r scheduler.Resources) float64 {
		s := 0.0
		for _, v := range r {
			s += v
		}
		return s
	}
	slices.SortStableFunc(out, func(a, b scheduler.Resources) int {
		return cmp.Or(cmp.Compare(len(b), len(a)), cmp.Compare(sum(b), sum(a)), cmp.Compare(a.Key(), b.Key()))
	})
	return out
}

// binPack places each shape on the first node with room, subtracting it
// from that node's free resources, and returns the shapes that fit nowhere.
func binPack(free []scheduler.Resources, shapes []scheduler.Resources) []scheduler.Resources {
	var rest []scheduler.Resources
	for _, sh := range sortDemands(shapes) {
		placed := false
		for _, f := range free {
			if sh.Fits(f) {
				f.Sub(sh)
				placed = true
				break
			}
		}
		if !placed {
			rest = append(rest, sh)
		}
	}
	return rest
}

// nodesFor adds nodes, one at a time, of the best-scoring type for the
// remaining shapes until they are all absorbed, no type fits, or the
// maxima are reached; launch is called for each node added. It returns
// the shapes left.
func nodesFor(cfg Config, perType map[string]int, workers *int, shapes []scheduler.Resources, launch func(typ string)) []scheduler.Resources {
	shapes = sortDemands(shapes)
	for len(shapes) > 0 && *workers < cfg.MaxWorkers {
		best, bestScore := "", score{}
		var bestRest []scheduler.Resources
		for _, typ := range sortedKeys(cfg.Types) {
			t := cfg.Types[typ]
			if typ == cfg.HeadType || perType[typ] >= t.MaxWorkers {
				continue
			}
			sc, rest, ok := scoreType(t.Resources, shapes)
			if ok && (best == "" || bestScore.less(sc)) {
				best, bestScore, bestRest = typ, sc, rest
			}
		}
		if best == "" {
			break
		}
		launch(best)
		shapes = bestRest
	}
	return shapes
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

// scoreType packs shapes into one fresh node of resources r and scores
// the result; ok is false when no shape fits. rest holds the shapes that
// did not fit.
func scoreType(r scheduler.Resources, shapes []scheduler.Resources) (sc score, rest []scheduler.Resources, ok bool) {
	free := r.Clone()
	usedKinds := map[string]bool{}
	gpuDemand := false
	for _, sh := range shapes {
		if !sh.Fits(free) {
			rest = append(rest, sh)
			continue
		}
		ok = true
		free.Sub(sh)
		for k, v := range sh {
			if v > 0 {
				usedKinds[k] = true
				if k == "GPU" {
					gpuDemand = true
				}
			}
		}
	}
	if !ok {
		return score{}, shapes, false
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
