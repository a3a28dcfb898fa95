package e2e

import (
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"

	"github.com/goray/goray"
	"github.com/goray/goray/testcluster"
)

// TestNodeMetrics scrapes a head's --metrics-export-port as Prometheus
// would: the cluster token is required, and Ray's metric names report an
// actor's CPU as USED and a put object in the object store.
func TestNodeMetrics(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{HeadCPUs: 2, HeadFlags: []string{"--metrics-export-port=0"}})
	addr := c.Head.Info.MetricsAddress
	if addr == "" {
		t.Fatal("the head reports no metrics address")
	}
	scrape := func(token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := scrape(""); code != http.StatusUnauthorized {
		t.Errorf("scrape without the token: %d, want 401", code)
	}
	if code, _ := scrape("wrong"); code != http.StatusForbidden {
		t.Errorf("scrape with a wrong token: %d, want 403", code)
	}
	value := func(body, pattern string) float64 {
		t.Helper()
		m := regexp.MustCompile(`(?m)^` + pattern + ` (\S+)$`).FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no %s in the metrics:\n%s", pattern, body)
		}
		v, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	cpu := func(body, state string) float64 {
		return value(body, `ray_resources\{InstanceId="`+c.Head.Info.NodeID+`",Name="CPU",SessionName="session_[^"]+",State="`+state+`"\}`)
	}

	_, idle := scrape(c.Token)
	if used, avail := cpu(idle, "USED"), cpu(idle, "AVAILABLE"); used != 0 || avail != 2 {
		t.Errorf("idle head: CPU used %v available %v, want 0 and 2", used, avail)
	}
	connect(t, c)
	h, err := counterClass.Options(goray.NumCPUs(1)).Remote(goray.Val(0))
	if err != nil {
		t.Fatal(err)
	}
	getT(t, incr.Remote(h, goray.Val(1))) // the actor is placed and holds its CPU
	ref, err := goray.Put(make([]byte, 4<<20))
	if err != nil {
		t.Fatal(err)
	}
	_, busy := scrape(c.Token)
	if used, avail := cpu(busy, "USED"), cpu(busy, "AVAILABLE"); used != 1 || avail != 1 {
		t.Errorf("with a 1-CPU actor: CPU used %v available %v, want 1 and 1", used, avail)
	}
	if n := value(busy, `ray_object_store_num_local_objects\{[^}]*\}`); n < 1 {
		t.Errorf("ray_object_store_num_local_objects %v after a put, want ≥ 1", n)
	}
	if b := value(busy, `ray_object_store_memory\{[^}]*Location="MMAP_SHM"[^}]*\}`); b < 4<<20 {
		t.Errorf("ray_object_store_memory MMAP_SHM %v after a 4 MiB put, want ≥ 4 MiB", b)
	}
	if g := value(busy, `go_goroutines`); g < 1 {
		t.Errorf("go_goroutines %v", g)
	}
	_ = ref
}
