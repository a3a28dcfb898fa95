package updater

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/goray/goray/internal/clusterconfig"
	"github.com/goray/goray/internal/launcher/runner"
	"github.com/goray/goray/internal/provider"
)

// fakeRunner records what the updater asks of a node.
type fakeRunner struct {
	events   []string
	notReady []error // Ready's results, in turn, then nil
	fail     map[string]error
}

func (f *fakeRunner) Host() string { return "10.0.0.9" }
func (f *fakeRunner) Ready(ctx context.Context) error {
	f.events = append(f.events, "ready")
	if len(f.notReady) > 0 {
		err := f.notReady[0]
		f.notReady = f.notReady[1:]
		return err
	}
	return nil
}
func (f *fakeRunner) Run(ctx context.Context, cmd string, env map[string]string, out io.Writer) error {
	f.events = append(f.events, "run "+runner.Script(cmd, env))
	if err := f.fail[cmd]; err != nil {
		return err
	}
	return nil
}
func (f *fakeRunner) Upload(ctx context.Context, local, remote string, opt runner.SyncOptions) error {
	f.events = append(f.events, "upload "+local+" "+remote)
	return nil
}
func (f *fakeRunner) Download(ctx context.Context, remote, local string) error { return nil }
func (f *fakeRunner) Interactive(ctx context.Context, cmd string, in io.Reader, out, errw io.Writer) error {
	return nil
}
func (f *fakeRunner) Close() error { return nil }

// tagLog is a provider that records SetNodeTags.
type tagLog struct {
	provider.NodeProvider
	statuses []string
	tags     map[string]string
}

func (t *tagLog) SetNodeTags(ctx context.Context, id string, tags map[string]string) error {
	if s, ok := tags[provider.TagNodeStatus]; ok {
		t.statuses = append(t.statuses, s)
	}
	if t.tags == nil {
		t.tags = map[string]string{}
	}
	maps.Copy(t.tags, tags)
	return nil
}

func newUpdater(r *fakeRunner, p *tagLog) *Updater {
	return &Updater{
		Provider: p, NodeID: "n1", Runner: r,
		FileMounts: map[string]string{"~/b": "/src/b", "~/a": "/src/a"},
		Plan: Plan{Init: []string{"init1"}, Setup: []string{"setup1"}, RoleSetup: []string{"setup2"},
			Start: []string{"goray stop", "goray start --head"}},
		Env:         map[string]string{"RAY_HEAD_IP": "10.0.0.9"},
		RuntimeHash: "rt", FileMountsHash: "fm",
		WaitInterval: time.Millisecond, WaitTimeout: time.Second,
	}
}

func TestUpdaterStepOrder(t *testing.T) {
	r, p := &fakeRunner{notReady: []error{errors.New("connection refused")}}, &tagLog{}
	if err := newUpdater(r, p).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"ready", "ready", // retried while the host boots
		"upload /src/a ~/a", "upload /src/b ~/b",
		"run export RAY_HEAD_IP=10.0.0.9; init1",
		"run export RAY_HEAD_IP=10.0.0.9; setup1", "run export RAY_HEAD_IP=10.0.0.9; setup2",
		"run export RAY_HEAD_IP=10.0.0.9; goray stop", "run export RAY_HEAD_IP=10.0.0.9; goray start --head",
	}
	if !reflect.DeepEqual(r.events, want) {
		t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(r.events, "\n"), strings.Join(want, "\n"))
	}
	wantStatus := []string{"waiting-for-ssh", "syncing-files", "setting-up", "setting-up", "up-to-date"}
	if !reflect.DeepEqual(p.statuses, wantStatus) {
		t.Fatalf("statuses %v, want %v", p.statuses, wantStatus)
	}
	if p.tags[provider.TagRuntimeConfig] != "rt" || p.tags[TagFileMountsContents] != "fm" {
		t.Fatalf("hash tags not recorded: %v", p.tags)
	}
}

