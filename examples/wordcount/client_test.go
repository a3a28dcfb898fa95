package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goray/goray/testcluster"
)

// netns is a network namespace joined to the host by a veth pair: the
// host side has HostIP, the namespace NSIP.
type netns struct {
	Name, HostIP, NSIP string
}

func sh(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// newNetns creates a namespace for this test and removes it at the end.
// It fails (never skips) when namespaces cannot be made: the test needs
// root and iproute2 (.ci/run installs it).
func newNetns(t *testing.T) netns {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("this test needs iproute2's ip command (apt-get install iproute2; .ci/run installs it): %v", err)
	}
	id := os.Getpid() % 10000
	sub := 20 + os.Getpid()%200
	n := netns{Name: fmt.Sprintf("goraycl%d", id), HostIP: fmt.Sprintf("10.213.%d.1", sub), NSIP: fmt.Sprintf("10.213.%d.2", sub)}
	host, peer := fmt.Sprintf("grc%da", id), fmt.Sprintf("grc%db", id)
	exec.Command("ip", "netns", "del", n.Name).Run() // left over by a killed run
	exec.Command("ip", "link", "del", host).Run()
	sh(t, "ip", "netns", "add", n.Name)
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", n.Name).Run()
		exec.Command("ip", "link", "del", host).Run()
	})
	sh(t, "ip", "link", "add", host, "type", "veth", "peer", "name", peer)
	sh(t, "ip", "link", "set", peer, "netns", n.Name)
	sh(t, "ip", "addr", "add", n.HostIP+"/24", "dev", host)
	sh(t, "ip", "link", "set", host, "up")
	sh(t, "ip", "netns", "exec", n.Name, "ip", "addr", "add", n.NSIP+"/24", "dev", peer)
	sh(t, "ip", "netns", "exec", n.Name, "ip", "link", "set", peer, "up")
	sh(t, "ip", "netns", "exec", n.Name, "ip", "link", "set", "lo", "up")
	return n
}

// reachable reports whether a TCP connection to addr opens from inside
// the namespace.
func (n netns) reachable(addr string) bool {
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("ip", "netns", "exec", n.Name, "timeout", "3", "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%s", host, port))
	return cmd.Run() == nil
}

// TestWordcountRayClient runs the wordcount job from a driver in a network
// namespace that reaches only the head's client server: the cluster's
// nodes listen on the host's loopback, which the namespace does not
// share; the client server listens on the host's end of a veth pair.
func TestWordcountRayClient(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	ns := newNetns(t)
	dir, want := testTree(t)
	cluster := testcluster.Start(t, testcluster.Options{Workers: 2, HeadFlags: []string{"--ray-client-server-host=" + ns.HostIP}})
	client := cluster.Head.Info.ClientAddress
	if !strings.HasPrefix(client, ns.HostIP+":") {
		t.Fatalf("client server at %s, want it on %s", client, ns.HostIP)
	}
	// The driver's namespace reaches the client port and nothing else.
	_, gcsPort, _ := net.SplitHostPort(cluster.Address)
	_, dashPort, _ := net.SplitHostPort(cluster.Head.Info.DashboardAddress)
	if !ns.reachable(client) {
		t.Fatalf("the namespace cannot reach the client server at %s", client)
	}
	for _, addr := range []string{cluster.Address, net.JoinHostPort(ns.HostIP, gcsPort), cluster.Head.Info.DashboardAddress,
		net.JoinHostPort(ns.HostIP, dashPort), cluster.Head.Info.RayletAddress, cluster.Workers[0].Info.RayletAddress} {
		if ns.reachable(addr) {
			t.Fatalf("the namespace reaches %s: the driver is not isolated", addr)
		}
	}

	bin := filepath.Join(t.TempDir(), "wordcount")
	if err := testcluster.Build(bin, "github.com/goray/goray/examples/wordcount"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns.Name, bin, "--address=goray://"+client, "--batch-bytes=64", dir)
	var env []string
	for _, e := range cluster.Env() {
		if !strings.HasPrefix(e, "GORAY_ADDRESS=") && !strings.HasPrefix(e, "RAY_ADDRESS=") {
			env = append(env, e)
		}
	}
	cmd.Env = env
	checkRun(t, cluster, cmd, want)

	// The session was a DRIVER job of its own, finished at Shutdown.
	out, err := cluster.Goray("list", "jobs")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "wordcount") {
		t.Errorf("no wordcount job listed:\n%s", out)
	}
}
