// Package updater brings one node to its configured state, like Ray's
// NodeUpdater: wait until the node accepts commands, sync the file
// mounts, run the initialization, setup and start commands, and record
// each step in the node's ray-node-status tag (waiting-for-ssh,
// syncing-files, setting-up, then up-to-date or update-failed). The
// launcher runs it for the head; the head's autoscaler runs it for the
// workers of providers that do not start goray themselves (local).
package updater

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/goray/goray/internal/clusterconfig"
	"github.com/goray/goray/internal/launcher/runner"
	"github.com/goray/goray/internal/provider"
)

// Node statuses of the ray-node-status tag besides provider's.
const (
	StatusWaitingForSSH = "waiting-for-ssh"
	StatusSyncingFiles  = "syncing-files"
	StatusSettingUp     = "setting-up"
	// TagFileMountsContents holds the hash of the file mounts' contents
	// (Ray's ray-file-mounts-contents).
	TagFileMountsContents = "ray-file-mounts-contents"
)

// Step names used in messages. A failing command list is named by its
// config key (Plan's InitKey, RoleSetupKey, StartKey), e.g.
// worker_setup_commands or available_node_types.gpu.worker_setup_commands.
const (
	StepWait = StatusWaitingForSSH
	// StepWaitHost is the wait step of runners that use no SSH (docker
	// exec, a local shell); the ray-node-status tag still says
	// waiting-for-ssh, Ray's value.
	StepWaitHost = "waiting-for-host"
	StepSync     = StatusSyncingFiles
	StepInit     = "initialization_commands"
	StepSetup    = "setup_commands"
	StepStart    = "start_ray_commands"
)

// Updater updates one node.
type Updater struct {
	// Provider and NodeID receive the status tags; Provider may be nil.
	Provider provider.NodeProvider
	NodeID   string
	Runner   runner.Runner

	// FileMounts maps remote paths to local ones; SyncedFiles (workers'
	// cluster_synced_files) are copied to the same path.
	FileMounts  map[string]string
	SyncedFiles []string
	Sync        runner.SyncOptions

	// Plan is the node's command lists: initialization, setup_commands,
	// head_ or worker_setup_commands, start commands, with the config
	// keys that name them in messages.
	Plan Plan
	Env  map[string]string

	// RuntimeHash and FileMountsHash are the node's target; when its tags
	// carry both already, setup is skipped (Ray's "already up to date").
	RuntimeHash, FileMountsHash string
	// RestartOnly skips file mounts and setup and only runs the start
	// commands; NoRestart skips the start commands.
	RestartOnly, NoRestart bool
	// Tags are the node's current tags (for the up-to-date check).
	Tags map[string]string

	// WaitTimeout bounds waiting-for-ssh (default 300s); WaitInterval is
	// the pause between tries (default 5s, Ray's AUTOSCALER_NODE_SSH_INTERVAL_S).
	WaitTimeout, WaitInterval time.Duration
	// Out receives progress lines and command output.
	Out io.Writer
}

// StepError is a failed update: which node, which step, which command.
type StepError struct {
	Host   string
	Step   string
	Cmd    string // "" for steps that are not a command
	Output string
	Err    error
}

func (e *StepError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s failed", e.Host, e.Step)
	if e.Cmd != "" {
		fmt.Fprintf(&b, " running %q", e.Cmd)
	}
	msg := e.Err.Error()
	var ee *runner.ExitError
	if errors.As(e.Err, &ee) {
		msg = fmt.Sprintf("exit status %d", ee.Code)
	}
	msg = strings.TrimPrefix(msg, e.Host+": ")
	fmt.Fprintf(&b, ": %s", msg)
	if e.Output != "" {
		fmt.Fprintf(&b, "\n--- output ---\n%s", e.Output)
	}
	return b.String()
}

func (e *StepError) Unwrap() error { return e.Err }

func (u *Updater) printf(format string, args ...any) {
	if u.Out != nil {
		fmt.Fprintf(u.Out, format, args...)
	}
}

func (u *Updater) tag(ctx context.Context, tags map[string]string) {
	if u.Provider != nil && u.NodeID != "" {
		u.Provider.SetNodeTags(ctx, u.NodeID, tags)
	}
}

// UpToDate reports whether the node's tags say its setup matches.
func (u *Updater) UpToDate() bool {
	return u.RuntimeHash != "" && u.Tags[provider.TagRuntimeConfig] == u.RuntimeHash &&
		u.Tags[TagFileMountsContents] == u.FileMountsHash
}

// Run updates the node. On failure the node is tagged update-failed and
// the error is a *StepError.
func (u *Updater) Run(ctx context.Context) error {
	err := u.run(ctx)
	if err != nil {
		u.tag(context.WithoutCancel(ctx), map[string]string{provider.TagNodeStatus: provider.StatusUpdateFailed})
		u.printf("  [%s] update-failed\n", u.Runner.Host())
	}
	return err
}

