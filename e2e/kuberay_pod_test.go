package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/goray/goray/testcluster"
)

// TestKubeRayPodCommands runs the goray image as KubeRay's own operator runs
// Ray's: a head "pod" and a worker "pod" (containers on a network of their
// own, each with its address) whose containers run `/bin/bash -c --` with
// the `ulimit ...; ray start ...` lines KubeRay renders, the worker first
// running the wait-gcs-ready init container's `ray health-check` loop. The
// exec probes KubeRay uses before Ray 2.53 (wget on localhost, grep
// success) and the HTTP GET probe of later versions pass in both pods,
// although the nodes advertise their pod IPs.
func TestKubeRayPodCommands(t *testing.T) {
	image := testcluster.DockerImage(t)
	name := fmt.Sprintf("goray-kuberay-pods-%d", os.Getpid())
	docker := func(args ...string) (string, error) {
		out, err := exec.Command("docker", args...).CombinedOutput()
		if err != nil {
			return string(out), fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out)), nil
	}
	cleanup := func() {
		docker("rm", "-f", name+"-head", name+"-worker")
		docker("network", "rm", name)
	}
	cleanup() // a run killed midway
	t.Cleanup(func() {
		if t.Failed() {
			for _, c := range []string{name + "-head", name + "-worker"} {
				out, _ := docker("logs", c)
				t.Logf("%s:\n%s", c, out)
			}
		}
		cleanup()
	})
	if _, err := docker("network", "create", name); err != nil {
		t.Fatal(err)
	}
	const token = "kuberay-pod-token"
	pod := func(suffix, args string) string {
		c := name + "-" + suffix
		if _, err := docker("run", "-d", "--name", c, "--network", name, "--network-alias", c, "--shm-size=256m",
			"-e", "RAY_AUTH_TOKEN="+token, "--entrypoint", "/bin/bash", image, "-c", "--", args); err != nil {
			t.Fatal(err)
		}
		return c
	}
	// As KubeRay renders them: padded, sorted flags and bare booleans; the
	// head Service's name resolves to the head pod.
	head := pod("head", "ulimit -n ${RAY_START_ULIMIT_OPEN_FILES:-65536}; ray start  --head  --block  --dashboard-agent-listen-port=52365  --dashboard-host=0.0.0.0  --metrics-export-port=8080  --num-cpus=1 ")
	svc := head
	worker := pod("worker", fmt.Sprintf("until ray health-check --address %s:6379 > /dev/null 2>&1; do echo waiting for GCS; sleep 0.2; done; "+
		"ulimit -n ${RAY_START_ULIMIT_OPEN_FILES:-65536}; ray start  --address=%s:6379  --block  --dashboard-agent-listen-port=52365  --metrics-export-port=8080  --num-cpus=1 ", svc, svc))

	passes := func(c, script, what string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			_, err := docker("exec", c, "/bin/bash", "-c", "--", script)
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				out, _ := docker("exec", c, "/bin/bash", "-c", "--", strings.ReplaceAll(script, " -q ", " "))
				t.Fatalf("%s never passed: %v\n%s", what, err, out)
			}
			time.Sleep(200 * time.Millisecond) // a kubelet's probe period, shortened
		}
	}
	// KubeRay's exec probes for Ray < 2.53.
	passes(head, "wget --tries 1 -T 5 -q -O- http://localhost:52365/api/local_raylet_healthz | grep success && wget --tries 1 -T 5 -q -O- http://localhost:8265/api/gcs_healthz | grep success", "the head pod's exec probe")
	passes(worker, "wget --tries 1 -T 2 -q -O- http://localhost:52365/api/local_raylet_healthz | grep success", "the worker pod's exec probe")
	// The HTTP GET probe of Ray >= 2.53 goes to the pod IP.
	ip, err := docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", worker)
	if err != nil {
		t.Fatal(err)
	}
	passes(head, fmt.Sprintf("wget -T 2 -q -O- http://%s:52365/api/healthz | grep success", ip), "the HTTP probe on the worker pod's IP")

	// On the head, KubeRay sets RAY_ADDRESS=127.0.0.1:6379: the GCS answers
	// there too, although the head advertises its pod IP.
	if out, err := docker("exec", "-e", "RAY_ADDRESS=127.0.0.1:6379", head, "ray", "health-check", "--address", "127.0.0.1:6379"); err != nil {
		t.Errorf("health-check of the GCS on the head's loopback: %v %s", err, out)
	}
	// The metrics port KubeRay's head Service and pod declare (8080) serves
	// Ray's metrics to a scraper holding the cluster token.
	passes(head, `wget --tries 1 -T 2 -q -O- --header "Authorization: Bearer $RAY_AUTH_TOKEN" http://localhost:8080/metrics | grep '^ray_resources{.*Name="CPU"'`, "a scrape of the head's metrics port")
	// Both nodes registered alive, the worker with its pod IP.
	var nodes string
	testcluster.Eventually(t, 30*time.Second, "both pods' nodes alive in ray list nodes", func() bool {
		nodes, _ = docker("exec", "-e", "RAY_ADDRESS=127.0.0.1:6379", head, "ray", "list", "nodes")
		return strings.Count(nodes, "ALIVE") == 2 && strings.Contains(nodes, ip)
	})
}
