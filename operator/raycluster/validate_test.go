package raycluster

import (
	"strings"
	"testing"
)

// TestValidateRefusesGroupNamesThatBreakPods: the group name becomes the
// ray.io/group label and part of the pods' generateName, so one the API
// server would refuse there is refused up front, naming the group and the
// rule.
func TestValidateRefusesGroupNamesThatBreakPods(t *testing.T) {
	for _, c := range []struct{ group, want string }{
		{"bad group", `groupName "bad group" is not a valid label value`},
		{strings.Repeat("g", 64), "is not a valid label value: must be no more than 63 bytes"},
		{"a_b", `groupName "a_b" makes pod names rc-a_b-worker-* that are not valid`},
		{"-x", "is not a valid label value"},
	} {
		rc := testCluster("ns", "rc", 1)
		rc.Spec.WorkerGroupSpecs[0].GroupName = c.group
		if err := Validate(rc); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("group %q: %v, want %q", c.group, err, c.want)
		}
	}
	for _, ok := range []string{"GPU", "small.v2", strings.Repeat("g", 63)} {
		rc := testCluster("ns", "rc", 1)
		rc.Spec.WorkerGroupSpecs[0].GroupName = ok
		if err := Validate(rc); err != nil {
			t.Errorf("group %q refused: %v", ok, err)
		}
	}
}
