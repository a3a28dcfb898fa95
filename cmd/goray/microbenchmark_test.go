package main

import (
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
