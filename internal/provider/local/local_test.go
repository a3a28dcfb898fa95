package local

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goray/goray/internal/provider"
)

func ids(ns []provider.Node) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.ID)
	}
	return out
}

func TestLocalProviderHandsOutWorkerIPs(t *testing.T) {
	ctx := context.Background()
	store := FileStore{Path: filepath.Join(t.TempDir(), StateFile("c1"))}
	var mu sync.Mutex
	var setUp, stopped []string
	p, err := New(Config{ClusterName: "c1", HeadIP: "10.0.0.1", WorkerIPs: []string{"10.0.0.2", "10.0.0.3"}, ExternalHeadIP: "203.0.113.1", Store: store,
		Setup: func(ctx context.Context, n provider.Node, typ string) error {
			mu.Lock()
			defer mu.Unlock()
			setUp = append(setUp, n.ID+" "+typ)
			return nil
		},
		Teardown: func(ctx context.Context, ip string) error {
			mu.Lock()
			defer mu.Unlock()
			stopped = append(stopped, ip)
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	head := map[string]string{provider.TagNodeKind: provider.KindHead}
	if err := p.CreateNodes(ctx, provider.CreateRequest{NodeType: "h", Count: 1, Tags: head}); err != nil {
		t.Fatal(err)
	}
	worker := map[string]string{provider.TagNodeKind: provider.KindWorker, provider.TagUserNodeType: "w"}
	err = p.CreateNodes(ctx, provider.CreateRequest{NodeType: "w", Count: 3, Tags: worker})
	if err == nil || !strings.Contains(err.Error(), "only 2 of provider.worker_ips") {
		t.Fatalf("asking for 3 of 2 workers: %v", err)
	}
	ws, _ := p.NonTerminatedNodes(ctx, map[string]string{provider.TagNodeKind: provider.KindWorker})
	if got := ids(ws); !slices.Equal(got, []string{"10.0.0.2", "10.0.0.3"}) {
		t.Fatalf("workers %v", got)
	}
	hs, _ := p.NonTerminatedNodes(ctx, head)
	if len(hs) != 1 || hs[0].ID != "10.0.0.1" || hs[0].ExternalIP != "203.0.113.1" || hs[0].Tags[provider.TagClusterName] != "c1" {
		t.Fatalf("head %+v", hs)
	}
	p.Close() // waits for the setups
	if slices.Sort(setUp); !slices.Equal(setUp, []string{"10.0.0.2 w", "10.0.0.3 w"}) {
		t.Fatalf("set up %v", setUp)
	}

	// Another provider over the same file (the head's autoscaler and the
	// launcher) sees the same nodes; terminating frees an IP.
	q, _ := New(Config{ClusterName: "c1", HeadIP: "10.0.0.1", WorkerIPs: []string{"10.0.0.2", "10.0.0.3"}, Store: store,
		Teardown: func(ctx context.Context, ip string) error { stopped = append(stopped, ip); return nil }})
	if err := q.SetNodeTags(ctx, "10.0.0.2", map[string]string{provider.TagNodeStatus: provider.StatusUpToDate}); err != nil {
		t.Fatal(err)
	}
	if err := q.TerminateNodes(ctx, []string{"10.0.0.3"}); err != nil {
		t.Fatal(err)
	}
	ws, _ = p.NonTerminatedNodes(ctx, map[string]string{provider.TagNodeStatus: provider.StatusUpToDate})
	if got := ids(ws); !slices.Equal(got, []string{"10.0.0.2"}) || !slices.Equal(stopped, []string{"10.0.0.3"}) {
		t.Fatalf("after terminate: %v, stopped %v", got, stopped)
	}
	if err := q.CreateNodes(ctx, provider.CreateRequest{NodeType: "w", Count: 1, Tags: worker}); err != nil {
		t.Fatal(err)
	}
	// A different cluster cannot take a head in use.
	other, _ := New(Config{ClusterName: "c2", HeadIP: "10.0.0.1", Store: store})
	if err := other.CreateNodes(ctx, provider.CreateRequest{NodeType: "h", Count: 1, Tags: head}); err == nil || !strings.Contains(err.Error(), `in use by cluster "c1"`) {
		t.Fatalf("taking another cluster's head: %v", err)
	}
	if ns, _ := other.NonTerminatedNodes(ctx, nil); len(ns) != 0 {
		t.Fatalf("cluster c2 sees %v", ids(ns))
	}
}

func TestLocalProviderFailedSetupTerminatesTheNode(t *testing.T) {
	ctx := context.Background()
	p, _ := New(Config{ClusterName: "c", HeadIP: "10.0.0.1", WorkerIPs: []string{"10.0.0.2"},
		Store: FileStore{Path: filepath.Join(t.TempDir(), "s")},
		Setup: func(ctx context.Context, n provider.Node, typ string) error {
			return errors.New("10.0.0.2: setup_commands failed")
		}})
	defer p.Close()
	if err := p.CreateNodes(ctx, provider.CreateRequest{NodeType: "w", Count: 1, Tags: map[string]string{provider.TagNodeKind: provider.KindWorker}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	var failures []string
	for {
		for _, f := range p.Failures() {
			failures = append(failures, f.String())
		}
		ns, _ := p.NonTerminatedNodes(ctx, nil)
		if len(failures) == 1 && strings.Contains(failures[0], "setup_commands failed") && len(ns) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("failures %q, nodes %v: want the failure reported and the node terminated", failures, ids(ns))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
