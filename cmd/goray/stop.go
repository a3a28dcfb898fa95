package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/goray/goray/internal/node"
	"github.com/goray/goray/internal/provider/registry"
)

type recorded struct {
	path string
	info node.Info
}

// recordedNodes lists the nodes recorded under the temp root, worker
// nodes first so they leave before their head.
func recordedNodes(root string) ([]recorded, error) {
	files, err := filepath.Glob(filepath.Join(root, "session_*", node.InfoFile))
	if err != nil {
		return nil, err
	}
	var out []recorded
	seen := map[int]bool{} // session_latest links to a session listed too
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var info node.Info
		if json.Unmarshal(b, &info) != nil || info.PID <= 0 || seen[info.PID] {
			continue
		}
		seen[info.PID] = true
		out = append(out, recorded{f, info})
	}
	sort.SliceStable(out, func(i, j int) bool { return !out[i].info.Head && out[j].info.Head })
	return out, nil
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func stopCmd() *cobra.Command {
	var (
		force   bool
		grace   int
		tempDir string
	)
	cmd := &cobra.Command{
		Use:   "stop",
		Short: "Stop every goray node recorded under the temp root and wait for them to exit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if grace < 0 {
				return fmt.Errorf("--grace-period %d must not be negative", grace)
			}
			root := node.TempRoot(tempDir)
			nodes, err := recordedNodes(root)
			if err != nil {
				return err
			}
			sig := syscall.SIGTERM
			if force {
				sig = syscall.SIGKILL
			}
			var live []recorded
			for _, n := range nodes {
				if !alive(n.info.PID) {
					os.Remove(n.path) // a node that died without cleaning up
					continue
				}
				if err := syscall.Kill(n.info.PID, sig); err == nil {
					live = append(live, n)
				}
			}
			deadline := time.Now().Add(time.Duration(grace) * time.Second)
			killed := false
			for {
				left := 0
				for _, n := range live {
					if alive(n.info.PID) {
						left++
					}
				}
				if left == 0 {
					break
				}
				if !killed && time.Now().After(deadline) {
					for _, n := range live {
						syscall.Kill(n.info.PID, syscall.SIGKILL)
					}
					killed = true
				}
				time.Sleep(50 * time.Millisecond) // polling process exit: no wait(2) on non-children
			}
			for _, n := range live {
				os.Remove(n.path)
				if n.info.Head {
					os.Remove(filepath.Join(root, node.CurrentClusterFile))
				}
			}
			// A head killed before it removed its containers leaves them.
			for _, n := range nodes {
				if n.info.Head && n.info.ProviderType != "" {
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					err := registry.Cleanup(ctx, n.info.ProviderType, n.info.ClusterName)
					cancel()
					if err != nil {
						fmt.Fprintf(cmd.ErrOrStderr(), "goray: cluster %s: %v\n", n.info.ClusterName, err)
					}
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Stopped all %d goray processes.\n", len(live))
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "SIGKILL instead of SIGTERM")
	cmd.Flags().IntVarP(&grace, "grace-period", "g", 16, "seconds to wait before force-killing")
	cmd.Flags().StringVar(&tempDir, "temp-dir", "", "temp root (default $GORAY_TEMP or /tmp/goray)")
	return cmd
}
