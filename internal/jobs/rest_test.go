package jobs_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/jobs"
	"github.com/goray/goray/internal/node"
	"github.com/goray/goray/internal/version"
	"github.com/goray/goray/proto/rpcpb"
)

const token = "jobs-test-token"

type head struct {
	t    *testing.T
	n    *node.Node
	base string
}

// startHead starts a head node in this process (GCS, dashboard, raylet,
// agent) with the job manager adjusted by adjust.
func startHead(t *testing.T, adjust func(*jobs.Config)) *head {
	t.Helper()
	n, err := node.Start(node.Config{
		Head: true, Private: true, NodeIP: "127.0.0.1", NumCPUs: 2, NumGPUs: 0, Memory: 1 << 30, ObjectStoreMemory: 1 << 28,
		TempRoot: t.TempDir(), Token: token, Jobs: adjust,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	return &head{t: t, n: n, base: "http://" + n.Info.DashboardAddress}
}

func (h *head) req(method, path string, body []byte, hdr ...string) (int, string) {
	h.t.Helper()
	url := path
	if !strings.HasPrefix(path, "http") {
		url = h.base + path
	}
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (h *head) submit(body string) string {
	h.t.Helper()
	code, out := h.req("POST", "/api/jobs/", []byte(body))
	if code != 200 {
		h.t.Fatalf("submit %s: %d %s", body, code, out)
	}
	var r map[string]string
	if err := json.Unmarshal([]byte(out), &r); err != nil || r["submission_id"] == "" || r["job_id"] != r["submission_id"] {
		h.t.Fatalf("submit answer %s", out)
	}
	return r["submission_id"]
}

func (h *head) details(id string) map[string]any {
	h.t.Helper()
	code, out := h.req("GET", "/api/jobs/"+id, nil)
	if code != 200 {
		h.t.Fatalf("get %s: %d %s", id, code, out)
	}
	var d map[string]any
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		h.t.Fatal(err)
	}
	return d
}

func (h *head) waitStatus(id string, want string, timeout time.Duration) map[string]any {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		d := h.details(id)
		if d["status"] == want {
			return d
		}
		if st, _ := d["status"].(string); jobs.Status(st).Terminal() || time.Now().After(deadline) {
			h.t.Fatalf("job %s: status %v, want %s: %v", id, d["status"], want, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var detailKeys = []string{"type", "job_id", "submission_id", "driver_info", "status", "entrypoint", "message", "error_type",
	"start_time", "end_time", "metadata", "runtime_env", "driver_agent_http_address", "driver_node_id", "driver_exit_code"}

func TestSubmitSucceeds(t *testing.T) {
	h := startHead(t, nil)
	before := time.Now().UnixMilli()
	id := h.submit(`{"entrypoint": "echo hello; echo to-stderr >&2", "metadata": {"owner": "me"}}`)
	if !regexp.MustCompile(`^raysubmit_[A-HJ-NP-Za-km-z1-9]{16}$`).MatchString(id) {
		t.Errorf("generated id %q", id)
	}
	d := h.waitStatus(id, "SUCCEEDED", 30*time.Second)
	for _, k := range detailKeys {
		if _, ok := d[k]; !ok {
			t.Errorf("JobDetails lacks key %q: %v", k, d)
		}
	}
	if d["type"] != "SUBMISSION" || d["submission_id"] != id || d["entrypoint"] != "echo hello; echo to-stderr >&2" ||
		d["message"] != "Job finished successfully." || d["driver_exit_code"] != 0.0 || d["error_type"] != nil ||
		d["driver_node_id"] != h.n.Info.NodeID || d["driver_agent_http_address"] != "http://"+h.n.Info.AgentAddress {
		t.Errorf("details %v", d)
	}
	if m, _ := d["metadata"].(map[string]any); m["owner"] != "me" {
		t.Errorf("metadata %v", d["metadata"])
	}
	st, et := d["start_time"].(float64), d["end_time"].(float64)
	if int64(st) < before || et < st || int64(et) > time.Now().UnixMilli() {
		t.Errorf("start_time %v end_time %v (ms), submitted at %d", st, et, before)
	}
	code, out := h.req("GET", "/api/jobs/"+id+"/logs", nil)
	var logs map[string]string
	json.Unmarshal([]byte(out), &logs)
	if code != 200 || logs["logs"] != "hello\nto-stderr\n" {
		t.Errorf("logs: %d %q", code, out)
	}
	if b, err := os.ReadFile(filepath.Join(h.n.Info.SessionDir, "logs", "job-driver-"+id+".log")); err != nil || string(b) != "hello\nto-stderr\n" {
		t.Errorf("driver log file: %q %v", b, err)
	}
	code, out = h.req("GET", "/api/jobs/", nil)
	var list []map[string]any
	if err := json.Unmarshal([]byte(out), &list); code != 200 || err != nil || len(list) != 1 || list[0]["submission_id"] != id {
		t.Errorf("list: %d %s", code, out)
	}
	// Stopping a finished job changes nothing.
	if code, out := h.req("POST", "/api/jobs/"+id+"/stop", nil); code != 200 || strings.TrimSpace(out) != `{"stopped":false}` {
		t.Errorf("stop finished: %d %s", code, out)
	}
	if d := h.details(id); d["status"] != "SUCCEEDED" {
		t.Errorf("status after stop: %v", d["status"])
	}
	if code, out := h.req("DELETE", "/api/jobs/"+id, nil); code != 200 || strings.TrimSpace(out) != `{"deleted":true}` {
		t.Errorf("delete: %d %s", code, out)
	}
	if code, _ := h.req("GET", "/api/jobs/"+id, nil); code != 404 {
		t.Errorf("get deleted: %d", code)
	}
}

func TestSubmitFailsWithLastLines(t *testing.T) {
	h := startHead(t, nil)
	id := h.submit(`{"entrypoint": "for i in $(seq 1 30); do echo line$i; done; exit 3", "submission_id": "my-failing-job"}`)
	if id != "my-failing-job" {
		t.Fatalf("id %s", id)
	}
	d := h.waitStatus(id, "FAILED", 30*time.Second)
	msg, _ := d["message"].(string)
	if !strings.Contains(msg, "exit code 3") || !strings.Contains(msg, "line30") || !strings.Contains(msg, "line11") || strings.Contains(msg, "line10\n") {
		t.Errorf("message %q", msg)
	}
	if d["driver_exit_code"] != 3.0 || d["error_type"] == nil || d["end_time"] == nil {
		t.Errorf("details %v", d)
	}
}

func TestEnvAndAddress(t *testing.T) {
	h := startHead(t, nil)
	id := h.submit(`{"entrypoint": "echo $FOO $GORAY_ADDRESS $RAY_ADDRESS; echo $GORAY_JOB_CONFIG_JSON", "runtime_env": {"env_vars": {"FOO": "bar baz"}}}`)
	h.waitStatus(id, "SUCCEEDED", 30*time.Second)
	_, out := h.req("GET", "/api/jobs/"+id+"/logs", nil)
	var logs map[string]string
	json.Unmarshal([]byte(out), &logs)
	addr := h.n.Info.GCSAddress
	lines := strings.Split(logs["logs"], "\n")
	if lines[0] != "bar baz "+addr+" "+addr {
		t.Errorf("env line %q", lines[0])
	}
	var cfg struct {
		SubmissionID string            `json:"submission_id"`
		Metadata     map[string]string `json:"metadata"`
	}
	if err := json.Unmarshal([]byte(lines[1]), &cfg); err != nil || cfg.SubmissionID != id || cfg.Metadata["job_submission_id"] != id {
		t.Errorf("job config %q: %v", lines[1], err)
	}
}

// groupGone reports whether no live process is left in a process group.
func groupGone(pgid int) bool {
	err := syscall.Kill(-pgid, 0)
	if err == syscall.ESRCH {
		return true
	}
	// Zombies still count for kill(2); look at /proc.
	des, _ := os.ReadDir("/proc")
	for _, de := range des {
		b, err := os.ReadFile("/proc/" + de.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 2 && f[0] != "Z" && f[2] == fmt.Sprint(pgid) {
			return false
		}
	}
	return true
}

func TestStopRunningJob(t *testing.T) {
	h := startHead(t, nil)
	// A child that ignores SIGTERM gets SIGKILL after 3s; the job reads
	// STOPPED only once the whole group is gone.
	id := h.submit(`{"entrypoint": "(trap '' TERM; sleep 300) & echo started; sleep 300"}`)
	d := h.waitStatus(id, "RUNNING", 30*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, out := h.req("GET", "/api/jobs/"+id+"/logs", nil)
		if strings.Contains(out, "started") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no output: %s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	info, _ := d["driver_info"].(map[string]any)
	_ = info
	code, out := h.req("POST", "/api/jobs/"+id+"/stop", nil)
	if code != 200 || strings.TrimSpace(out) != `{"stopped":true}` {
		t.Fatalf("stop: %d %s", code, out)
	}
	start := time.Now()
	var pgid int
	for {
		d = h.details(id)
		if d["status"] == "STOPPED" {
			break
		}
		if d["status"] != "RUNNING" || time.Since(start) > 20*time.Second {
			t.Fatalf("status %v", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if time.Since(start) < 2*time.Second {
		t.Errorf("STOPPED after %s, before the SIGKILL of the TERM-ignoring child", time.Since(start))
	}
	// The record names the pid of the group leader.
	var rec struct {
		DriverPID int `json:"driver_pid"`
	}
	conn, _ := grpc.NewClient(h.n.Info.GCSAddress, append(auth.DialOptions(token), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	defer conn.Close()
	kv, err := rpcpb.NewGcsServiceClient(conn).KVGet(context.Background(), &rpcpb.KVRequest{Namespace: jobs.KVNamespace, Key: jobs.KVKeyPrefix + id})
	if err != nil || json.Unmarshal(kv.Value, &rec) != nil || rec.DriverPID == 0 {
		t.Fatalf("record: %v %s", err, kv.GetValue())
	}
	pgid = rec.DriverPID
	if !groupGone(pgid) {
		t.Errorf("processes of group %d remain after STOPPED", pgid)
	}
	if d["message"] != "Job was intentionally stopped." || d["end_time"] == nil {
		t.Errorf("details %v", d)
	}
	if code, out := h.req("POST", "/api/jobs/"+id+"/stop", nil); code != 200 || strings.TrimSpace(out) != `{"stopped":false}` {
		t.Errorf("second stop: %d %s", code, out)
	}
}

func TestPendingStopAndStartTimeout(t *testing.T) {
	h := startHead(t, func(c *jobs.Config) { c.StartTimeout = 1500 * time.Millisecond })
	stopMe := h.submit(`{"entrypoint": "echo never", "entrypoint_resources": {"unobtainium": 1}}`)
	timeout := h.submit(`{"entrypoint": "echo never", "entrypoint_resources": {"unobtainium": 2}, "entrypoint_num_cpus": 1}`)
	d := h.details(stopMe)
	if d["status"] != "PENDING" || !strings.Contains(d["message"].(string), "waiting for resources") || d["end_time"] != nil || d["driver_exit_code"] != nil {
		t.Errorf("pending details %v", d)
	}
	if code, out := h.req("DELETE", "/api/jobs/"+stopMe, nil); code != 400 || !strings.Contains(out, "non-terminal") {
		t.Errorf("delete of a pending job: %d %s", code, out)
	}
	code, out := h.req("POST", "/api/jobs/"+stopMe+"/stop", nil)
	if code != 200 || strings.TrimSpace(out) != `{"stopped":true}` {
		t.Fatalf("stop pending: %d %s", code, out)
	}
	if d := h.details(stopMe); d["status"] != "STOPPED" {
		t.Errorf("after stop: %v", d)
	}
	d = h.waitStatus(timeout, "FAILED", 20*time.Second)
	if msg := d["message"].(string); !strings.Contains(msg, `"unobtainium":2`) || !strings.Contains(msg, `"CPU":1`) {
		t.Errorf("timeout message %q", msg)
	}
	if d := h.details(stopMe); d["status"] != "STOPPED" {
		t.Errorf("stopped job changed: %v", d)
	}
}

func TestBadInput(t *testing.T) {
	h := startHead(t, nil)
	for _, tc := range []struct{ body, want string }{
		{`{"entrypoint": "echo", `, "Invalid JSON"},
		{`[1, 2]`, "Invalid JSON"},
		{`"echo"`, "Invalid JSON"},
		{`null`, "must be a JSON object"},
		{`{}`, "'entrypoint' is required"},
		{`{"entrypoint": ""}`, "'entrypoint' must not be empty"},
		{`{"entrypoint": 42}`, "'entrypoint' must be a string"},
		{`{"entrypoint": "echo", "bogus": 1}`, "Unknown field 'bogus'"},
		{`{"entrypoint": "echo", "metadata": {"a": 1}}`, "'metadata'"},
		{`{"entrypoint": "echo", "metadata": "x"}`, "'metadata'"},
		{`{"entrypoint": "echo", "runtime_env": []}`, "'runtime_env'"},
		{`{"entrypoint": "echo", "runtime_env": {"pip": ["x"]}}`, "'runtime_env.pip'"},
		{`{"entrypoint": "echo", "runtime_env": {"working_dir": "/tmp/x"}}`, "'runtime_env.working_dir'"},
		{`{"entrypoint": "echo", "runtime_env": {"working_dir": "gcs://_ray_pkg_missing.zip"}}`, "does not exist"},
		{`{"entrypoint": "echo", "runtime_env": {"env_vars": {"A": 1}}}`, "'runtime_env.env_vars'"},
		{`{"entrypoint": "echo", "entrypoint_num_cpus": "2"}`, "'entrypoint_num_cpus' must be a number"},
		{`{"entrypoint": "echo", "entrypoint_num_gpus": -1}`, "'entrypoint_num_gpus' must not be negative"},
		{`{"entrypoint": "echo", "entrypoint_memory": 1.5}`, "'entrypoint_memory' must be an integer"},
		{`{"entrypoint": "echo", "entrypoint_resources": {"a": "b"}}`, "'entrypoint_resources'"},
		{`{"entrypoint": "echo", "entrypoint_label_selector": {"a": 1}}`, "'entrypoint_label_selector'"},
		{`{"entrypoint": "echo", "submission_id": 7}`, "'submission_id' must be a string"},
		{`{"entrypoint": "echo", "submission_id": "../etc"}`, "'submission_id'"},
		{`{"entrypoint": "echo", "submission_id": "a", "job_id": "b"}`, "'job_id'"},
	} {
		code, out := h.req("POST", "/api/jobs/", []byte(tc.body))
		if code != 400 || !strings.Contains(out, tc.want) {
			t.Errorf("POST %s: %d %q, want 400 with %q", tc.body, code, out, tc.want)
		}
	}
	if code, out := h.req("GET", "/api/jobs/", nil); code != 200 || strings.TrimSpace(out) != "[]" {
		t.Errorf("bad submissions left jobs behind: %d %s", code, out)
	}
	// Null-valued keys are ignored, whatever the Content-Type; job_id is the old name of submission_id.
	code, out := h.req("POST", "/api/jobs/", []byte(`{"entrypoint": "true", "metadata": null, "a_future_field": null, "job_id": "old-style"}`), "Content-Type", "text/plain")
	if code != 200 || !strings.Contains(out, `"submission_id":"old-style"`) {
		t.Errorf("nulls: %d %s", code, out)
	}
	for _, p := range []string{"GET /api/jobs/nope", "GET /api/jobs/nope/logs", "POST /api/jobs/nope/stop", "DELETE /api/jobs/nope", "GET /api/jobs/nope/logs/tail"} {
		method, path, _ := strings.Cut(p, " ")
		if code, out := h.req(method, path, nil); code != 404 || out != "Job nope does not exist" {
			t.Errorf("%s: %d %q", p, code, out)
		}
	}
	h.waitStatus("old-style", "SUCCEEDED", 30*time.Second)
}

func TestDuplicateSubmissionConcurrent(t *testing.T) {
	h := startHead(t, nil)
	const n = 12
	var wg sync.WaitGroup
	codes := make([]int, n)
	outs := make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], outs[i] = h.req("POST", "/api/jobs/", []byte(fmt.Sprintf(`{"entrypoint": "echo %d", "submission_id": "dup"}`, i)))
		}()
	}
	wg.Wait()
	winner := -1
	for i := range n {
		switch {
		case codes[i] == 200 && winner < 0:
			winner = i
		case codes[i] == 400 && outs[i] == "Job with submission_id dup already exists. Please use a different submission_id.":
		default:
			t.Errorf("submission %d: %d %q", i, codes[i], outs[i])
		}
	}
	if winner < 0 {
		t.Fatal("no submission won")
	}
	d := h.waitStatus("dup", "SUCCEEDED", 30*time.Second)
	if d["entrypoint"] != fmt.Sprintf("echo %d", winner) {
		t.Errorf("entrypoint %v, the winner was %d", d["entrypoint"], winner)
	}
	// A later duplicate changes nothing either.
	if code, _ := h.req("POST", "/api/jobs/", []byte(`{"entrypoint": "exit 1", "submission_id": "dup"}`)); code != 400 {
		t.Errorf("late duplicate: %d", code)
	}
	if d := h.details("dup"); d["status"] != "SUCCEEDED" || d["entrypoint"] != fmt.Sprintf("echo %d", winner) {
		t.Errorf("after duplicate: %v", d)
	}
}

func TestAuthAndHealth(t *testing.T) {
	h := startHead(t, nil)
	for _, p := range []string{"/api/jobs/", "/api/version", "/api/packages/gcs/_ray_pkg_x.zip"} {
		if code, out := h.req("GET", p, nil, "Authorization", ""); code != 401 || !strings.Contains(out, "Missing authentication token") {
			t.Errorf("%s without token: %d %s", p, code, out)
		}
		if code, _ := h.req("GET", p, nil, "Authorization", "Bearer wrong"); code != 403 {
			t.Errorf("%s wrong token: %d", p, code)
		}
	}
	if code, _ := h.req("POST", "/api/jobs/", []byte(`{"entrypoint":"true"}`), "Authorization", ""); code != 401 {
		t.Errorf("submit without token: %d", code)
	}
	if code, _ := h.req("GET", "/api/jobs/", nil, "Authorization", "", "X-Ray-Authorization", "Bearer "+token); code != 200 {
		t.Errorf("X-Ray-Authorization: %d", code)
	}
	agent := "http://" + h.n.Info.AgentAddress
	for _, p := range []string{h.base + "/api/gcs_healthz", agent + "/api/healthz", agent + "/api/local_raylet_healthz"} {
		if code, out := h.req("GET", p, nil, "Authorization", ""); code != 200 || !strings.Contains(out, "success") {
			t.Errorf("%s: %d %s", p, code, out)
		}
	}
	if code, _ := h.req("POST", agent+"/api/job_agent/jobs/", []byte(`{}`), "Authorization", ""); code != 401 {
		t.Errorf("agent job API without token: %d", code)
	}
	code, out := h.req("GET", "/api/version", nil)
	var v map[string]string
	json.Unmarshal([]byte(out), &v)
	if code != 200 || v["version"] != jobs.APIVersion || v["ray_version"] != jobs.RayVersion || v["goray_version"] != version.Version || v["session_name"] != filepath.Base(h.n.Info.SessionDir) {
		t.Errorf("version: %d %s", code, out)
	}
}

func zipBytes(t *testing.T, files map[string]string, modes map[string]os.FileMode) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, data := range files {
		hdr := &zip.FileHeader{Name: name, Method: zip.Deflate}
		mode := os.FileMode(0o644)
		if m, ok := modes[name]; ok {
			mode = m
		}
		hdr.SetMode(mode)
		w, err := zw.CreateHeader(hdr)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(data))
	}
	zw.Close()
	return buf.Bytes()
}

func TestPackagesAndWorkingDir(t *testing.T) {
	h := startHead(t, func(c *jobs.Config) { c.MaxPackageSize = 64 << 10 })
	const pkg = "/api/packages/gcs/_ray_pkg_0123abcd.zip"
	if code, out := h.req("GET", pkg, nil); code != 404 || out != "Package gcs://_ray_pkg_0123abcd.zip does not exist" {
		t.Errorf("GET missing package: %d %q", code, out)
	}
	z := zipBytes(t, map[string]string{"data.txt": "payload\n", "bin/run.sh": "#!/bin/sh\necho ran in $(basename $(pwd))\n"}, map[string]os.FileMode{"bin/run.sh": 0o755})
	if code, out := h.req("PUT", pkg, z); code != 200 || out != "" {
		t.Fatalf("PUT package: %d %q", code, out)
	}
	if code, out := h.req("GET", pkg, nil); code != 200 || out != "" {
		t.Errorf("GET package: %d %q", code, out)
	}
	if code, out := h.req("PUT", "/api/packages/gcs/_ray_pkg_junk.zip", []byte("not a zip")); code != 400 || !strings.Contains(out, "not a zip") {
		t.Errorf("PUT junk: %d %q", code, out)
	}
	if code, _ := h.req("GET", "/api/packages/gcs/_ray_pkg_junk.zip", nil); code != 404 {
		t.Errorf("junk package stored: %d", code)
	}
	if code, out := h.req("PUT", "/api/packages/s3/x.zip", z); code != 400 || !strings.Contains(out, "protocol") {
		t.Errorf("PUT s3: %d %q", code, out)
	}
	if code, _ := h.req("PUT", "/api/packages/gcs/noext", z); code != 400 {
		t.Errorf("PUT bad name: %d", code)
	}
	big := make([]byte, 100<<10)
	for i, r := 0, rand.New(rand.NewPCG(1, 2)); i < len(big); i++ {
		big[i] = byte(r.Uint32()) // incompressible
	}
	bz := zipBytes(t, map[string]string{"huge.bin": string(big), "small.txt": "x"}, map[string]os.FileMode{"huge.bin": 0o600})
	code, out := h.req("PUT", "/api/packages/gcs/_ray_pkg_big.zip", bz)
	if code != 413 || !strings.Contains(out, "64.0 KiB") || !strings.Contains(out, fmt.Sprint(len(bz))) || !strings.Contains(out, "huge.bin") {
		t.Errorf("PUT oversized: %d %q", code, out)
	}
	if code, _ := h.req("GET", "/api/packages/gcs/_ray_pkg_big.zip", nil); code != 404 {
		t.Errorf("oversized package stored: %d", code)
	}
	id := h.submit(`{"entrypoint": "cat data.txt && ./bin/run.sh", "runtime_env": {"working_dir": "gcs://_ray_pkg_0123abcd.zip"}}`)
	d := h.waitStatus(id, "SUCCEEDED", 30*time.Second)
	if re, _ := d["runtime_env"].(map[string]any); re["working_dir"] != "gcs://_ray_pkg_0123abcd.zip" {
		t.Errorf("runtime_env %v", d["runtime_env"])
	}
	_, out = h.req("GET", "/api/jobs/"+id+"/logs", nil)
	if !strings.Contains(out, `payload\nran in _ray_pkg_0123abcd\n`) {
		t.Errorf("logs %s", out)
	}
	if _, err := os.Stat(filepath.Join(h.n.Info.SessionDir, "runtime_resources", "working_dir_files", "_ray_pkg_0123abcd", "bin", "run.sh")); err != nil {
		t.Errorf("unpacked package: %v", err)
	}
}

func TestLogTail(t *testing.T) {
	h := startHead(t, nil)
	// Output arrives over a while, with a multi-byte character and no final newline.
	id := h.submit(`{"entrypoint": "for i in 1 2 3 4 5; do echo tail-$i; sleep 0.2; done; printf 'caf\\303\\251 end'"}`)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+h.n.Info.DashboardAddress+"/api/jobs/"+id+"/logs/tail",
		&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + token}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	var got strings.Builder
	frames := 0
	for {
		typ, b, err := c.Read(ctx)
		if websocket.CloseStatus(err) == websocket.StatusNormalClosure {
			break
		}
		if err != nil {
			t.Fatalf("read: %v (got %q)", err, got.String())
		}
		if typ != websocket.MessageText {
			t.Errorf("frame type %v", typ)
		}
		frames++
		got.Write(b)
	}
	want := "tail-1\ntail-2\ntail-3\ntail-4\ntail-5\ncafé end"
	if got.String() != want {
		t.Errorf("tail %q, want %q", got.String(), want)
	}
	if frames < 2 {
		t.Errorf("tail came in %d frame(s), not as it was written", frames)
	}
	if d := h.details(id); d["status"] != "SUCCEEDED" && d["status"] != "RUNNING" {
		t.Errorf("status %v", d["status"])
	}
	// Without a token the upgrade is refused.
	if _, resp, err := websocket.Dial(ctx, "ws://"+h.n.Info.DashboardAddress+"/api/jobs/"+id+"/logs/tail", nil); err == nil || resp == nil || resp.StatusCode != 401 {
		t.Errorf("tail without token: %v", err)
	}
}

func TestDriverJobs(t *testing.T) {
	h := startHead(t, nil)
	conn, err := grpc.NewClient(h.n.Info.GCSAddress, append(auth.DialOptions(token), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	gcs := rpcpb.NewGcsServiceClient(conn)
	j, err := gcs.AddJob(context.Background(), &rpcpb.JobInfo{Version: version.Version, DriverIp: "127.0.0.1", DriverPid: 4242, Entrypoint: "./mydriver"})
	if err != nil {
		t.Fatal(err)
	}
	sid := h.submit(`{"entrypoint": "true"}`)
	h.waitStatus(sid, "SUCCEEDED", 30*time.Second)
	_, out := h.req("GET", "/api/jobs/", nil)
	var list []map[string]any
	json.Unmarshal([]byte(out), &list)
	if len(list) != 2 || list[0]["type"] != "SUBMISSION" || list[1]["type"] != "DRIVER" || list[1]["job_id"] != j.JobId || list[1]["submission_id"] != nil {
		t.Fatalf("list %s", out)
	}
	d := h.details(j.JobId)
	info, _ := d["driver_info"].(map[string]any)
	if d["status"] != "RUNNING" || d["entrypoint"] != "./mydriver" || info["pid"] != "4242" || info["node_ip_address"] != "127.0.0.1" {
		t.Errorf("driver details %v", d)
	}
	for _, k := range detailKeys {
		if _, ok := d[k]; !ok {
			t.Errorf("driver JobDetails lacks %q", k)
		}
	}
	for _, tc := range []struct{ method, path, want string }{
		{"POST", "/stop", "Can only stop submission type jobs"},
		{"DELETE", "", "Can only delete submission type jobs"},
		{"GET", "/logs", "Can only get logs of submission type jobs"},
	} {
		if code, out := h.req(tc.method, "/api/jobs/"+j.JobId+tc.path, nil); code != 400 || out != tc.want {
			t.Errorf("%s %s: %d %q", tc.method, tc.path, code, out)
		}
	}
	gcs.MarkJobFinished(context.Background(), &rpcpb.JobID{JobId: j.JobId})
	if d := h.details(j.JobId); d["status"] != "SUCCEEDED" || d["end_time"] == nil {
		t.Errorf("finished driver %v", d)
	}
}

func TestEntrypointResourcesAreHeld(t *testing.T) {
	h := startHead(t, nil)
	gate := filepath.Join(t.TempDir(), "go")
	wait := fmt.Sprintf(`{"entrypoint": "while [ ! -f %s ]; do sleep 0.05; done", "entrypoint_num_cpus": 2}`, gate)
	a := h.submit(wait)
	h.waitStatus(a, "RUNNING", 30*time.Second)
	if avail, _ := h.n.Raylet.Snapshot(); avail["CPU"] != 0 {
		t.Fatalf("a running entrypoint with 2 CPUs leaves %v CPUs available, want 0", avail["CPU"])
	}
	// A second job needing the same CPUs waits for them.
	b := h.submit(wait)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, queued := h.n.Raylet.Snapshot(); len(queued) == 1 && queued[0] == "CPU=2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the second entrypoint never queued for its CPUs")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := h.details(b)["status"]; st != "PENDING" {
		t.Fatalf("second job is %v while the first holds the CPUs, want PENDING", st)
	}
	// Its reservation is pinned to this node: no new node would help, so
	// the raylet's next reports do not offer it to the autoscaler as demand.
	ctx := context.Background()
	v0, err := h.n.GCS.GetClusterView(ctx, &rpcpb.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	for v := v0; ; {
		if v.Version >= v0.Version+2 { // reports made after the reservation queued
			for _, n := range v.Nodes {
				if len(n.Demands) > 0 {
					t.Errorf("node %s reports demands %v for a reservation pinned to it", n.Node.NodeId, n.Demands)
				}
			}
			break
		}
		time.Sleep(20 * time.Millisecond)
		if v, err = h.n.GCS.GetClusterView(ctx, &rpcpb.Empty{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h.waitStatus(a, "SUCCEEDED", 30*time.Second)
	h.waitStatus(b, "SUCCEEDED", 30*time.Second)
	deadline = time.Now().Add(10 * time.Second)
	for avail, _ := h.n.Raylet.Snapshot(); avail["CPU"] != 2; avail, _ = h.n.Raylet.Snapshot() {
		if time.Now().After(deadline) {
			t.Fatalf("entrypoint CPUs not returned: %v available", avail["CPU"])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
