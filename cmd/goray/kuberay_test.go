package main

import (
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/node"
	"github.com/goray/goray/proto/rpcpb"
)

// shellWords splits a command line the way bash does for the quoting KubeRay
// produces: single and double quotes, backslash escapes in double quotes.
func shellWords(t *testing.T, s string) []string {
	t.Helper()
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				t.Fatalf("unterminated ' in %q", s)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				cur.WriteByte(s[i])
			}
			inWord = true
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// startArgs takes the `ray start ...` command out of a KubeRay container
// argument ("ulimit -n ...; ray start ...").
func startArgs(t *testing.T, line string) []string {
	t.Helper()
	_, cmd, ok := strings.Cut(line, "; ")
	if !ok {
		cmd = line
	}
	w := shellWords(t, cmd)
	if len(w) < 2 || w[0] != "ray" || w[1] != "start" {
		t.Fatalf("not a ray start line: %q", line)
	}
	return w[2:]
}

// parseStart runs `goray start ARGS` up to the point where it would start a
// node and returns the node configuration and whether it would block.
func parseStart(t *testing.T, args []string) (node.Config, bool, error) {
	t.Helper()
	var got node.Config
	var blocked bool
	old := launchNode
	launchNode = func(_ *cobra.Command, cfg node.Config, block bool) error {
		got, blocked = cfg, block
		return nil
	}
	defer func() { launchNode = old }()
	cmd := startCmd()
	cmd.SetArgs(args)
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	err := cmd.Execute()
	return got, blocked, err
}

// TestKubeRayStartCommandLines parses `ray start` lines as KubeRay renders
// them (sorted flags, bare booleans, padded spaces, quoted JSON) into the
// node settings they stand for.
func TestKubeRayStartCommandLines(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	t.Setenv("GORAY_AUTH_TOKEN", "tok")
	t.Setenv("GORAY_OVERRIDE_RESOURCES", "")
	t.Setenv("RAY_OVERRIDE_RESOURCES", "")
	const ulimit = "ulimit -n ${RAY_START_ULIMIT_OPEN_FILES:-65536}; "
	cases := []struct {
		name string
		line string
		want func(c *node.Config)
	}{{
		name: "head from container limits",
		line: ulimit + "ray start --head  --block  --dashboard-agent-listen-port=52365  --dashboard-host=0.0.0.0  --memory=2147483648  --metrics-export-port=8080  --num-cpus=1 ",
		want: func(c *node.Config) {
			c.Head, c.DashboardHost, c.AgentPort, c.AgentPortSet, c.Memory, c.NumCPUs = true, "0.0.0.0", 52365, true, 2147483648, 1
		},
	}, {
		name: "head with autoscaler, resources and labels",
		line: ulimit + `ray start --head  --block  --dashboard-agent-listen-port=52365  --dashboard-host=0.0.0.0  --labels=accelerator=none,zone=a  --metrics-export-port=8080  --no-monitor  --num-cpus=0  --num-gpus=0  --port=6380  --resources='{"TPU":4,"custom.x":0.5}' `,
		want: func(c *node.Config) {
			c.Head, c.DashboardHost, c.AgentPort, c.AgentPortSet, c.NumCPUs, c.NumGPUs, c.Port = true, "0.0.0.0", 52365, true, 0, 0, 6380
			c.Labels = map[string]string{"accelerator": "none", "zone": "a"}
			c.Resources = map[string]float64{"TPU": 4, "custom.x": 0.5}
		},
	}, {
		name: "worker joining the head service",
		line: ulimit + "ray start  --address=raycluster-head-svc.default.svc.cluster.local:6379  --block  --dashboard-agent-listen-port=52365  --memory=4294967296  --metrics-export-port=8080  --num-cpus=2  --num-gpus=1 ",
		want: func(c *node.Config) {
			c.Address, c.AgentPort, c.AgentPortSet, c.Memory, c.NumCPUs, c.NumGPUs = "raycluster-head-svc.default.svc.cluster.local:6379", 52365, true, 4294967296, 2, 1
		},
	}, {
		name: "worker with explicit booleans and Ray-only ports",
		line: `ray start  --address=10.0.0.1:6379  --block  --dashboard-agent-listen-port=52365  --disable-usage-stats  --include-dashboard=false  --log-color=true  --metrics-export-port=8080  --node-manager-port=12345  --object-manager-port=12346  --object-store-memory=100000000  --resources="{\"disk\": 2}" `,
		want: func(c *node.Config) {
			c.Address, c.AgentPort, c.AgentPortSet, c.ObjectStoreMemory = "10.0.0.1:6379", 52365, true, 100000000
			c.Resources = map[string]float64{"disk": 2}
		},
	}, {
		name: "quotes kept by an exec-form command (no shell)",
		line: `ray start --head --block --resources='{"A":1}'`,
		want: func(c *node.Config) {
			c.Head = true
			c.Resources = map[string]float64{"A": 1}
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := startArgs(t, tc.line)
			if tc.name == "quotes kept by an exec-form command (no shell)" {
				args = strings.Fields(strings.TrimPrefix(tc.line, "ray start "))
			}
			got, block, err := parseStart(t, args)
			if err != nil {
				t.Fatalf("goray start %q: %v", args, err)
			}
			if !block {
				t.Errorf("--block not seen")
			}
			want, _, err := parseStart(t, []string{"--head", "--block"})
			if err != nil {
				t.Fatal(err)
			}
			want.Head = false
			want.Resources, want.Labels = map[string]float64{}, map[string]string{}
			tc.want(&want)
			if got.Token != "tok" {
				t.Errorf("token %q, want the one in GORAY_AUTH_TOKEN", got.Token)
			}
			for _, f := range []struct {
				name      string
				got, want any
			}{
				{"Head", got.Head, want.Head}, {"Address", got.Address, want.Address}, {"Port", got.Port, want.Port},
				{"DashboardHost", got.DashboardHost, want.DashboardHost}, {"AgentPort", got.AgentPort, want.AgentPort},
				{"AgentPortSet", got.AgentPortSet, want.AgentPortSet}, {"NumCPUs", got.NumCPUs, want.NumCPUs},
				{"NumGPUs", got.NumGPUs, want.NumGPUs}, {"Memory", got.Memory, want.Memory},
				{"ObjectStoreMemory", got.ObjectStoreMemory, want.ObjectStoreMemory},
				{"Resources", got.Resources, want.Resources}, {"Labels", got.Labels, want.Labels},
			} {
				if !reflect.DeepEqual(f.got, f.want) {
					t.Errorf("%s = %v, want %v", f.name, f.got, f.want)
				}
			}
		})
	}
}