func TestUpdaterModes(t *testing.T) {
	upToDate := map[string]string{provider.TagRuntimeConfig: "rt", TagFileMountsContents: "fm"}
	for _, tc := range []struct {
		name                   string
		tags                   map[string]string
		noRestart, restartOnly bool
		want                   []string
	}{
		{"up to date: only restart", upToDate, false, false, []string{"ready", "run goray stop", "run goray start --head"}},
		{"up to date, --no-restart: nothing", upToDate, true, false, []string{"ready"}},
		{"outdated, --no-restart: setup only", map[string]string{provider.TagRuntimeConfig: "old", TagFileMountsContents: "fm"}, true, false,
			[]string{"ready", "upload /src/a ~/a", "upload /src/b ~/b", "run init1", "run setup1", "run setup2"}},
		{"file mounts changed: setup again", map[string]string{provider.TagRuntimeConfig: "rt", TagFileMountsContents: "old"}, false, false,
			[]string{"ready", "upload /src/a ~/a", "upload /src/b ~/b", "run init1", "run setup1", "run setup2", "run goray stop", "run goray start --head"}},
		{"--restart-only: start only", nil, false, true, []string{"ready", "run goray stop", "run goray start --head"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, p := &fakeRunner{}, &tagLog{}
			u := newUpdater(r, p)
			u.Env = nil
			u.Tags, u.NoRestart, u.RestartOnly = tc.tags, tc.noRestart, tc.restartOnly
			if err := u.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(r.events, tc.want) {
				t.Fatalf("events %q, want %q", r.events, tc.want)
			}
			if tc.restartOnly && p.tags[provider.TagRuntimeConfig] != "" {
				t.Fatal("--restart-only recorded the runtime hash without running setup")
			}
		})
	}
}

func TestUpdaterFailureNamesHostStepAndCommand(t *testing.T) {
	r := &fakeRunner{fail: map[string]error{"setup2": &runner.ExitError{Host: "10.0.0.9", Cmd: "setup2", Code: 4, Output: "no such package"}}}
	p := &tagLog{}
	u := newUpdater(r, p)
	u.Env = nil
	err := u.Run(context.Background())
	var se *StepError
	if !errors.As(err, &se) || se.Host != "10.0.0.9" || se.Step != "head_setup_commands" || se.Cmd != "setup2" || se.Output != "no such package" {
		t.Fatalf("error %#v", err)
	}
	for _, want := range []string{"10.0.0.9: head_setup_commands failed", `"setup2"`, "exit status 4", "no such package"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	if last := r.events[len(r.events)-1]; last != "run setup2" {
		t.Fatalf("ran past the failure: %v", r.events)
	}
	if s := p.statuses[len(p.statuses)-1]; s != provider.StatusUpdateFailed {
		t.Fatalf("last status %s, want update-failed", s)
	}
}

func TestUpdaterWaitGivesUpOnPermanentErrorsAndTimeouts(t *testing.T) {
	r := &fakeRunner{notReady: []error{runner.Permanent(errors.New("key rejected")), nil}}
	u := newUpdater(r, &tagLog{})
	err := u.Run(context.Background())
	var se *StepError
	if !errors.As(err, &se) || se.Step != StepWaitHost || len(r.events) != 1 {
		t.Fatalf("permanent error: %v after %v", err, r.events)
	}
	r = &fakeRunner{}
	for range 1000 {
		r.notReady = append(r.notReady, fmt.Errorf("no route to host"))
	}
	u = newUpdater(r, &tagLog{})
	u.WaitTimeout = 30 * time.Millisecond
	start := time.Now()
	err = u.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "waiting-for-host failed: not reachable after ") || !strings.Contains(err.Error(), "(timeout 30ms)") {
		t.Fatalf("timeout: %v", err)
	}
	if took := time.Since(start); took < 30*time.Millisecond {
		t.Fatalf("gave up after %s, before the 30ms timeout", took)
	}
}

