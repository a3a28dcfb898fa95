package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/goray/goray/testcluster"
)

func TestShellQuoteEntrypoint(t *testing.T) {
	for _, tc := range []struct {
		words []string
		want  string
	}{
		{[]string{"echo hi > out.txt"}, "echo hi > out.txt"},
		{[]string{"echo", "hello 'world'"}, `echo 'hello '"'"'world'"'"''`},
		{[]string{"ls", "-l", "a/b.txt", ""}, "ls -l a/b.txt ''"},
		{[]string{"echo", "$HOME", "a;b"}, "echo '$HOME' 'a;b'"},
	} {
		if got := entrypointOf(tc.words); got != tc.want {
			t.Errorf("entrypointOf(%q) = %q, want %q", tc.words, got, tc.want)
		}
	}
}

// jobCLI runs `goray job ...` against a test cluster; stdout and stderr
// come back separately.
func jobCLI(c *testcluster.Cluster, env []string, args ...string) (string, string, error) {
	cmd := exec.Command(c.Bin, append([]string{"job"}, args...)...)
	cmd.Env = append(c.Env(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func mustJob(t *testing.T, c *testcluster.Cluster, args ...string) string {
	t.Helper()
	out, errOut, err := jobCLI(c, nil, args...)
	if err != nil {
		t.Fatalf("goray job %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

func jobStatus(t *testing.T, c *testcluster.Cluster, id string) string {
	t.Helper()
	out := mustJob(t, c, "status", id)
	m := regexp.MustCompile(`Status for job '[^']+': (\w+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("status output %q", out)
	}
	return m[1]
}

// processesOfJob lists the live processes whose environment names the
// submission (the supervisor sets GORAY_SUBMISSION_ID for the entrypoint).
func processesOfJob(id string) []string {
	var pids []string
	des, _ := os.ReadDir("/proc")
	for _, de := range des {
		env, err := os.ReadFile("/proc/" + de.Name() + "/environ")
		if err != nil || !bytes.Contains(env, []byte("\x00GORAY_SUBMISSION_ID="+id+"\x00")) {
			continue
		}
		if st, err := os.ReadFile("/proc/" + de.Name() + "/stat"); err == nil {
			s := string(st)
			if f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]); len(f) > 0 && f[0] == "Z" {
				continue
			}
		}
		pids = append(pids, de.Name())
	}
	return pids
}

func TestJobCLIOnCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	c := testcluster.Start(t, testcluster.Options{Workers: 2})
	dir := t.TempDir()
	// A working_dir: a goray program, data for it, and what must stay out.
	wd := filepath.Join(dir, "wd")
	os.MkdirAll(filepath.Join(wd, "data", "ignored"), 0o755)
	os.MkdirAll(filepath.Join(wd, ".git"), 0o755)
	for name, data := range map[string]string{
		"data/a.txt":            strings.Repeat("alpha beta ", 300) + "gamma",
		"data/b.txt":            strings.Repeat("beta ", 200),
		"data/ignored/skip.txt": strings.Repeat("ignoredword ", 5000),
		"data/big.log":          strings.Repeat("logword ", 5000),
		".git/HEAD":             strings.Repeat("gitword ", 5000),
		".gitignore":            "ignored/\n*.log\n",
		"marker.txt":            "in-package",
	} {
		if err := os.WriteFile(filepath.Join(wd, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := testcluster.Build(filepath.Join(wd, "wordcount"), "github.com/goray/goray/examples/wordcount"); err != nil {
		t.Fatal(err)
	}
	if err := testcluster.Build(filepath.Join(wd, "jobprobe"), "github.com/goray/goray/cmd/goray/testdata/jobprobe"); err != nil {
		t.Fatal(err)
	}

	t.Run("wordcount", func(t *testing.T) {
		start := time.Now()
		out, errOut, err := jobCLI(c, nil, "submit", "--working-dir", wd, "--submission-id", "wordcount-1", "--", "./wordcount --batch-bytes=512 data")
		t.Logf("submit took %s; stderr:\n%s", time.Since(start), errOut)
		if err != nil {
			t.Fatalf("submit: %v\n%s", err, out)
		}
		// beta: 300 in a.txt + 200 in b.txt.
		if !strings.Contains(out, "500 beta\n300 alpha\n1 gamma\n") {
			t.Errorf("wordcount output (the driver's output verbatim):\n%s", out)
		}
		if strings.Contains(out, "ignoredword") || strings.Contains(out, "logword") || strings.Contains(out, "gitword") {
			t.Errorf(".gitignore'd or .git files were packaged:\n%s", out)
		}
		if !strings.HasSuffix(out, "Job 'wordcount-1' succeeded\n") {
			t.Errorf("no final status:\n%s", out)
		}
		if st := jobStatus(t, c, "wordcount-1"); st != "SUCCEEDED" {
			t.Errorf("status %s", st)
		}
		// A second submission of the same directory reuses the package.
		_, errOut, err = jobCLI(c, nil, "submit", "--working-dir", wd, "--no-wait", "--", "true")
		if err != nil || !strings.Contains(errOut, "already exists, skipping upload") {
			t.Errorf("resubmit: %v\n%s", err, errOut)
		}
	})

	t.Run("workers in working_dir", func(t *testing.T) {
		out := mustJob(t, c, "submit", "--working-dir", wd, "--runtime-env-json", `{"env_vars": {"PROBE_VAR": "from-env"}}`, "--", "./jobprobe")
		nodes := map[string]bool{}
		for _, l := range strings.Split(out, "\n") {
			if !strings.HasPrefix(l, "node=") {
				continue
			}
			f := strings.Fields(l)
			nodes[f[0]] = true
			if !strings.HasPrefix(f[1], "dir=_ray_pkg_") || f[2] != "marker=in-package" || f[3] != "env=from-env" {
				t.Errorf("worker %q", l)
			}
		}
		if len(nodes) < 2 {
			t.Errorf("tasks ran on %d node(s), want them spread:\n%s", len(nodes), out)
		}
	})

	t.Run("failure", func(t *testing.T) {
		out, _, err := jobCLI(c, nil, "submit", "--submission-id", "fails", "--", "echo first; echo last words >&2; exit 5")
		if err == nil {
			t.Fatalf("submit of a failing job exited 0:\n%s", out)
		}
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Errorf("exit: %v", err)
		}
		if !strings.HasPrefix(out, "first\nlast words\n") || !strings.Contains(out, "Job 'fails' failed") {
			t.Errorf("output:\n%s", out)
		}
		st := mustJob(t, c, "status", "fails")
		if !strings.Contains(st, "FAILED") || !strings.Contains(st, "exit code 5") || !strings.Contains(st, "last words") {
			t.Errorf("status:\n%s", st)
		}
		if logs := mustJob(t, c, "logs", "fails"); logs != "first\nlast words\n" {
			t.Errorf("logs %q", logs)
		}
	})

	t.Run("quoting", func(t *testing.T) {
		out := mustJob(t, c, "submit", "--", "echo", "hello 'world'")
		if !strings.HasPrefix(out, "hello 'world'\n") {
			t.Errorf("output %q", out)
		}
		mustJob(t, c, "submit", "--submission-id", "redirect", "--", "echo hi > out.txt")
		if b, err := os.ReadFile(filepath.Join(c.Head.Info.SessionDir, "out.txt")); err != nil || string(b) != "hi\n" {
			t.Errorf("out.txt: %q %v", b, err)
		}
	})

	t.Run("stop running", func(t *testing.T) {
		out := mustJob(t, c, "submit", "--no-wait", "--submission-id", "sleeper", "--", "sleep 300 & sleep 300; wait")
		if strings.TrimSpace(out) != "sleeper" {
			t.Errorf("--no-wait output %q", out)
		}
		testcluster.Eventually(t, 20*time.Second, "job RUNNING with its processes", func() bool {
			return jobStatus(t, c, "sleeper") == "RUNNING" && len(processesOfJob("sleeper")) >= 3
		})
		out = mustJob(t, c, "stop", "sleeper")
		if !strings.Contains(out, "STOPPED") {
			t.Errorf("stop output %q", out)
		}
		if pids := processesOfJob("sleeper"); len(pids) > 0 {
			t.Errorf("processes left after STOPPED: %v", pids)
		}
		if out := mustJob(t, c, "stop", "sleeper"); !strings.Contains(out, "already ended") {
			t.Errorf("second stop %q", out)
		}
	})

	t.Run("stop pending", func(t *testing.T) {
		mustJob(t, c, "submit", "--no-wait", "--submission-id", "waiter", "--entrypoint-resources", `{"nowhere": 1}`, "--", "echo never")
		if st := jobStatus(t, c, "waiter"); st != "PENDING" {
			t.Fatalf("status %s", st)
		}
		mustJob(t, c, "stop", "waiter")
		if st := jobStatus(t, c, "waiter"); st != "STOPPED" {
			t.Errorf("status %s", st)
		}
	})

	t.Run("entrypoint on a worker node", func(t *testing.T) {
		n := c.AddNode(testcluster.NodeOptions{Flags: []string{`--resources={"special": 1}`}})
		out := mustJob(t, c, "submit", "--submission-id", "on-special", "--entrypoint-resources", `{"special": 1}`, "--", "echo on special node")
		if !strings.HasPrefix(out, "on special node\n") {
			t.Errorf("output %q", out)
		}
		if b, err := os.ReadFile(filepath.Join(n.Info.SessionDir, "logs", "job-driver-on-special.log")); err != nil || string(b) != "on special node\n" {
			t.Errorf("driver log on the worker node: %q %v", b, err)
		}
		// A job whose node dies fails instead of staying RUNNING.
		mustJob(t, c, "submit", "--no-wait", "--submission-id", "doomed", "--entrypoint-resources", `{"special": 1}`, "--", "exec sleep 600")
		testcluster.Eventually(t, 30*time.Second, "the doomed job to run", func() bool { return jobStatus(t, c, "doomed") == "RUNNING" })
		n.Kill()
		testcluster.Eventually(t, 30*time.Second, "the job of a dead node to fail", func() bool { return jobStatus(t, c, "doomed") == "FAILED" })
		if out := mustJob(t, c, "status", "doomed"); !strings.Contains(out, "died with its node") {
			t.Errorf("status of a job whose node died: %q", out)
		}
		testcluster.Eventually(t, 10*time.Second, "the entrypoint to die with its node", func() bool { return len(processesOfJob("doomed")) == 0 })
	})

	t.Run("list, delete, addresses, auth", func(t *testing.T) {
		out := mustJob(t, c, "list")
		for _, id := range []string{"wordcount-1", "fails", "sleeper", "waiter", "on-special"} {
			if !strings.Contains(out, id) {
				t.Errorf("list lacks %s:\n%s", id, out)
			}
		}
		var dash struct {
			DashboardAddress string `json:"dashboard_address"`
		}
		b, _ := json.Marshal(c.Head.Info)
		json.Unmarshal(b, &dash)
		for _, addr := range []string{"http://" + dash.DashboardAddress, c.Address, "goray://" + c.Head.Info.ClientAddress, "ray://" + c.Head.Info.ClientAddress, "GORAY://" + c.Head.Info.ClientAddress} {
			if st := mustJob(t, c, "status", "--address", addr, "fails"); !strings.Contains(st, "FAILED") {
				t.Errorf("status via %s: %q", addr, st)
			}
		}
		if _, errOut, err := jobCLI(c, []string{"GORAY_AUTH_TOKEN=wrong"}, "list", "--address", "http://"+dash.DashboardAddress); err == nil || !strings.Contains(errOut, "refused the auth token") {
			t.Errorf("wrong token: %v %s", err, errOut)
		}
		if _, errOut, err := jobCLI(c, []string{"GORAY_AUTH_TOKEN=wrong"}, "list"); err == nil || !strings.Contains(errOut, "invalid token") {
			t.Errorf("wrong token via the GCS: %v %s", err, errOut)
		}
		// The client port without goray:// suggests it; no doubled "goray: goray:".
		if _, errOut, err := jobCLI(c, nil, "list", "--address", c.Head.Info.ClientAddress); err == nil || !strings.Contains(errOut, "use the address goray://"+c.Head.Info.ClientAddress) {
			t.Errorf("client port as GCS address: %v %s", err, errOut)
		}
		for _, addr := range []string{"goray://127.0.0.1:", "goray://"} {
			if _, errOut, err := jobCLI(c, nil, "submit", "--address", addr, "--", "true"); err == nil || !strings.Contains(errOut, "want goray://HOST[:PORT]") || strings.Contains(errOut, "goray: goray:") {
				t.Errorf("submit --address %s: %v %s", addr, err, errOut)
			}
		}
		// No port means the client server's 10001 (not 443).
		if _, errOut, err := jobCLI(c, nil, "submit", "--address", "goray://127.0.0.1", "--", "true"); err == nil || !strings.Contains(errOut, "127.0.0.1:10001") || strings.Contains(errOut, "goray: goray:") {
			t.Errorf("submit --address goray://127.0.0.1: %v %s", err, errOut)
		}
		if _, errOut, err := jobCLI(c, nil, "delete", "sleeper"); err != nil || !strings.Contains(mustJob(t, c, "list"), "waiter") || strings.Contains(mustJob(t, c, "list"), "sleeper") {
			t.Errorf("delete: %v %s", err, errOut)
		}
		if _, errOut, err := jobCLI(c, nil, "status", "sleeper"); err == nil || !strings.Contains(errOut, "does not exist") {
			t.Errorf("status of deleted: %v %s", err, errOut)
		}
		if _, errOut, err := jobCLI(c, nil, "submit", "--runtime-env-json", "{bad", "--", "true"); err == nil || !strings.Contains(errOut, "--runtime-env-json") {
			t.Errorf("bad flag: %v %s", err, errOut)
		}
		if _, errOut, err := jobCLI(c, nil, "submit", "--submission-id", "fails", "--", "true"); err == nil || !strings.Contains(errOut, "already exists") {
			t.Errorf("duplicate: %v %s", err, errOut)
		}
	})
}
