package autoscaler

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/goray/goray/internal/autoscaler/request"
	"github.com/goray/goray/internal/clusterconfig"
	"github.com/goray/goray/internal/gcs"
	"github.com/goray/goray/internal/provider"
	"github.com/goray/goray/proto/rpcpb"
)

// refusingProvider is a provider whose infrastructure refuses every
// create, as a Docker daemon that is down would.
type refusingProvider struct {
	mu      sync.Mutex
	creates int
}

func (p *refusingProvider) NonTerminatedNodes(context.Context, map[string]string) ([]provider.Node, error) {
	return nil, nil
}
func (p *refusingProvider) CreateNodes(context.Context, provider.CreateRequest) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.creates++
	return errors.New("daemon refused: no space left on device")
}
func (p *refusingProvider) SetNodeTags(context.Context, string, map[string]string) error { return nil }
func (p *refusingProvider) TerminateNodes(context.Context, []string) error               { return nil }
func (p *refusingProvider) InternalIP(context.Context, string) (string, error)           { return "", nil }
func (p *refusingProvider) ExternalIP(context.Context, string) (string, error)           { return "", nil }
func (p *refusingProvider) Close() error                                                 { return nil }

// Launch failures are reported and retried with backoff; the loop goes on.
func TestLaunchFailuresAreReportedAndBackedOff(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := gcs.Start(gcs.Config{Listener: ln, BinaryDir: t.TempDir(), HealthCheckPeriod: time.Second, HealthCheckTimeout: time.Second, FailureThreshold: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := rpcpb.NewGcsServiceClient(conn)

	cfg, err := clusterconfig.Parse([]byte(`cluster_name: t
max_workers: 2
provider: {type: process}
head_node_type: head
available_node_types:
  head: {resources: {CPU: 0}, node_config: {}}
  w: {resources: {CPU: 1}, node_config: {}, min_workers: 1, max_workers: 2}
`))
	if err != nil {
		t.Fatal(err)
	}
	pv := &refusingProvider{}
	a, err := Start(Options{Config: cfg, Provider: pv, GCS: client, Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()

	// min_workers wants a node; every round fails; the failure reaches the KV.
	deadline := time.Now().Add(10 * time.Second)
	var rep Report
	for {
		r, err := client.KVGet(context.Background(), &rpcpb.KVRequest{Namespace: request.Namespace, Key: KVStatus})
		if err == nil && r.Found {
			json.Unmarshal(r.Value, &rep)
			if len(rep.Failures) > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no launch failure reported")
		}
		time.Sleep(10 * time.Millisecond) // polling the KV, not synchronising
	}
	f := rep.Failures[0]
	if f.Kind != "LaunchFailed" || f.NodeType != "w" || !strings.Contains(f.Detail, "no space left on device") {
		t.Fatalf("failure = %+v", f)
	}
	// Backoff doubles from the interval: by the time the delay reaches
	// 16 intervals, about five creates were tried, not one per round.
	for {
		a.mu.Lock()
		d := a.delay["w"]
		a.mu.Unlock()
		if d >= 16*a.opts.Interval {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the launch delay never grew")
		}
		time.Sleep(5 * time.Millisecond)
	}
	pv.mu.Lock()
	creates := pv.creates
	pv.mu.Unlock()
	if creates > 6 {
		t.Fatalf("%d creates before the delay reached 16 intervals: no exponential backoff", creates)
	}
	if got := a.LastReport(); len(got.Failures) != 1 {
		t.Fatalf("a repeated failure should be one entry, got %+v", got.Failures)
	}
}