func TestPlansAndWorkerEnv(t *testing.T) {
	c, err := clusterconfig.Parse([]byte(`
provider: {type: process}
initialization_commands: [init-global]
setup_commands: [setup]
head_setup_commands: [head-setup]
worker_setup_commands: [worker-setup-global]
available_node_types:
  head: {node_config: {}, resources: {}}
  small: {node_config: {}, resources: {CPU: 1}}
  big:
    node_config: {}
    resources: {CPU: 8}
    worker_setup_commands: [big-setup]
    initialization_commands: [big-init]
head_node_type: head
`))
	if err != nil {
		t.Fatal(err)
	}
	if p := HeadPlan(c); !reflect.DeepEqual(p, Plan{Init: []string{"init-global"}, Setup: []string{"setup"}, RoleSetup: []string{"head-setup"},
		Start:   []string{"goray stop", "goray start --head --port=6379 --autoscaling-config=~/goray_bootstrap_config.yaml"},
		InitKey: "initialization_commands", RoleSetupKey: "head_setup_commands", StartKey: "head_start_ray_commands"}) {
		t.Fatalf("head plan %+v", p)
	}
	if p := WorkerPlan(c, "small"); !reflect.DeepEqual(p.Setup, []string{"setup"}) || !reflect.DeepEqual(p.RoleSetup, []string{"worker-setup-global"}) ||
		!reflect.DeepEqual(p.Init, []string{"init-global"}) || p.RoleSetupKey != "worker_setup_commands" || p.StartKey != "worker_start_ray_commands" ||
		!reflect.DeepEqual(p.Start, []string{"goray stop", "goray start --address=$RAY_HEAD_IP:6379"}) {
		t.Fatalf("small plan %+v", p)
	}
	if p := WorkerPlan(c, "big"); !reflect.DeepEqual(p.RoleSetup, []string{"big-setup"}) || !reflect.DeepEqual(p.Init, []string{"big-init"}) ||
		p.RoleSetupKey != "available_node_types.big.worker_setup_commands" || p.InitKey != "available_node_types.big.initialization_commands" {
		t.Fatalf("big plan %+v (per-type lists replace the global ones)", p)
	}
	env := WorkerEnv("10.0.0.1", "10.0.0.2", "big", "tok", map[string]float64{"CPU": 8, "GPU": 1})
	script := runner.Script("goray start --address=$RAY_HEAD_IP:6379", env)
	want := `export GORAY_AUTH_TOKEN=tok; export GORAY_CLOUD_INSTANCE_ID=10.0.0.2; export GORAY_HEAD_IP=10.0.0.1; ` +
		`export GORAY_NODE_TYPE_NAME=big; export RAY_HEAD_IP=10.0.0.1; export RAY_OVERRIDE_RESOURCES='{"CPU": 8, "GPU": 1}'; ` +
		`goray start --address=$RAY_HEAD_IP:6379`
	if script != want {
		t.Fatalf("rendered\n%s\nwant\n%s", script, want)
	}
}

// A failing command is reported under the config key it comes from, with
// real shells on this machine: worker_setup_commands (global or the
// type's), not setup_commands; and a runner without SSH waits for its
// host, not for SSH.
func TestUpdaterNamesTheFailingKey(t *testing.T) {
	c, err := clusterconfig.Parse([]byte(`
provider: {type: process}
setup_commands: [echo common-setup]
worker_setup_commands: [echo global-worker-setup; exit 3]
head_setup_commands: [exit 4]
available_node_types:
  head: {node_config: {}, resources: {}}
  small: {node_config: {}, resources: {CPU: 1}}
  big: {node_config: {}, resources: {CPU: 8}, worker_setup_commands: [exit 5]}
head_node_type: head
`))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", t.TempDir())
	for _, tc := range []struct {
		plan Plan
		want string
	}{
		{WorkerPlan(c, "small"), `localhost: worker_setup_commands failed running "echo global-worker-setup; exit 3": exit status 3`},
		{WorkerPlan(c, "big"), `localhost: available_node_types.big.worker_setup_commands failed running "exit 5": exit status 5`},
		{HeadPlan(c), `localhost: head_setup_commands failed running "exit 4": exit status 4`},
	} {
		var out strings.Builder
		u := &Updater{Runner: &runner.Local{}, Plan: tc.plan, Out: &out}
		err := u.Run(context.Background())
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("error %v, want %q", err, tc.want)
		}
		if !strings.Contains(out.String(), "common-setup") || !strings.Contains(out.String(), "[localhost] waiting-for-host") ||
			strings.Contains(out.String(), "waiting-for-ssh") {
			t.Errorf("progress:\n%s", out.String())
		}
	}
}
