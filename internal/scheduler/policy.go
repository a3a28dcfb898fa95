package scheduler

import (
	"fmt"
	"sort"
	"strconv"
)

// Strategy selects the placement policy for a request.
type Strategy int

// Placement strategies, mirroring Ray's DEFAULT, SPREAD and NodeAffinity
// scheduling strategies.
const (
	Default Strategy = iota
	Spread
	NodeAffinity
)

// Node is one node's resource view. Only Alive nodes are considered.
type Node struct {
	ID               string
	Total, Available Resources
	Labels           map[string]string
	Alive            bool
}

// Request asks for a node able to hold Shape. AffinityNodeID and
// AffinitySoft apply only to the NodeAffinity strategy.
type Request struct {
	Shape          Resources
	Strategy       Strategy
	AffinityNodeID string
	AffinitySoft   bool
}

// Decision is the outcome of Policy.Pick.
type Decision struct {
	NodeID     string // node to run on / queue at; "" when Infeasible
	Available  bool   // the node has the shape available right now (else the request queues there)
	Infeasible bool   // no alive node has the shape in its Total
	Reason     string // human text for infeasible / hard-affinity failures, naming the shape and node
}

// Policy picks nodes for requests. It is not safe for concurrent use: it
// holds SPREAD's round-robin cursor.
type Policy struct {
	// SpreadThreshold is the critical-resource utilisation (0..1) below which
	// the default policy packs onto the local node (Ray's
	// scheduler_spread_threshold).
	SpreadThreshold float64
	next            int // SPREAD round-robin cursor into ID-sorted feasible nodes
}

// NewPolicy returns a Policy with Ray's default SpreadThreshold of 0.5.
func NewPolicy() *Policy { return &Policy{SpreadThreshold: 0.5} }

// Pick chooses a node for req among nodes; localID names the node the
// scheduler runs on (it may be absent from nodes). See Strategy for the rules.
func (p *Policy) Pick(nodes []Node, localID string, req Request) Decision {
	if req.Strategy == NodeAffinity {
		if d, ok := p.affinity(nodes, req); ok {
			return d
		}
	}
	feasible := feasibleNodes(nodes, req.Shape)
	if len(feasible) == 0 {
		return Decision{Infeasible: true, Reason: infeasibleReason(nodes, req.Shape)}
	}
	if req.Strategy == Spread {
		return p.spread(feasible, req.Shape)
	}
	return p.hybrid(feasible, localID, req.Shape)
}

// affinity handles NodeAffinity; ok=false means fall back to the default policy
// (soft affinity whose node is unavailable).
func (p *Policy) affinity(nodes []Node, req Request) (Decision, bool) {
	var n *Node
	for i := range nodes {
		if nodes[i].ID == req.AffinityNodeID && nodes[i].Alive {
			n = &nodes[i]
			break
		}
	}
	if req.AffinitySoft {
		if n != nil && req.Shape.Fits(n.Available) {
			return Decision{NodeID: n.ID, Available: true}, true
		}
		return Decision{}, false
	}
	switch {
	case n == nil:
		return Decision{Infeasible: true, Reason: fmt.Sprintf(
			"node affinity: node %q is dead or unknown", req.AffinityNodeID)}, true
	case !req.Shape.Fits(n.Total):
		return Decision{Infeasible: true, Reason: fmt.Sprintf(
			"node affinity: node %q can never fit {%s} (total {%s})",
			n.ID, req.Shape.Key(), n.Total.Key())}, true
	}
	return Decision{NodeID: n.ID, Available: req.Shape.Fits(n.Available)}, true
}

// hybrid is Ray's hybrid policy: pack onto the local node while its
// utilisation is below SpreadThreshold, otherwise take the least-utilised
// available node; with nothing available, queue at local if feasible, else at
// the least-utilised feasible node. Ties go to local, then lowest ID.
func (p *Policy) hybrid(feasible []*Node, localID string, shape Resources) Decision {
	var local *Node
	var avail []*Node
	for _, n := range feasible {
		ok := shape.Fits(n.Available)
		if n.ID == localID {
			local = n
			if ok && utilisation(n, shape) < p.SpreadThreshold {
				return Decision{NodeID: n.ID, Available: true}
			}
		}
		if ok {
			avail = append(avail, n)
		}
	}
	if len(avail) > 0 {
		return Decision{NodeID: leastUtilised(avail, localID, shape).ID, Available: true}
	}
	if local != nil {
		return Decision{NodeID: local.ID}
	}
	return Decision{NodeID: leastUtilised(feasible, localID, shape).ID}
}

// spread follows Ray's SPREAD policy: starting at the cursor, take the first
// available node in ID order, else queue at the cursor's node; the cursor
// then moves past the chosen node.
func (p *Policy) spread(feasible []*Node, shape Resources) Decision {
	n := len(feasible)
	start := p.next % n
	for i := 0; i < n; i++ {
		j := (start + i) % n
		if shape.Fits(feasible[j].Available) {
			p.next = j + 1
			return Decision{NodeID: feasible[j].ID, Available: true}
		}
	}
	p.next = start + 1
	return Decision{NodeID: feasible[start].ID}
}

// feasibleNodes returns alive nodes whose Total fits shape, sorted by ID.
func feasibleNodes(nodes []Node, shape Resources) []*Node {
	var out []*Node
	for i := range nodes {
		if nodes[i].Alive && shape.Fits(nodes[i].Total) {
			out = append(out, &nodes[i])
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// leastUtilised returns the node in ns (sorted by ID) with the lowest
// utilisation, preferring localID on ties.
func leastUtilised(ns []*Node, localID string, shape Resources) *Node {
	best, bestU := ns[0], utilisation(ns[0], shape)
	for _, n := range ns[1:] {
		u := utilisation(n, shape)
		if u < bestU || (u == bestU && n.ID == localID) {
			best, bestU = n, u
		}
	}
	return best
}

// utilisation is the critical-resource utilisation of n in Ray's sense: the
// maximum used/total over the resources named in shape (CPU when shape names
// none), on the node's current state. Resources with zero total are skipped.
func utilisation(n *Node, shape Resources) float64 {
	var names []string
	for k, v := range shape {
		if v > 0 {
			names = append(names, k)
		}
	}
	if len(names) == 0 {
		names = []string{"CPU"}
	}
	u := 0.0
	for _, k := range names {
		if t := n.Total[k]; t > 0 {
			u = max(u, (t-n.Available[k])/t)
		}
	}
	return u
}

// infeasibleReason names the shape and, where one resource alone rules every
// node out, the largest amount of it any alive node has.
func infeasibleReason(nodes []Node, shape Resources) string {
	msg := fmt.Sprintf("no alive node in the cluster can fit {%s}", shape.Key())
	names := make([]string, 0, len(shape))
	for k := range shape {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		largest, where := 0.0, ""
		for _, n := range nodes {
			if n.Alive && n.Total[k] > largest {
				largest, where = n.Total[k], n.ID
			}
		}
		if shape[k] > largest+tolerance {
			if where == "" {
				return msg + fmt.Sprintf(" (no node has %s)", k)
			}
			return msg + fmt.Sprintf(" (largest %s: %s on %s)", k,
				strconv.FormatFloat(largest, 'g', -1, 64), where)
		}
	}
	return msg
}
