// Command goray starts, stops and inspects goray nodes, like Ray's `ray`
// CLI. The binary is also a goray program (microbenchmark), so raylets may
// start it in worker mode.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/goray/goray"
)

func main() {
	if goray.IsWorker() {
		goray.Init() // serves tasks; never returns
	}
	root := &cobra.Command{
		Use:           "goray",
		Short:         "goray: Ray's cluster system in Go",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       goray.Version(),
	}
	root.AddCommand(startCmd(), stopCmd(), statusCmd(), authTokenCmd(), microbenchmarkCmd(), jobCmd(), memoryCmd(), listCmd(), requestResourcesCmd(), healthCheckCmd(), kuberayAutoscalerCmd())
	root.AddCommand(launcherCmds()...)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, errorLine(err))
		os.Exit(1)
	}
}

// errorLine is how main prints a command's error: with one "goray:"
// prefix, whether or not the error (from the goray package) has its own.
func errorLine(err error) string {
	return "goray: " + strings.TrimPrefix(err.Error(), "goray: ")
}
