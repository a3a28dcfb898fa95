package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/goray/goray/operator/raycluster"
)

// kubelet stands in for the kubelets of a one-namespace cluster with
// Docker: each pod of a RayCluster becomes a sandbox container holding the
// pod's IP on a network of the test's own (as a pause container does),
// then its init containers run to completion and its first container
// starts in the sandbox's network namespace with the pod's command, args
// and environment (field and Secret references resolved, $(VAR)
// expanded, as the kubelet does). The pod's status follows: Running with
// its IP once the container runs, Ready once its readiness probe answers.
// Pods that leave the API lose their containers. Sidecars after the first
// container are not run.
type kubelet struct {
	t        *testing.T
	c        client.Client
	image    string
	network  string
	ns       string
	cluster  string
	aliases  map[string][]string // pod name prefix → extra DNS names
	mu       sync.Mutex
	pods     map[string]*podRun // by pod name
	next     int
	ipPrefix string
}

type podRun struct {
	ip     string
	ready  bool
	failed error
}

func docker(args ...string) (string, error) {
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

// startKubelet creates the pods' network and runs the kubelet until the
// test ends, then removes every container and the network.
func startKubelet(t *testing.T, c client.Client, image, ns, cluster string) *kubelet {
	k := &kubelet{t: t, c: c, image: image, ns: ns, cluster: cluster, pods: map[string]*podRun{},
		network: fmt.Sprintf("goray-kubelet-%d", os.Getpid()), aliases: map[string][]string{}}
	k.cleanup()
	if _, err := docker("network", "create", "--subnet", "10.213.0.0/24", k.network); err != nil {
		// Another network may hold that subnet; let Docker pick one.
		if _, err := docker("network", "create", k.network); err != nil {
			t.Fatal(err)
		}
	}
	subnet, err := docker("network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", k.network)
	if err != nil {
		t.Fatal(err)
	}
	ip, _, err := net.ParseCIDR(subnet)
	if err != nil {
		t.Fatalf("network %s has subnet %q: %v", k.network, subnet, err)
	}
	ip4 := ip.To4()
	k.ipPrefix = fmt.Sprintf("%d.%d.%d.", ip4[0], ip4[1], ip4[2])
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			k.sync(ctx)
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			k.mu.Lock()
			for name := range k.pods {
				out, _ := docker("logs", k.container(name, 0))
				t.Logf("pod %s:\n%s", name, out)
			}
			k.mu.Unlock()
		}
		k.cleanup()
	})
	return k
}

func (k *kubelet) cleanup() {
	if ids, _ := docker("ps", "-aq", "--filter", "label=goray-test-kubelet="+k.network); ids != "" {
		docker(append([]string{"rm", "-f"}, strings.Fields(ids)...)...)
	}
	docker("network", "rm", k.network)
}

func (k *kubelet) container(pod string, i int) string {
	if i < 0 {
		return k.network + "-" + pod + "-sandbox"
	}
	return fmt.Sprintf("%s-%s-%d", k.network, pod, i)
}

