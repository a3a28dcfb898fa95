package raycluster

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func newQuantities() (cpu, mem, gpu, tpu resource.Quantity) {
	return resource.Quantity{Format: resource.DecimalSI}, resource.Quantity{Format: resource.BinarySI},
		resource.Quantity{Format: resource.DecimalSI}, resource.Quantity{Format: resource.DecimalSI}
}

// addContainer adds a container's resources (limits, else requests) to the
// cluster's desired totals.
func addContainer(cpu, mem, gpu, tpu *resource.Quantity, c *corev1.Container) {
	get := func(name corev1.ResourceName) (resource.Quantity, bool) {
		if q, ok := c.Resources.Limits[name]; ok {
			return q, true
		}
		q, ok := c.Resources.Requests[name]
		return q, ok
	}
	if q, ok := get(corev1.ResourceCPU); ok {
		cpu.Add(q)
	}
	if q, ok := get(corev1.ResourceMemory); ok {
		mem.Add(q)
	}
	if q, ok := get("google.com/tpu"); ok {
		tpu.Add(q)
	}
	for name, q := range c.Resources.Limits {
		if strings.HasSuffix(string(name), "gpu") {
			gpu.Add(q)
		}
	}
}
