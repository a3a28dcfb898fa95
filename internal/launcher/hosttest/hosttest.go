// Package hosttest emulates SSH hosts for the cluster launcher's tests:
// each host is a network namespace with its own address on a bridge this
// package creates, running Debian's openssh-server (sshd) there. The hosts
// share this machine's file system and process table, so each gets its
// own HOME and GORAY_TEMP (sshd's SetEnv) and one host's `goray stop`
// never touches another's nodes; a login shell's ~/.profile puts the goray
// binary on PATH.
//
// It needs root, iproute2 and openssh-server (.ci/run installs them); when
// they are missing the test fails with a message saying so, never skips.
package hosttest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// Host is one emulated host.
type Host struct {
	IP      string
	NetNS   string
	Home    string // its HOME
	Temp    string // its GORAY_TEMP
	dir     string
	sshdPID int
}

// Hosts is a set of emulated hosts on one bridge.
type Hosts struct {
	Dir     string
	Key     string // private key authorized on every host (root)
	Subnet  string // e.g. 10.231.7
	Gateway string // this machine's address on the bridge
	Hosts   []*Host
	bridge  string // the switch's namespace
	t       testing.TB
}

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Require fails the test unless this machine can emulate hosts.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("hosttest: emulated SSH hosts need root (network namespaces); run the tests as root as CI does")
	}
	for _, b := range []string{"ip", "/usr/sbin/sshd"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("hosttest: %s not found: apt-get install -y iproute2 openssh-server (see .ci/run)", b)
		}
	}
}

// WriteKey writes a new ed25519 private key (OpenSSH PEM) to path and
// returns its public key in authorized_keys form.
func WriteKey(path string) (string, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", err
	}
	blk, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(blk), 0o600); err != nil {
		return "", err
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return "", err
	}
	return string(ssh.MarshalAuthorizedKey(sp)), nil
}

// freeSubnet picks 10.X.Y.0/24 that no route of this machine uses.
func freeSubnet() (string, error) {
	out, err := exec.Command("ip", "-4", "route", "show", "table", "all").Output()
	if err != nil {
		return "", fmt.Errorf("ip route: %v", err)
	}
	routes := string(out)
	for i := 0; i < 100; i++ {
		a, _ := rand.Int(rand.Reader, big.NewInt(50))
		b, _ := rand.Int(rand.Reader, big.NewInt(250))
		s := fmt.Sprintf("10.%d.%d", 200+a.Int64(), b.Int64()+1)
		if !strings.Contains(routes, s+".") {
			return s, nil
		}
	}
	return "", fmt.Errorf("no free 10.x.y.0/24 subnet")
}