// WaitStep is the name of the wait step for a runner: waiting-for-ssh
// over SSH, else waiting-for-host.
func WaitStep(r runner.Runner) string {
	if _, ok := r.(*runner.SSH); ok {
		return StepWait
	}
	return StepWaitHost
}

func (u *Updater) run(ctx context.Context) error {
	host := u.Runner.Host()
	u.tag(ctx, map[string]string{provider.TagNodeStatus: StatusWaitingForSSH})
	u.printf("  [%s] %s\n", host, WaitStep(u.Runner))
	if err := u.Wait(ctx); err != nil {
		return &StepError{Host: host, Step: WaitStep(u.Runner), Err: err}
	}
	setup := !u.RestartOnly && !u.UpToDate()
	p := u.Plan
	if !setup && !u.RestartOnly {
		u.printf("  [%s] configuration already up to date, skipping file mounts, initialization and setup commands\n", host)
	}
	if setup {
		u.tag(ctx, map[string]string{provider.TagNodeStatus: StatusSyncingFiles})
		if err := u.syncFiles(ctx); err != nil {
			return err
		}
		u.tag(ctx, map[string]string{provider.TagNodeStatus: StatusSettingUp})
		if err := u.runAll(ctx, or(p.InitKey, StepInit), p.Init); err != nil {
			return err
		}
		if err := u.runAll(ctx, StepSetup, p.Setup); err != nil {
			return err
		}
		if err := u.runAll(ctx, or(p.RoleSetupKey, "head_setup_commands"), p.RoleSetup); err != nil {
			return err
		}
	}
	if !u.NoRestart {
		u.tag(ctx, map[string]string{provider.TagNodeStatus: StatusSettingUp})
		if err := u.runAll(ctx, or(p.StartKey, StepStart), p.Start); err != nil {
			return err
		}
	}
	tags := map[string]string{provider.TagNodeStatus: provider.StatusUpToDate}
	if setup {
		tags[provider.TagRuntimeConfig] = u.RuntimeHash
		tags[TagFileMountsContents] = u.FileMountsHash
	}
	u.tag(ctx, tags)
	u.printf("  [%s] up-to-date\n", host)
	return nil
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Wait polls the runner's Ready until it succeeds, fails permanently or
// the timeout has passed (the waiting-for-ssh step): the last try is made
// at the deadline, and the error says how long it really waited.
func (u *Updater) Wait(ctx context.Context) error {
	timeout, interval := u.WaitTimeout, u.WaitInterval
	if timeout <= 0 {
		timeout = 300 * time.Second
	}
	if interval <= 0 {
		interval = 5 * time.Second
	}
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		err := u.Runner.Ready(ctx)
		if err == nil {
			return nil
		}
		if errors.Is(err, runner.ErrPermanent) {
			return err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("not reachable after %s (timeout %s): %w", roundDuration(time.Since(start)), timeout, err)
		}
		pause := min(interval, left)
		u.printf("  [%s] not ready yet (%v), retrying in %s\n", u.Runner.Host(), err, roundDuration(pause))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
	}
}

// roundDuration rounds for messages: 8.004s -> 8s, 30.4ms -> 30ms.
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Second:
		return d.Round(time.Second)
	case d >= time.Second:
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}

func (u *Updater) syncFiles(ctx context.Context) error {
	host := u.Runner.Host()
	for _, remote := range slices.Sorted(maps.Keys(u.FileMounts)) {
		local := u.FileMounts[remote]
		u.printf("  [%s] syncing-files: %s -> %s\n", host, local, remote)
		if err := u.Runner.Upload(ctx, local, remote, u.Sync); err != nil {
			return &StepError{Host: host, Step: StepSync, Cmd: local + " -> " + remote, Err: err}
		}
	}
	for _, p := range u.SyncedFiles {
		u.printf("  [%s] syncing-files: %s (cluster_synced_files)\n", host, p)
		if err := u.Runner.Upload(ctx, p, p, u.Sync); err != nil {
			return &StepError{Host: host, Step: StepSync, Cmd: p, Err: err}
		}
	}
	return nil
}

func (u *Updater) runAll(ctx context.Context, step string, cmds []string) error {
	host := u.Runner.Host()
	for _, c := range cmds {
		u.printf("  [%s] %s: %s\n", host, step, c)
		var out io.Writer
		if u.Out != nil {
			out = &indent{w: u.Out, prefix: "    "}
		}
		if err := u.Runner.Run(ctx, c, u.Env, out); err != nil {
			se := &StepError{Host: host, Step: step, Cmd: c, Err: err}
			var ee *runner.ExitError
			if errors.As(err, &ee) {
				se.Output = ee.Output
			}
			return se
		}
	}
	return nil
}

// indent prefixes each line written through it.
type indent struct {
	w      io.Writer
	prefix string
	mid    bool
}

