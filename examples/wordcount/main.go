// Command wordcount counts the words of every regular file under a
// directory on a goray cluster: the driver reads the files into batches of
// about 4 MiB, one task per batch counts its words on some node and sends
// them to an aggregator actor, and the driver checks the merged counts
// against a count of its own.
//
//	wordcount [--address=ADDR] [DIR]
//
// DIR defaults to $GOROOT/src. A word is a maximal run of ASCII letters,
// lowercased. Standard output: the 20 most frequent words as "<count>
// <word>", then "node <id> ran <n> tasks" for every node that ran tasks.
package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/goray/goray"
)

// Aggregator is an actor that merges the partial counts the tasks send it,
// so the driver receives one merged result instead of one per batch.
type Aggregator struct {
	total   map[string]int64
	batches int
}

var (
	aggregator = goray.RegisterActor("wordcount.Aggregator", func(context.Context) (*Aggregator, error) {
		return &Aggregator{total: map[string]int64{}}, nil
	})
	// merge adds one batch's counts; calls run one at a time, in order.
	merge = goray.Method1(aggregator, "merge", func(ctx context.Context, a *Aggregator, partial map[string]int64) (int, error) {
		for w, n := range partial {
			a.total[w] += n
		}
		a.batches++
		return a.batches, nil
	})
	totals = goray.Method0(aggregator, "totals", func(ctx context.Context, a *Aggregator) (map[string]int64, error) {
		return a.total, nil
	})

	// countBatch counts one batch, hands its counts to the aggregator and
	// returns the id of the node it ran on.
	countBatch = goray.Register2("wordcount.count", func(ctx context.Context, data []byte, agg goray.ActorHandle[Aggregator]) (string, error) {
		c := counts{}
		countWords(data, c)
		if _, err := goray.Get(ctx, merge.Remote(agg, goray.Val(c.plain()))); err != nil {
			return "", err
		}
		return goray.NodeID(), nil
	})
)

// counts maps words to their counts. The values are pointers so that a word
// seen before costs one map lookup and no allocation: m[string(b)]++
// would allocate the key string every time.
type counts map[string]*int64

func (c counts) plain() map[string]int64 {
	m := make(map[string]int64, len(c))
	for w, n := range c {
		m[w] = *n
	}
	return m
}

// countWords adds the words of data to into: maximal runs of ASCII
// letters, lowercased; every other byte separates words.
func countWords(data []byte, into counts) {
	word := make([]byte, 0, 64)
	add := func() {
		if p := into[string(word)]; p != nil {
			*p++
		} else {
			n := int64(1)
			into[string(word)] = &n
		}
		word = word[:0]
	}
	for _, b := range data {
		// b|0x20 folds A-Z onto a-z and maps no other byte into a-z.
		if c := b | 0x20; c-'a' < 26 {
			word = append(word, c)
		} else if len(word) > 0 {
			add()
		}
	}
	if len(word) > 0 {
		add()
	}
}

func main() { os.Exit(run()) }

func run() int {
	flags := flag.NewFlagSet("wordcount", flag.ContinueOnError)
	flags.Usage = func() { fmt.Fprintln(flags.Output(), "usage: wordcount [--address=ADDR] [DIR]") }
	addr := flags.String("address", "", "address of the cluster's GCS, or goray://HEAD:10001 for its client server (default: GORAY_ADDRESS, this host's cluster, or a new local one)")
	batchBytes := flags.Int("batch-bytes", 4<<20, "") // hidden: tests make small batches
	err := flags.Parse(os.Args[1:])
	if err == nil && flags.NArg() > 1 {
		flags.Usage()
		err = errors.New("too many arguments")
	}
	// Workers run this binary too (without arguments) and must reach Init,
	// which serves tasks there and never returns.
	if err != nil && !goray.IsWorker() {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	var opts []goray.InitOption
	if *addr != "" {
		opts = append(opts, goray.Address(*addr))
	}
	if err := goray.Init(opts...); err != nil {
		fmt.Fprintln(os.Stderr, "wordcount:", err)
		return 1
	}
	defer goray.Shutdown()
	if err := wordcount(os.Stdout, flags.Arg(0), *batchBytes); err != nil {
		fmt.Fprintln(os.Stderr, "wordcount:", err)
		return 1
	}
	return 0
}

func wordcount(stdout io.Writer, dir string, batchBytes int) error {
	if dir == "" {
		root, err := goroot()
		if err != nil {
			return err
		}
		dir = filepath.Join(root, "src")
	}
	start := time.Now()
	agg, err := aggregator.Remote()
	if err != nil {
		return err
	}
	defer goray.Kill(agg, true)
	local := counts{}
	var (
		refs        []goray.ObjectRef[string]
		batch       []byte
		files, size int
	)
	// Each batch's task is submitted as soon as the batch is full, so
	// counting overlaps reading.
	submit := func() error {
		ref, err := goray.Put(batch)
		if err != nil {
			return err
		}
		refs = append(refs, countBatch.Options(goray.Spread()).Remote(ref, goray.Val(agg)))
		batch = nil // Put copied it
		return nil
	}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err // WalkDir does not follow symlinks: they are skipped here
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		size += len(data)
		countWords(data, local)
		if len(batch) > 0 && len(batch)+len(data)+1 > batchBytes {
			if err := submit(); err != nil {
				return err
			}
		}
		if batch == nil {
			batch = make([]byte, 0, max(batchBytes, len(data)+1))
		}
		// The newline keeps the last word of one file apart from the next.
		batch = append(append(batch, data...), '\n')
		return nil
	})
	if err == nil && len(batch) > 0 {
		err = submit()
	}
	if err != nil {
		return err
	}

	tasks := map[string]int{}
	for _, ref := range refs {
		node, err := goray.Get(context.Background(), ref)
		if err != nil {
			return err
		}
		tasks[node]++
	}
	total, err := goray.Get(context.Background(), totals.Remote(agg))
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wordcount: %d files, %d bytes, %d tasks in %s\n", files, size, len(refs), time.Since(start).Round(time.Millisecond))
	if w, ok := firstDiff(local.plain(), total); ok {
		return fmt.Errorf("distributed count differs from the local one, first at word %q", w)
	}

	words := slices.Collect(maps.Keys(total))
	slices.SortFunc(words, func(a, b string) int {
		return cmp.Or(cmp.Compare(total[b], total[a]), strings.Compare(a, b))
	})
	out := bufio.NewWriter(stdout)
	for _, w := range words[:min(20, len(words))] {
		fmt.Fprintf(out, "%d %s\n", total[w], w)
	}
	for _, id := range slices.Sorted(maps.Keys(tasks)) {
		fmt.Fprintf(out, "node %s ran %d tasks\n", id, tasks[id])
	}
	return out.Flush()
}

// firstDiff returns the smallest word whose counts in a and b differ.
func firstDiff(a, b map[string]int64) (string, bool) {
	var diff []string
	for w, n := range a {
		if b[w] != n { // a missing word reads as 0, never a count
			diff = append(diff, w)
		}
	}
	for w := range b {
		if _, ok := a[w]; !ok {
			diff = append(diff, w)
		}
	}
	if len(diff) == 0 {
		return "", false
	}
	return slices.Min(diff), true
}

func goroot() (string, error) {
	// runtime.GOROOT is empty in binaries built with -trimpath.
	if root := runtime.GOROOT(); root != "" {
		return root, nil
	}
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return "", fmt.Errorf("find GOROOT (pass DIR instead): go env GOROOT: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}
