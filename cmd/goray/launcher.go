package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/goray/goray/internal/launcher"
	"github.com/goray/goray/internal/launcher/runner"
)

// clusterFlags are the flags every cluster launcher command takes.
type clusterFlags struct {
	name          string
	noConfigCache bool
	yes           bool
	minWorkers    int
	maxWorkers    int
}

func (cf *clusterFlags) add(f *pflag.FlagSet, cache, yes bool) {
	f.StringVarP(&cf.name, "cluster-name", "n", "", "override the config's cluster_name")
	if cache {
		f.BoolVar(&cf.noConfigCache, "no-config-cache", false, "read the config file anew instead of the cached copy")
	}
	if yes {
		f.BoolVarP(&cf.yes, "yes", "y", false, "answer yes to every prompt")
	}
}

// open loads the config and connects to its provider. Progress goes to
// stderr, except for up and down (progress is their output), so that the
// output of exec, get-head-ip and the like can be read by scripts.
func (cf *clusterFlags) open(cmd *cobra.Command, configPath string) (*launcher.Cluster, context.Context, func(), error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	o := launcher.Options{
		ConfigPath: configPath, NoConfigCache: cf.noConfigCache, Yes: cf.yes,
		Out: cmd.ErrOrStderr(), In: cmd.InOrStdin(),
		Overrides: launcher.Overrides{ClusterName: cf.name},
	}
	f := cmd.Flags()
	if f.Lookup("min-workers") != nil && f.Changed("min-workers") {
		o.Overrides.MinWorkers = &cf.minWorkers
	}
	if f.Lookup("max-workers") != nil && f.Changed("max-workers") {
		o.Overrides.MaxWorkers = &cf.maxWorkers
	}
	if cmd.Name() == "up" || cmd.Name() == "down" {
		o.Out = cmd.OutOrStdout()
	}
	cl, err := launcher.Open(ctx, o)
	if err != nil {
		stop()
		return nil, nil, nil, err
	}
	return cl, ctx, func() { cl.Close(); stop() }, nil
}

// exitCode turns a remote command's exit status into this process's.
func exitCode(err error) error {
	var ee *runner.ExitError
	if errors.As(err, &ee) {
		fmt.Fprintf(os.Stderr, "goray: %v\n", err)
		os.Exit(ee.Code)
	}
	return err
}

func launcherCmds() []*cobra.Command {
	return []*cobra.Command{upCmd(), downCmd(), execCmd(), attachCmd(), submitCmd(), rsyncCmd(true), rsyncCmd(false),
		headIPCmd(), workerIPsCmd(), monitorCmd()}
}

func upCmd() *cobra.Command {
	var cf clusterFlags
	var o launcher.UpOptions
	cmd := &cobra.Command{
		Use:   "up CLUSTER_CONFIG",
		Short: "Create or update a cluster from a cluster YAML (Ray's ray up)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.NoRestart && o.RestartOnly {
				return errors.New("--no-restart and --restart-only exclude each other")
			}
			cl, ctx, done, err := cf.open(cmd, args[0])
			if err != nil {
				return err
			}
			defer done()
			return cl.Up(ctx, o)
		},
	}
	f := cmd.Flags()
	cf.add(f, true, true)
	f.IntVar(&cf.minWorkers, "min-workers", 0, "override the worker node type's min_workers")
	f.IntVar(&cf.maxWorkers, "max-workers", 0, "override max_workers")
	f.BoolVar(&o.NoRestart, "no-restart", false, "run file mounts and setup without restarting goray")
	f.BoolVar(&o.RestartOnly, "restart-only", false, "skip setup and only restart goray")
	return cmd
}

