package raycluster

import (
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	rayv1 "github.com/goray/goray/operator/api/v1"
)

// ErrInvalidSpec wraps every reason a RayCluster spec is refused.
var ErrInvalidSpec = errors.New("raycluster: invalid spec")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidSpec, fmt.Sprintf(format, args...))
}

// resourceParams are the start flags a group's resources field replaces.
var resourceParams = map[string]string{"CPU": "num-cpus", "GPU": "num-gpus", "memory": "memory"}

// Validate checks a RayCluster spec as KubeRay does: what it refuses
// becomes an Event, never a retry.
func Validate(rc *rayv1.RayCluster) error {
	if len(rc.Name) > 53 {
		return invalid("name %q is longer than 53 characters", rc.Name)
	}
	if errs := validation.IsDNS1035Label(rc.Name); len(errs) > 0 {
		return invalid("name %q: %s", rc.Name, errs[0])
	}
	h := &rc.Spec.HeadGroupSpec
	if len(h.Template.Spec.Containers) == 0 {
		return invalid("headGroupSpec.template has no container")
	}
	if err := validateGroupParams("headGroupSpec", h.RayStartParams, h.Resources); err != nil {
		return err
	}
	for _, e := range h.Template.Spec.Containers[0].Env {
		if e.Name != "RAY_enable_autoscaler_v2" {
			continue
		}
		if autoscalerVersion(rc) != "" {
			return invalid("set autoscalerOptions.version or the head's RAY_enable_autoscaler_v2 env, not both")
		}
		if !autoscaling(rc) {
			return invalid("the head's RAY_enable_autoscaler_v2 env needs enableInTreeAutoscaling")
		}
	}
	seen := map[string]bool{}
	for i := range rc.Spec.WorkerGroupSpecs {
		g := &rc.Spec.WorkerGroupSpecs[i]
		where := fmt.Sprintf("workerGroupSpecs[%d]", i)
		switch {
		case g.GroupName == "":
			return invalid("%s: groupName is empty", where)
		case seen[g.GroupName]:
			return invalid("%s: groupName %q used twice", where, g.GroupName)
		case len(validation.IsValidLabelValue(g.GroupName)) > 0:
			// The group name is the pods' ray.io/group label.
			return invalid("%s: groupName %q is not a valid label value: %s", where, g.GroupName, validation.IsValidLabelValue(g.GroupName)[0])
		case len(validation.IsDNS1123Subdomain(workerGenerateName(rc, g)+"x0000")) > 0:
			// It is part of the pods' names too (the API server appends
			// five lower-case letters and digits).
			return invalid("%s: groupName %q makes pod names %s* that are not valid: %s", where, g.GroupName, workerGenerateName(rc, g), validation.IsDNS1123Subdomain(workerGenerateName(rc, g) + "x0000")[0])
		case len(g.Template.Spec.Containers) == 0:
			return invalid("%s (%s): template has no container", where, g.GroupName)
		case g.MinReplicas != nil && *g.MinReplicas < 0:
			return invalid("%s (%s): minReplicas %d is negative", where, g.GroupName, *g.MinReplicas)
		case g.MaxReplicas != nil && *g.MaxReplicas < 0:
			return invalid("%s (%s): maxReplicas %d is negative", where, g.GroupName, *g.MaxReplicas)
		case g.Replicas != nil && *g.Replicas < 0:
			return invalid("%s (%s): replicas %d is negative", where, g.GroupName, *g.Replicas)
		case g.MinReplicas != nil && g.MaxReplicas != nil && *g.MinReplicas > *g.MaxReplicas:
			return invalid("%s (%s): minReplicas %d is greater than maxReplicas %d", where, g.GroupName, *g.MinReplicas, *g.MaxReplicas)
		case g.NumOfHosts < 0:
			return invalid("%s (%s): numOfHosts %d is negative", where, g.GroupName, g.NumOfHosts)
		case g.Suspend != nil && *g.Suspend && autoscaling(rc):
			return invalid("%s (%s): a worker group cannot be suspended while the autoscaler runs", where, g.GroupName)
		}
		seen[g.GroupName] = true
		if err := validateGroupParams(where, g.RayStartParams, g.Resources); err != nil {
			return err
		}
	}
	return nil
}

func validateGroupParams(where string, params, resources map[string]string) error {
	if _, ok := params["labels"]; ok {
		return invalid("%s.rayStartParams: set node labels in the labels field, not rayStartParams", where)
	}
	for name, v := range resources {
		if _, err := resource.ParseQuantity(v); err != nil {
			return invalid("%s.resources[%s]: %q is not a quantity", where, name, v)
		}
		flag, ok := resourceParams[name]
		if !ok {
			flag = "resources"
		}
		if _, both := params[flag]; both {
			return invalid("%s: resource %s is set both in resources and in rayStartParams[%s]", where, name, flag)
		}
	}
	return nil
}