// sync starts the pods that appeared and removes those that went away.
func (k *kubelet) sync(ctx context.Context) {
	var pods corev1.PodList
	if err := k.c.List(ctx, &pods, client.InNamespace(k.ns), client.MatchingLabels{raycluster.LabelCluster: k.cluster}); err != nil {
		return
	}
	seen := map[string]bool{}
	for i := range pods.Items {
		p := &pods.Items[i]
		seen[p.Name] = true
		k.mu.Lock()
		run := k.pods[p.Name]
		if run == nil && p.DeletionTimestamp == nil {
			k.next++
			run = &podRun{ip: fmt.Sprintf("%s%d", k.ipPrefix, 10+k.next)}
			k.pods[p.Name] = run
			go k.runPod(ctx, p.DeepCopy(), run)
		}
		k.mu.Unlock()
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for name := range k.pods {
		if !seen[name] {
			// As the kubelet: SIGTERM, a grace period, then SIGKILL.
			docker("stop", "--time", "30", k.container(name, 0))
			docker("rm", "-f", k.container(name, 0), k.container(name, -1))
			delete(k.pods, name)
		}
	}
}

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expand replaces $(VAR) with VAR's value where it is defined, as the
// kubelet does in env values, commands and args.
func expand(s string, env map[string]string) string {
	return envRef.ReplaceAllStringFunc(s, func(m string) string {
		if v, ok := env[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
}

var labelRef = regexp.MustCompile(`^metadata\.labels\['(.+)'\]$`)

// environment resolves a container's env as the kubelet would.
func (k *kubelet) environment(ctx context.Context, p *corev1.Pod, ip string, c *corev1.Container) ([]string, map[string]string, error) {
	env := map[string]string{}
	var out []string
	for _, e := range c.Env {
		v := expand(e.Value, env)
		if f := e.ValueFrom; f != nil {
			switch {
			case f.FieldRef != nil:
				switch path := f.FieldRef.FieldPath; {
				case path == "metadata.name":
					v = p.Name
				case path == "metadata.namespace":
					v = p.Namespace
				case path == "status.podIP":
					v = ip
				case labelRef.MatchString(path):
					v = p.Labels[labelRef.FindStringSubmatch(path)[1]]
				default:
					return nil, nil, fmt.Errorf("env %s: field %s not emulated", e.Name, path)
				}
			case f.SecretKeyRef != nil:
				var s corev1.Secret
				if err := k.c.Get(ctx, client.ObjectKey{Namespace: p.Namespace, Name: f.SecretKeyRef.Name}, &s); err != nil {
					return nil, nil, fmt.Errorf("env %s: %w", e.Name, err)
				}
				v = string(s.Data[f.SecretKeyRef.Key])
			default:
				return nil, nil, fmt.Errorf("env %s: source not emulated", e.Name)
			}
		}
		env[e.Name] = v
		out = append(out, e.Name+"="+v)
	}
	return out, env, nil
}

func (k *kubelet) runContainer(ctx context.Context, p *corev1.Pod, ip string, c *corev1.Container, name string, detach bool) error {
	env, vars, err := k.environment(ctx, p, ip, c)
	if err != nil {
		return err
	}
	args := []string{"run", "--name", name, "--label", "goray-test-kubelet=" + k.network, "--network", "container:" + k.container(p.Name, -1)}
	if detach {
		args = append(args, "-d")
	}
	for _, e := range env {
		args = append(args, "-e", e)
	}
	var cmd []string
	for _, s := range c.Command {
		cmd = append(cmd, expand(s, vars))
	}
	if len(cmd) > 0 {
		args = append(args, "--entrypoint", cmd[0])
	}
	args = append(args, k.image)
	args = append(args, cmd[min(1, len(cmd)):]...)
	for _, s := range c.Args {
		args = append(args, expand(s, vars))
	}
	_, err = docker(args...)
	return err
}

// runPod plays one pod's lifecycle: sandbox, init containers, the first
// container, then status updates until the pod is gone.
func (k *kubelet) runPod(ctx context.Context, p *corev1.Pod, run *podRun) {
	fail := func(err error) {
		k.mu.Lock()
		run.failed = err
		k.mu.Unlock()
		k.t.Logf("kubelet: pod %s: %v", p.Name, err)
	}
	// The head Service is headless: its DNS names resolve to the head pod.
	sandbox := []string{"run", "-d", "--name", k.container(p.Name, -1), "--label", "goray-test-kubelet=" + k.network,
		"--network", k.network, "--ip", run.ip, "--shm-size=256m", "--hostname", p.Name, "--entrypoint", "/bin/sleep"}
	if p.Labels[raycluster.LabelNodeType] == raycluster.NodeTypeHead {
		svc := k.cluster + "-head-svc"
		for _, a := range []string{svc, svc + "." + k.ns, svc + "." + k.ns + ".svc.cluster.local"} {
			sandbox = append(sandbox, "--network-alias", a)
		}
	}
	if _, err := docker(append(sandbox, k.image, "1000000")...); err != nil {
		fail(err)
		return
	}
	k.setStatus(ctx, p.Name, func(s *corev1.PodStatus) {
		s.Phase, s.PodIP, s.PodIPs = corev1.PodPending, run.ip, []corev1.PodIP{{IP: run.ip}}
	})
	for i := range p.Spec.InitContainers {
		c := &p.Spec.InitContainers[i]
		if err := k.runContainer(ctx, p, run.ip, c, k.container(p.Name, 100+i), false); err != nil {
			fail(fmt.Errorf("init container %s: %w", c.Name, err))
			return
		}
	}
	c := &p.Spec.Containers[0]
	if err := k.runContainer(ctx, p, run.ip, c, k.container(p.Name, 0), true); err != nil {
		fail(fmt.Errorf("container %s: %w", c.Name, err))
		return
	}
	k.setStatus(ctx, p.Name, func(s *corev1.PodStatus) {
		s.Phase = corev1.PodRunning
		s.ContainerStatuses = []corev1.ContainerStatus{{Name: c.Name, Image: c.Image, Started: ptrTrue(),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}}}
		s.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}}
	})
	// Readiness: the container's probe, as the kubelet runs it.
	probe := c.ReadinessProbe
	if probe == nil || probe.HTTPGet == nil {
		fail(fmt.Errorf("container %s has no HTTP readiness probe", c.Name))
		return
	}
	url := fmt.Sprintf("http://%s%s", net.JoinHostPort(run.ip, portOf(probe.HTTPGet.Port, c)), probe.HTTPGet.Path)
	hc := &http.Client{Timeout: 2 * time.Second}
	for ctx.Err() == nil {
		// The pod may have been deleted meanwhile.
		var cur corev1.Pod
		if err := k.c.Get(ctx, client.ObjectKey{Namespace: p.Namespace, Name: p.Name}, &cur); apierrors.IsNotFound(err) {
			return
		}
		resp, err := hc.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				k.setStatus(ctx, p.Name, func(s *corev1.PodStatus) {
					s.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
					s.ContainerStatuses[0].Ready = true
				})
				k.mu.Lock()
				run.ready = true
				k.mu.Unlock()
				return
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond): // the probe period, shortened
		}
	}
}