func downCmd() *cobra.Command {
	var cf clusterFlags
	var o launcher.DownOptions
	cmd := &cobra.Command{
		Use:   "down CLUSTER_CONFIG",
		Short: "Stop goray on a cluster's nodes and terminate them (Ray's ray down)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, ctx, done, err := cf.open(cmd, args[0])
			if err != nil {
				return err
			}
			defer done()
			return cl.Down(ctx, o)
		},
	}
	f := cmd.Flags()
	cf.add(f, false, true)
	f.BoolVar(&o.WorkersOnly, "workers-only", false, "terminate the worker nodes only")
	f.BoolVar(&o.KeepMinWorkers, "keep-min-workers", false, "keep min_workers worker nodes of each type")
	return cmd
}

// startStop adds --start and --stop: bring the cluster up before the
// command and tear it down after.
type startStop struct{ start, stop bool }

func (s *startStop) add(f *pflag.FlagSet) {
	f.BoolVar(&s.start, "start", false, "start the cluster first if needed (goray up)")
	f.BoolVar(&s.stop, "stop", false, "tear the cluster down after the command (goray down)")
}

func (s *startStop) around(ctx context.Context, cl *launcher.Cluster, f func() error) error {
	if s.start {
		if _, err := cl.Head(ctx); errors.Is(err, launcher.ErrNoHead) {
			if err := cl.Up(ctx, launcher.UpOptions{}); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
	}
	err := f()
	if s.stop {
		if derr := cl.Down(ctx, launcher.DownOptions{}); derr != nil && err == nil {
			err = derr
		}
	}
	return err
}

func execCmd() *cobra.Command {
	return headCommand(cobra.ExactArgs(2), "exec CLUSTER_CONFIG CMD", "Run a shell command on the cluster's head node (Ray's ray exec)",
		"run the command in a detached", func(ctx context.Context, cl *launcher.Cluster, args []string, o launcher.ExecOptions, out io.Writer) error {
			return cl.Exec(ctx, args[1], o, out)
		})
}

func submitCmd() *cobra.Command {
	return headCommand(cobra.MinimumNArgs(2), "submit CLUSTER_CONFIG SCRIPT [-- ARGS...]", "Copy a script or program to ~/ on the head and run it there (Ray's ray submit)",
		"run in a detached", func(ctx context.Context, cl *launcher.Cluster, args []string, o launcher.ExecOptions, out io.Writer) error {
			return cl.Submit(ctx, args[1], args[2:], o, out)
		})
}

// headCommand builds exec and submit: a run on the head with --start,
// --stop, --screen and --tmux, whose exit code becomes goray's.
func headCommand(nargs cobra.PositionalArgs, use, short, detached string, run func(context.Context, *launcher.Cluster, []string, launcher.ExecOptions, io.Writer) error) *cobra.Command {
	var cf clusterFlags
	var ss startStop
	var o launcher.ExecOptions
	cmd := &cobra.Command{
		Use: use, Short: short, Args: nargs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Screen && o.Tmux {
				return errors.New("--screen and --tmux exclude each other")
			}
			cf.yes = cf.yes || ss.stop
			cl, ctx, done, err := cf.open(cmd, args[0])
			if err != nil {
				return err
			}
			defer done()
			return exitCode(ss.around(ctx, cl, func() error { return run(ctx, cl, args, o, cmd.OutOrStdout()) }))
		},
	}
	f := cmd.Flags()
	cf.add(f, true, false)
	ss.add(f)
	f.BoolVar(&o.Screen, "screen", false, detached+" screen session")
	f.BoolVar(&o.Tmux, "tmux", false, detached+" tmux session")
	return cmd
}

