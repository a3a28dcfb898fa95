package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goray/goray/testcluster"
)

func TestCountWords(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[string]int64
	}{
		{"", map[string]int64{}},
		{"  \n\t.,;  ", map[string]int64{}},
		{"a", map[string]int64{"a": 1}},
		{"Hello hello HELLO hElLo", map[string]int64{"hello": 4}},
		{"foo_bar foo123bar", map[string]int64{"foo": 2, "bar": 2}},
		{"café naïve", map[string]int64{"caf": 1, "na": 1, "ve": 1}},
		{"x\x80y\xffz\x00Z", map[string]int64{"x": 1, "y": 1, "z": 2}},
		{"@[`{ AZaz", map[string]int64{"azaz": 1}}, // neighbours of A-Z and a-z are separators
		{"tail words end here", map[string]int64{"tail": 1, "words": 1, "end": 1, "here": 1}},
		{strings.Repeat("Long", 100), map[string]int64{strings.Repeat("long", 100): 1}},
	} {
		c := counts{}
		countWords([]byte(tc.in), c)
		if got := c.plain(); !maps.Equal(got, tc.want) {
			t.Errorf("countWords(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestWordcountCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	dir, want := testTree(t)
	cluster := testcluster.Start(t, testcluster.Options{Workers: 2})
	bin := filepath.Join(t.TempDir(), "wordcount")
	if err := testcluster.Build(bin, "github.com/goray/goray/examples/wordcount"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--address="+cluster.Address, "--batch-bytes=64", dir)
	cmd.Env = cluster.Env()
	checkRun(t, cluster, cmd, want)
}

// testTree writes a directory of test files and returns it with the
// top-20 lines wordcount must print for it.
func testTree(t *testing.T) (string, []string) {
	dir := t.TempDir()
	write := func(name string, data []byte) {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.txt", []byte("Hello, world! hello World HELLO\nfoo_bar foo123bar"))
	write("sub/b.txt", []byte("Café naïve résumé, über alles; it's the end"))
	write("sub/empty", nil)
	write("sub/deeper/bin.dat", []byte("ab\x80cd\xffab\x00XY\xc3\xa9ab"))
	// Generated text in nested dirs, words of skewed frequencies in mixed case.
	vocab := strings.Fields("the of and to in is that for it as with was on be by at this go func return nil err if")
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 12 {
		var b strings.Builder
		for range 40 + 10*i {
			w := vocab[int(float64(len(vocab))*rng.Float64()*rng.Float64())]
			if rng.IntN(4) == 0 {
				w = strings.ToUpper(w[:1]) + w[1:]
			}
			b.WriteString(w)
			b.WriteString([]string{" ", "\n", ", ", "(", "0", "_"}[rng.IntN(6)])
		}
		write(fmt.Sprintf("gen/d%d/f%d.txt", i%3, i), []byte(b.String()))
	}
	// Symlinks must not be followed: counting through them would put
	// "linked" at the top.
	outside := t.TempDir()
	linked := []byte(strings.Repeat("linked ", 1000))
	if err := os.WriteFile(filepath.Join(outside, "target.txt"), linked, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "target.txt"), filepath.Join(dir, "link.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "sub", "linkdir")); err != nil {
		t.Fatal(err)
	}

	return dir, expectedTop(t, dir)
}

// checkRun runs a wordcount command against cluster and checks its counts
// and that tasks ran on every node.
func checkRun(t *testing.T, cluster *testcluster.Cluster, cmd *exec.Cmd, want []string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("stderr:\n%s", stderr.String())
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for i, w := range cluster.Workers {
			t.Logf("worker node %d log:\n%s", i, w.Log())
		}
		for _, n := range append([]*testcluster.Node{cluster.Head}, cluster.Workers...) {
			logs, _ := filepath.Glob(filepath.Join(n.Info.SessionDir, "logs", "worker-*"))
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				t.Logf("%s:\n%s", l, b)
			}
		}
	})
	if err != nil {
		t.Fatalf("wordcount: %v\nstdout:\n%s", err, stdout.String())
	}

	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	if len(lines) < len(want) || !slices.Equal(lines[:len(want)], want) {
		t.Fatalf("top words:\n%s\nwant:\n%s", stdout.String(), strings.Join(want, "\n"))
	}
	m := regexp.MustCompile(`(\d+) tasks in `).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("no task count on stderr")
	}
	batches, _ := strconv.Atoi(m[1])
	if batches < 6 {
		t.Fatalf("%d tasks, want at least 6 to spread", batches)
	}
	var ids []string
	ran := 0
	for _, l := range lines[len(want):] {
		var id string
		var n int
		if _, err := fmt.Sscanf(l, "node %s ran %d tasks", &id, &n); err != nil {
			t.Fatalf("unexpected line %q: %v", l, err)
		}
		ids = append(ids, id)
		ran += n
	}
	nodes := []string{cluster.Head.Info.NodeID}
	for _, w := range cluster.Workers {
		nodes = append(nodes, w.Info.NodeID)
	}
	slices.Sort(nodes)
	if !slices.Equal(ids, nodes) {
		t.Errorf("tasks ran on nodes %v, want all of %v (sorted); stdout:\n%s", ids, nodes, stdout.String())
	}
	if ran != batches {
		t.Errorf("nodes ran %d tasks, want %d", ran, batches)
	}
}

// expectedTop counts the regular files under dir independently of the
// example's code and returns the top-20 lines it should print.
func expectedTop(t *testing.T, dir string) []string {
	word := regexp.MustCompile(`[A-Za-z]+`)
	total := map[string]int{}
	err := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || !info.Mode().IsRegular() {
			return err
		}
		data, err := os.ReadFile(path)
		for _, w := range word.FindAll(data, -1) {
			total[strings.ToLower(string(w))]++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	words := slices.Collect(maps.Keys(total))
	slices.SortFunc(words, func(a, b string) int {
		return cmp.Or(total[b]-total[a], strings.Compare(a, b))
	})
	var lines []string
	for _, w := range words[:min(20, len(words))] {
		lines = append(lines, fmt.Sprintf("%d %s", total[w], w))
	}
	return lines
}
