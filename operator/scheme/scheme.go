// Package scheme builds the runtime.Scheme the operator and its tests use:
// Kubernetes' built-in types plus ray.io/v1.
package scheme

import (
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	rayv1 "github.com/goray/goray/operator/api/v1"
)

// New returns a scheme with the built-in types and ray.io/v1.
func New() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := rayv1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}
