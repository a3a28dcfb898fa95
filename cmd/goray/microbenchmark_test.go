package main

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

// TestMicrobenchmarkClient runs Ray's client__* set briefly through a Ray
// Client session of the local cluster's client server.
func TestMicrobenchmarkClient(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	c := newCLI(t)
	out := c.must("microbenchmark", "--client", "--trials", "2", "--duration", "100ms", "--num-cpus", "2")
	for _, name := range []string{"client__get_calls", "client__put_calls", "client__put_gigabytes",
		"client__tasks_and_get_batch", "client__1_1_actor_calls_sync", "client__1_1_actor_calls_async"} {
		if !regexp.MustCompile(`(?m)^` + name + ` per second [0-9.]+ \+- [0-9.]+$`).MatchString(out) {
			t.Errorf("no %s line in:\n%s", name, out)
		}
	}
	if n := strings.Count(out, "\n"); n != 6 {
		t.Errorf("%d lines, want 6:\n%s", n, out)
	}
}

// TestMicrobenchmarkAddressErrors: --address needs --client and a client
// server address (goray://); a GCS address is refused, not measured as a
// driver. Errors carry one "goray:" prefix. No cluster starts.
func TestMicrobenchmarkAddressErrors(t *testing.T) {
	c := newCLI(t)
	c.extraEnv = []string{"GORAY_AUTH_MODE=disabled"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--address", "127.0.0.1:6379"}, "--address works only with --client"},
		{[]string{"--address", "goray://127.0.0.1:1"}, "--address works only with --client"},
		{[]string{"--client", "--address", "127.0.0.1:6379"}, "want the client server goray://HOST:PORT"},
		{[]string{"--client", "--address", "http://127.0.0.1:8265"}, "want the client server goray://HOST:PORT"},
		{[]string{"--client", "--address", "goray://127.0.0.1:"}, "goray: client server address"},
		// No port means 10001.
		{[]string{"--client", "--address", "GORAY://127.0.0.1"}, "127.0.0.1:10001"},
	} {
		out, err := c.run(append([]string{"microbenchmark", "--trials", "2", "--duration", "10ms"}, tc.args...)...)
		if err == nil || !strings.Contains(out, tc.want) || strings.Contains(out, "goray: goray:") || strings.Contains(out, "client__") {
			t.Errorf("%v: %v\n%s", tc.args, err, out)
		}
	}
}

func TestErrorLine(t *testing.T) {
	for in, want := range map[string]string{
		"goray: client server address": "goray: client server address",
		"--trials":                     "goray: --trials",
	} {
		if got := errorLine(errors.New(in)); got != want {
			t.Errorf("errorLine(%q) = %q, want %q", in, got, want)
		}
	}
}