// Start creates n hosts with binDir on their PATH. Everything (sshd, every
// process left in the namespaces, the namespaces and the bridge) is
// removed when the test ends.
func Start(t testing.TB, n int, binDir string) *Hosts {
	t.Helper()
	Require(t)
	hs := &Hosts{Dir: t.TempDir(), t: t}
	if err := os.Chmod(hs.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	hs.Key = filepath.Join(hs.Dir, "id_ed25519")
	pub, err := WriteKey(hs.Key)
	if err != nil {
		t.Fatal(err)
	}
	authKeys := filepath.Join(hs.Dir, "authorized_keys")
	if err := os.WriteFile(authKeys, []byte(pub), 0o600); err != nil {
		t.Fatal(err)
	}
	hostKey := filepath.Join(hs.Dir, "ssh_host_ed25519_key")
	if _, err := WriteKey(hostKey); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll("/run/sshd", 0o755) // sshd's privilege separation directory

	if hs.Subnet, err = freeSubnet(); err != nil {
		t.Fatal(err)
	}
	tag := make([]byte, 3)
	rand.Read(tag)
	id := hex.EncodeToString(tag)
	// The hosts' switch is a bridge in a namespace of its own, so this
	// machine's firewall (Docker's FORWARD policy drop with
	// br_netfilter) does not filter traffic between hosts. This machine
	// joins it through the veth grb<id>.
	hs.bridge = "goray-" + id + "-sw"
	hs.Gateway = hs.Subnet + ".254"
	t.Cleanup(hs.stop)
	for _, args := range [][]string{
		{"ip", "netns", "add", hs.bridge},
		{"ip", "-n", hs.bridge, "link", "add", "br0", "type", "bridge"},
		{"ip", "-n", hs.bridge, "link", "set", "br0", "up"},
		{"ip", "link", "add", "grb" + id, "type", "veth", "peer", "name", "up0", "netns", hs.bridge},
		{"ip", "-n", hs.bridge, "link", "set", "up0", "master", "br0", "up"},
		{"ip", "addr", "add", hs.Gateway + "/24", "dev", "grb" + id},
		{"ip", "link", "set", "grb" + id, "up"},
	} {
		if err := run(args...); err != nil {
			t.Fatalf("hosttest: cannot create the hosts' bridge (network namespaces need root and iproute2): %v", err)
		}
	}
	for i := 0; i < n; i++ {
		h := &Host{IP: fmt.Sprintf("%s.%d", hs.Subnet, i+1), NetNS: fmt.Sprintf("goray-%s-%d", id, i), dir: filepath.Join(hs.Dir, "host"+strconv.Itoa(i))}
		h.Home, h.Temp = filepath.Join(h.dir, "home"), filepath.Join(h.dir, "tmp")
		hs.Hosts = append(hs.Hosts, h)
		veth := fmt.Sprintf("grv%s%d", id, i)
		for _, args := range [][]string{
			{"ip", "netns", "add", h.NetNS},
			{"ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", h.NetNS},
			{"ip", "link", "set", veth, "netns", hs.bridge},
			{"ip", "-n", hs.bridge, "link", "set", veth, "master", "br0", "up"},
			{"ip", "-n", h.NetNS, "addr", "add", h.IP + "/24", "dev", "eth0"},
			{"ip", "-n", h.NetNS, "link", "set", "eth0", "up"},
			{"ip", "-n", h.NetNS, "link", "set", "lo", "up"},
		} {
			if err := run(args...); err != nil {
				t.Fatalf("hosttest: cannot create host %s in a network namespace: %v", h.IP, err)
			}
		}
		if err := os.MkdirAll(h.Home, 0o755); err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(h.Temp, 0o755)
		profile := fmt.Sprintf("export PATH=%s:$PATH\nexport GORAY_TEMP=%s\n", binDir, h.Temp)
		if err := os.WriteFile(filepath.Join(h.Home, ".profile"), []byte(profile), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := filepath.Join(h.dir, "sshd_config")
		pidFile := filepath.Join(h.dir, "sshd.pid")
		conf := fmt.Sprintf(`ListenAddress %s
Port 22
HostKey %s
PidFile %s
AuthorizedKeysFile %s
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin yes
MaxStartups 100
MaxSessions 100
Subsystem sftp internal-sftp
SetEnv HOME=%s GORAY_TEMP=%s
`, h.IP, hostKey, pidFile, authKeys, h.Home, h.Temp)
		if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := h.StartSSH(); err != nil {
			t.Fatalf("hosttest: %v", err)
		}
	}
	return hs
}

// StartSSH starts the host's sshd and waits until it accepts
// connections; Start calls it.
func (h *Host) StartSSH() error {
	cfg := filepath.Join(h.dir, "sshd_config")
	pidFile := filepath.Join(h.dir, "sshd.pid")
	if err := run("ip", "netns", "exec", h.NetNS, "/usr/sbin/sshd", "-f", cfg, "-E", filepath.Join(h.dir, "sshd.log")); err != nil {
		return fmt.Errorf("start sshd for %s: %v", h.IP, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", h.IP+":22", time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(h.dir, "sshd.log"))
			return fmt.Errorf("sshd on %s does not answer: %v\n%s", h.IP, err, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if b, err := os.ReadFile(pidFile); err == nil {
		h.sshdPID, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	return nil
}

// StopSSH stops the host's sshd listener (sessions already open keep
// running, as with `systemctl stop ssh`); the host's other processes go
// on. StartSSH starts it again.
func (h *Host) StopSSH() {
	if h.sshdPID > 0 {
		syscall.Kill(h.sshdPID, syscall.SIGTERM)
		for i := 0; i < 200 && syscall.Kill(h.sshdPID, 0) == nil; i++ {
			time.Sleep(10 * time.Millisecond)
		}
		h.sshdPID = 0
	}
}

// PIDs lists the processes running in the host's namespace, sshd
// excluded, as "pid command" lines.
func (h *Host) PIDs() []string {
	out, _ := exec.Command("ip", "netns", "pids", h.NetNS).Output()
	var ps []string
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		if err != nil || pid == h.sshdPID {
			continue
		}
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		line := strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))
		if line == "" || strings.HasPrefix(line, "sshd") || strings.Contains(line, "/usr/sbin/sshd") {
			// exiting processes (an SSH session closing) and sshd itself
			continue
		}
		ps = append(ps, fmt.Sprintf("%d %s", pid, line))
	}
	return ps
}

// GorayPIDs lists the host's goray processes (nodes, workers).
func (h *Host) GorayPIDs() []string {
	var out []string
	for _, p := range h.PIDs() {
		f := strings.Fields(p)
		if len(f) > 1 && strings.Contains(filepath.Base(f[1]), "goray") {
			out = append(out, p)
		}
	}
	return out
}

func (hs *Hosts) stop() {
	for _, h := range hs.Hosts {
		if h.sshdPID > 0 {
			syscall.Kill(h.sshdPID, syscall.SIGKILL)
		}
		out, _ := exec.Command("ip", "netns", "pids", h.NetNS).Output()
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		run("ip", "netns", "del", h.NetNS)
	}
	run("ip", "netns", "del", hs.bridge) // takes the bridge and the veths along
}
