package testcluster

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// StartHead starts a cluster of only a head whose `goray start` gets the
// extra flags after the defaults, so they override them: e.g.
// --node-ip-address=<a Docker bridge's gateway> and --num-cpus=0 for a
// head on the host that nodes in containers join. opts.Workers is ignored;
// nodes join c.Address from elsewhere. Everything is stopped when the test
// ends.
func StartHead(t testing.TB, opts Options, flags ...string) *Cluster {
	t.Helper()
	if opts.HeadCPUs == 0 {
		opts.HeadCPUs = 1
	}
	if opts.HealthCheckPeriod == 0 {
		opts.HealthCheckPeriod = 200 * time.Millisecond
	}
	if opts.FailureThreshold == 0 {
		opts.FailureThreshold = 3
	}
	root := t.TempDir()
	c := &Cluster{
		t: t, Bin: GorayBinary(t), TempRoot: filepath.Join(root, "tmp"), Home: filepath.Join(root, "home"),
		Token: fmt.Sprintf("testtoken%d", time.Now().UnixNano()), opts: opts,
	}
	os.MkdirAll(c.Home, 0o700)
	t.Cleanup(c.Stop)
	c.Head = c.StartNode(NodeOptions{CPUs: opts.HeadCPUs, Flags: append([]string{"--head", "--port=0", "--dashboard-port=0"}, flags...)})
	c.Address = c.Head.Info.GCSAddress
	return c
}