func (p *indent) Write(b []byte) (int, error) {
	var out []byte
	for _, c := range b {
		if !p.mid {
			out = append(out, p.prefix...)
			p.mid = true
		}
		out = append(out, c)
		if c == '\n' {
			p.mid = false
		}
	}
	_, err := p.w.Write(out)
	return len(b), err
}

// ContentsHash hashes the contents of the local side of file mounts (and
// any extra paths): names, modes and bytes of every file below them, so a
// changed file reruns setup. Missing paths hash as missing.
func ContentsHash(mounts map[string]string, extra ...string) string {
	h := sha1.New()
	add := func(root string) {
		fmt.Fprintf(h, "root %s\n", root)
		filepath.Walk(runner.HomePath(root, homeDir()), func(p string, info fs.FileInfo, err error) error {
			if err != nil {
				fmt.Fprintf(h, "missing %s\n", p)
				return nil
			}
			fmt.Fprintf(h, "%s %o\n", p, info.Mode())
			if info.Mode().IsRegular() {
				if f, err := os.Open(p); err == nil {
					io.Copy(h, f)
					f.Close()
				}
			}
			return nil
		})
	}
	for _, remote := range slices.Sorted(maps.Keys(mounts)) {
		fmt.Fprintf(h, "mount %s\n", remote)
		add(mounts[remote])
	}
	for _, p := range extra {
		add(p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func homeDir() string {
	h, _ := os.UserHomeDir()
	return h
}

// Plan is the commands of one node of a config, run in this order, and
// the config keys they come from (for messages).
type Plan struct {
	Init      []string // initialization_commands (the type's, else the global ones)
	Setup     []string // setup_commands
	RoleSetup []string // head_setup_commands or worker_setup_commands
	Start     []string // head_ or worker_start_ray_commands

	InitKey, RoleSetupKey, StartKey string
}

// Commands lists every command of the plan in order.
func (p Plan) Commands() []string {
	var out []string
	for _, l := range [][]string{p.Init, p.Setup, p.RoleSetup, p.Start} {
		out = append(out, l...)
	}
	return out
}

// HeadPlan returns the head's commands: initialization_commands (the head
// type's, else the global ones), setup_commands, head_setup_commands,
// head_start_ray_commands.
func HeadPlan(c *clusterconfig.Config) Plan {
	init, initKey := initCommands(c, c.HeadNodeType)
	return Plan{
		Init: init, Setup: c.SetupCommands, RoleSetup: c.HeadSetupCommands, Start: c.HeadStartRayCommands,
		InitKey: initKey, RoleSetupKey: "head_setup_commands", StartKey: "head_start_ray_commands",
	}
}

// WorkerPlan returns a worker's commands: initialization_commands and
// worker_setup_commands of its type where set (they replace the global
// ones, as in Ray), setup_commands first, worker_start_ray_commands.
func WorkerPlan(c *clusterconfig.Config, nodeType string) Plan {
	ws, wsKey := c.WorkerSetupCommands, "worker_setup_commands"
	if nt := c.AvailableNodeTypes[nodeType]; nt != nil && nt.WorkerSetupCommands != nil {
		ws, wsKey = nt.WorkerSetupCommands, "available_node_types."+nodeType+".worker_setup_commands"
	}
	init, initKey := initCommands(c, nodeType)
	return Plan{
		Init: init, Setup: c.SetupCommands, RoleSetup: ws, Start: c.WorkerStartRayCommands,
		InitKey: initKey, RoleSetupKey: wsKey, StartKey: "worker_start_ray_commands",
	}
}

func initCommands(c *clusterconfig.Config, nodeType string) ([]string, string) {
	if nt := c.AvailableNodeTypes[nodeType]; nt != nil && nt.InitializationCommands != nil {
		return nt.InitializationCommands, "available_node_types." + nodeType + ".initialization_commands"
	}
	return c.InitializationCommands, StepInit
}

// WorkerEnv is the environment of a worker's commands: the head's IP as
// RAY_HEAD_IP and GORAY_HEAD_IP (for worker_start_ray_commands), the
// node's provider id and type (so it registers as the autoscaler's node),
// the cluster token, and its type's resources as RAY_OVERRIDE_RESOURCES.
func WorkerEnv(headIP, nodeID, nodeType, token string, resources map[string]float64) map[string]string {
	env := map[string]string{
		"RAY_HEAD_IP": headIP, "GORAY_HEAD_IP": headIP,
		provider.EnvInstanceID: nodeID, provider.EnvNodeTypeName: nodeType,
	}
	if token != "" {
		env["GORAY_AUTH_TOKEN"] = token
	}
	if len(resources) > 0 {
		keys := make([]string, 0, len(resources))
		for k := range resources {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%q: %v", k, resources[k]))
		}
		env["RAY_OVERRIDE_RESOURCES"] = "{" + strings.Join(parts, ", ") + "}"
	}
	return env
}
