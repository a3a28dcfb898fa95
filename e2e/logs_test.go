package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/goray/goray/testcluster"
)

// TestNodeLogs: every node started by goray start logs to
// <session>/logs/goray.log; the head's log records the GCS registering
// both nodes.
func TestNodeLogs(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Workers: 1})
	read := func(n *testcluster.Node) string {
		b, err := os.ReadFile(filepath.Join(n.Info.SessionDir, "logs", "goray.log"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	head := read(c.Head)
	for _, id := range []string{c.Head.Info.NodeID, c.Workers[0].Info.NodeID} {
		if !regexp.MustCompile(`(?m)msg="node registered" .*node=` + id).MatchString(head) {
			t.Errorf("the head's goray.log lacks the registration of %s:\n%s", id, head)
		}
	}
	if w := read(c.Workers[0]); !strings.Contains(w, `msg="node started" node=`+c.Workers[0].Info.NodeID) {
		t.Errorf("the worker's goray.log lacks its start:\n%s", w)
	}
}