// TestKubeRayStartRejectsBadLines: what KubeRay could render wrongly still
// fails loudly instead of starting a different node.
func TestKubeRayStartRejectsBadLines(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	t.Setenv("GORAY_AUTH_TOKEN", "tok")
	for _, line := range []string{
		`ray start --head --block --resources='{"TPU":'`,
		`ray start --address=svc --block`,
		`ray start --head --block --labels=ray.io/node-type=x`,
		`ray start --head --block --no-such-flag=1`,
	} {
		if _, _, err := parseStart(t, startArgs(t, line)); err == nil {
			t.Errorf("%s: accepted", line)
		}
	}
}

// TestHealthCheck: `goray health-check --address` succeeds against a
// GCS server that answers, even one that refuses the call for want of a
// token, and fails against a port where nothing listens.
func TestHealthCheck(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	t.Setenv("GORAY_AUTH_TOKEN", "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(auth.ServerOptions("secret")...)
	rpcpb.RegisterGcsServiceServer(srv, rpcpb.UnimplementedGcsServiceServer{})
	go srv.Serve(ln)
	defer srv.Stop()
	if err := checkGCS(ln.Addr().String(), 5*time.Second); err != nil {
		t.Fatalf("health-check of a live GCS: %v", err)
	}

	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := dead.Addr().String()
	dead.Close()
	err = checkGCS(addr, time.Second)
	if !errors.Is(err, errGCSUnhealthy) {
		t.Fatalf("health-check of a closed port: %v, want %v", err, errGCSUnhealthy)
	}
	if err := checkGCS("no-port", time.Second); err == nil {
		t.Fatal("health-check accepted an address without a port")
	}
}