func ptrTrue() *bool { b := true; return &b }

func portOf(p intstr.IntOrString, c *corev1.Container) string {
	if p.Type == intstr.Int {
		return p.String()
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return fmt.Sprint(cp.ContainerPort)
		}
	}
	return p.StrVal
}

// setStatus updates a pod's status, retrying on conflicts.
func (k *kubelet) setStatus(ctx context.Context, name string, f func(*corev1.PodStatus)) {
	for ctx.Err() == nil {
		var p corev1.Pod
		if err := k.c.Get(ctx, client.ObjectKey{Namespace: k.ns, Name: name}, &p); err != nil {
			return
		}
		f(&p.Status)
		err := k.c.Status().Update(ctx, &p)
		if err == nil || apierrors.IsNotFound(err) {
			return
		}
		if !apierrors.IsConflict(err) {
			k.t.Logf("kubelet: pod %s status: %v", name, err)
			return
		}
	}
}

// exec runs a command in a pod's first container.
func (k *kubelet) exec(pod string, args ...string) (string, error) {
	return docker(append([]string{"exec", k.container(pod, 0)}, args...)...)
}

// failures lists pods the kubelet could not run.
func (k *kubelet) failures() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []string
	for name, r := range k.pods {
		if r.failed != nil {
			out = append(out, name+": "+r.failed.Error())
		}
	}
	return out
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
