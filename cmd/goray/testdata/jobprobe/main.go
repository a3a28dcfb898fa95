// Command jobprobe is a goray program for the job tests: its tasks report
// the directory and environment a worker runs in.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/goray/goray"
)

var probe = goray.Register1("jobprobe.probe", func(ctx context.Context, i int) (string, error) {
	time.Sleep(300 * time.Millisecond) // long enough for the tasks to spread
	wd, _ := os.Getwd()
	marker, err := os.ReadFile("marker.txt")
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("node=%s dir=%s marker=%s env=%s", goray.NodeID(), filepath.Base(wd), marker, os.Getenv("PROBE_VAR")), nil
})

func main() {
	if err := goray.Init(); err != nil {
		fmt.Fprintln(os.Stderr, "jobprobe:", err)
		os.Exit(1)
	}
	defer goray.Shutdown()
	var refs []goray.ObjectRef[string]
	for i := range 6 {
		refs = append(refs, probe.Options(goray.Spread()).Remote(goray.Val(i)))
	}
	var out []string
	for _, ref := range refs {
		v, err := goray.Get(context.Background(), ref, goray.Timeout(time.Minute))
		if err != nil {
			fmt.Fprintln(os.Stderr, "jobprobe:", err)
			os.Exit(1)
		}
		out = append(out, v)
	}
	sort.Strings(out)
	for _, l := range out {
		fmt.Println(l)
	}
}
