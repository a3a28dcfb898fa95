package registry

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/goray/goray/internal/clusterconfig"
	"github.com/goray/goray/internal/launcher/runner"
	"github.com/goray/goray/internal/launcher/updater"
	"github.com/goray/goray/internal/provider"
	"github.com/goray/goray/internal/provider/local"
)

// SSHWaitTimeout is how long an updater waits for a host to accept SSH:
// $GORAY_LAUNCHER_SSH_TIMEOUT_S seconds, default 300.
func SSHWaitTimeout() time.Duration {
	if v, err := strconv.ParseFloat(os.Getenv("GORAY_LAUNCHER_SSH_TIMEOUT_S"), 64); err == nil && v > 0 {
		return time.Duration(v * float64(time.Second))
	}
	return 300 * time.Second
}

// SSHRunner returns the SSH runner for one host of a config: auth's user,
// key and proxy command; host keys are checked only when
// $GORAY_SSH_KNOWN_HOSTS names a known_hosts file.
func SSHRunner(c *clusterconfig.Config, host string) (*runner.SSH, error) {
	return runner.NewSSH(runner.SSHConfig{
		Host: host, User: c.Auth.SSHUser, KeyPath: c.Auth.SSHPrivateKey,
		ProxyCommand: c.Auth.SSHProxyCommand, KnownHostsFile: os.Getenv("GORAY_SSH_KNOWN_HOSTS"),
	})
}

// newLocal is the local provider on the head: state in the head's temp
// root, workers set up over SSH by the launcher's updater with the
// bootstrapped key, goray stopped on them at termination.
func newLocal(c *clusterconfig.Config, params provider.Params, host provider.Host) (provider.NodeProvider, error) {
	log := host.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	headIP := c.Provider.HeadIP
	if h, _, err := net.SplitHostPort(params.GCSAddress); err == nil && h != "" {
		headIP = h
	}
	hash := c.RuntimeHash()
	var (
		fmOnce sync.Once
		fmHash string
	)
	return local.New(local.Config{
		ClusterName: c.ClusterName, HeadIP: c.Provider.HeadIP, WorkerIPs: c.Provider.WorkerIPs,
		ExternalHeadIP: c.Provider.ExternalHeadIP, Logger: log,
		Store: local.FileStore{Path: filepath.Join(host.TempRoot, local.StateFile(c.ClusterName))},
		Setup: func(ctx context.Context, n provider.Node, nodeType string) error {
			r, err := SSHRunner(c, n.ID)
			if err != nil {
				return err
			}
			defer r.Close()
			fmOnce.Do(func() { fmHash = updater.ContentsHash(c.FileMounts, c.ClusterSyncedFiles...) })
			var res map[string]float64
			if t := c.AvailableNodeTypes[nodeType]; t != nil {
				res = t.Resources
			}
			u := &updater.Updater{
				NodeID: n.ID, Runner: r, Tags: n.Tags,
				FileMounts: c.FileMounts, SyncedFiles: c.ClusterSyncedFiles,
				Sync:        runner.SyncOptions{Exclude: c.RsyncExclude, FilterFiles: c.RsyncFilter},
				Plan:        updater.WorkerPlan(c, nodeType),
				Env:         updater.WorkerEnv(headIP, n.ID, nodeType, params.Token, res),
				RuntimeHash: hash, FileMountsHash: fmHash,
				WaitTimeout: SSHWaitTimeout(), Out: &logLines{log: log.With("node", n.ID)},
			}
			return u.Run(ctx)
		},
		Teardown: func(ctx context.Context, ip string) error {
			r, err := SSHRunner(c, ip)
			if err != nil {
				return err
			}
			defer r.Close()
			ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			return r.Run(ctx, "goray stop", nil, nil)
		},
	})
}

// logLines writes each line an updater prints to the monitor log.
type logLines struct {
	log *slog.Logger
	buf []byte
}

func (l *logLines) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.log.Info("updater", "line", string(bytes.TrimRight(l.buf[:i], " ")))
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}
