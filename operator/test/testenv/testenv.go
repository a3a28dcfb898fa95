// Package testenv starts a real kube-apiserver and etcd for the operator's
// tests through controller-runtime's envtest, with the goray CRDs installed.
// The binaries come from KUBEBUILDER_ASSETS or, when that is unset, from
// operator/test/assets.sh (which builds and caches kube-apiserver; .ci/run
// runs it before the tests so no test waits for that build).
package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	rayv1 "github.com/goray/goray/operator/api/v1"
	"github.com/goray/goray/operator/scheme"
)

// Env is a running API server with the goray CRDs.
type Env struct {
	Config *rest.Config
	Client client.Client
	Scheme *k8sruntime.Scheme
	env    *envtest.Environment
}

// operatorDir is the operator/ directory of this checkout.
func operatorDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Assets returns the directory holding kube-apiserver and etcd.
func Assets() (string, error) {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d, nil
	}
	var out, errb bytes.Buffer
	cmd := exec.Command("bash", filepath.Join(operatorDir(), "test", "assets.sh"))
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("testenv: operator/test/assets.sh: %v\n%s", err, errb.String())
	}
	return strings.TrimSpace(out.String()), nil
}

// Start starts etcd and kube-apiserver and installs the CRDs of
// operator/config/crd. Call Stop when done (TestMain).
func Start() (*Env, error) {
	assets, err := Assets()
	if err != nil {
		return nil, err
	}
	s := scheme.New()
	e := &envtest.Environment{
		CRDDirectoryPaths:        []string{filepath.Join(operatorDir(), "config", "crd")},
		ErrorIfCRDPathMissing:    true,
		BinaryAssetsDirectory:    assets,
		Scheme:                   s,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	cfg, err := e.Start()
	if err != nil {
		return nil, fmt.Errorf("testenv: start kube-apiserver and etcd from %s: %w", assets, err)
	}
	c, err := client.New(cfg, client.Options{Scheme: s})
	if err != nil {
		e.Stop()
		return nil, err
	}
	return &Env{Config: cfg, Client: c, Scheme: s, env: e}, nil
}

// Stop stops the API server and etcd.
func (e *Env) Stop() error { return e.env.Stop() }

// GroupVersionResource of the goray kinds, for dynamic clients.
var (
	RayClusters = schema.GroupVersionResource{Group: rayv1.GroupVersion.Group, Version: rayv1.GroupVersion.Version, Resource: "rayclusters"}
	RayJobs     = schema.GroupVersionResource{Group: rayv1.GroupVersion.Group, Version: rayv1.GroupVersion.Version, Resource: "rayjobs"}
)

// Events records the Events a reconciler under test makes, as
// "TYPE Reason: note" lines; it is the controllers' EventRecorder.
type Events struct {
	mu  sync.Mutex
	all []string
}

func (e *Events) Eventf(_ k8sruntime.Object, _ k8sruntime.Object, eventtype, reason, _, note string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, eventtype+" "+reason+": "+fmt.Sprintf(note, args...))
}

// All returns the Events recorded so far.
func (e *Events) All() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.all)
}

// Like returns the recorded Events containing s.
func (e *Events) Like(s string) []string {
	var out []string
	for _, x := range e.All() {
		if strings.Contains(x, s) {
			out = append(out, x)
		}
	}
	return out
}