func attachCmd() *cobra.Command {
	var cf clusterFlags
	var start, screen, tmux, newSession bool
	cmd := &cobra.Command{
		Use:   "attach CLUSTER_CONFIG",
		Short: "Open an interactive shell on the cluster's head node (Ray's ray attach)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if screen && tmux {
				return errors.New("--screen and --tmux exclude each other")
			}
			cl, ctx, done, err := cf.open(cmd, args[0])
			if err != nil {
				return err
			}
			defer done()
			ss := startStop{start: start}
			shell := ""
			switch {
			case screen && newSession:
				shell = "screen -L"
			case screen:
				shell = "screen -L -xRR"
			case tmux && newSession:
				shell = "tmux new"
			case tmux:
				shell = "tmux attach || tmux new"
			}
			return exitCode(ss.around(ctx, cl, func() error {
				return cl.Attach(ctx, shell, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
			}))
		},
	}
	f := cmd.Flags()
	cf.add(f, true, false)
	f.BoolVar(&start, "start", false, "start the cluster first if needed")
	f.BoolVar(&screen, "screen", false, "attach to a screen session")
	f.BoolVar(&tmux, "tmux", false, "attach to a tmux session")
	f.BoolVarP(&newSession, "new", "N", false, "with --screen or --tmux: a new session")
	return cmd
}

func rsyncCmd(up bool) *cobra.Command {
	var cf clusterFlags
	use, short, alias := "rsync-down CLUSTER_CONFIG SOURCE TARGET", "Copy a path from the head node to this machine", "rsync_down"
	if up {
		use, short, alias = "rsync-up CLUSTER_CONFIG SOURCE TARGET", "Copy a path from this machine to the head node", "rsync_up"
	}
	cmd := &cobra.Command{
		Use: use, Short: short + " (rsync over SSH, else SFTP; docker: the Engine API)", Aliases: []string{alias},
		Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, ctx, done, err := cf.open(cmd, args[0])
			if err != nil {
				return err
			}
			defer done()
			if up {
				return cl.RsyncUp(ctx, args[1], args[2])
			}
			return cl.RsyncDown(ctx, args[1], args[2])
		},
	}
	cf.add(cmd.Flags(), false, false)
	return cmd
}

func headIPCmd() *cobra.Command {
	return ipsCmd("get-head-ip", "Print the head node's IP", func(cl *launcher.Cluster, ctx context.Context) ([]string, error) {
		ip, err := cl.HeadIP(ctx)
		return []string{ip}, err
	})
}

func workerIPsCmd() *cobra.Command {
	return ipsCmd("get-worker-ips", "Print the worker nodes' IPs, one a line", (*launcher.Cluster).WorkerIPs)
}

// ipsCmd is `goray NAME CLUSTER_CONFIG` printing the IPs ips returns, one
// a line (Ray's get-head-ip and get-worker-ips, also with underscores).
func ipsCmd(name, short string, ips func(*launcher.Cluster, context.Context) ([]string, error)) *cobra.Command {
	var cf clusterFlags
	cmd := &cobra.Command{
		Use: name + " CLUSTER_CONFIG", Short: short, Aliases: []string{strings.ReplaceAll(name, "-", "_")},
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, ctx, done, err := cf.open(cmd, args[0])
			if err != nil {
				return err
			}
			defer done()
			list, err := ips(cl, ctx)
			if err != nil {
				return err
			}
			for _, ip := range list {
				fmt.Fprintln(cmd.OutOrStdout(), ip)
			}
			return nil
		},
	}
	cf.add(cmd.Flags(), false, false)
	return cmd
}

func monitorCmd() *cobra.Command {
	var cf clusterFlags
	var lines int
	cmd := &cobra.Command{
		Use:   "monitor CLUSTER_CONFIG",
		Short: "Follow the head's autoscaler log (monitor.log)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if lines <= 0 {
				return fmt.Errorf("--lines %d must be positive", lines)
			}
			cl, ctx, done, err := cf.open(cmd, args[0])
			if err != nil {
				return err
			}
			defer done()
			err = cl.Monitor(ctx, lines, cmd.OutOrStdout())
			if ctx.Err() != nil {
				return nil
			}
			return exitCode(err)
		},
	}
	cf.add(cmd.Flags(), false, false)
	cmd.Flags().IntVar(&lines, "lines", 100, "lines of the log to show first")
	return cmd
}
