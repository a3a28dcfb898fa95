package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/goray/goray"
	"github.com/goray/goray/proto/rpcpb"
	"github.com/goray/goray/testcluster"
)

var (
	// digest reads an object-store argument (zero-copy on the node) and
	// holds its worker busy so two calls need two workers.
	digest = goray.Register2("e2e.digest", func(ctx context.Context, b []byte, hold time.Duration) ([32]byte, error) {
		sum := sha256.Sum256(b)
		time.Sleep(hold)
		return sum, nil
	})
	// produce returns a large deterministic value (stored in the node's store).
	produce = goray.Register2("e2e.produce", func(ctx context.Context, seed uint64, size int) ([]byte, error) {
		return pseudoRandom(seed, size), nil
	})
)

func pseudoRandom(seed uint64, size int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, size)
	for i := 0; i+8 <= len(b); i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func storeStats(t *testing.T, c *testcluster.Cluster, n *testcluster.Node) *rpcpb.ObjectStoreStats {
	t.Helper()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+c.Token)
	st, err := rpcpb.NewRayletClient(mustConn(t, n.Info.RayletAddress)).GetObjectStoreStats(ctx, &rpcpb.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestLargeObjectAcrossNodes(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	w := c.AddNode(testcluster.NodeOptions{CPUs: 2})
	connect(t, c)
	const size = 200 << 20
	data := pseudoRandom(1, size)
	want := sha256.Sum256(data)
	ref, err := goray.Put(data)
	if err != nil {
		t.Fatal(err)
	}
	// Two tasks on the other node read it at once, in two workers.
	on := goray.NodeAffinity(w.Info.NodeID, false)
	a := digest.Options(on).Remote(ref, goray.Val(300*time.Millisecond))
	b := digest.Options(on).Remote(ref, goray.Val(300*time.Millisecond))
	if getT(t, a) != want || getT(t, b) != want {
		t.Fatal("the object read on another node differs from the original")
	}
	st := storeStats(t, c, w)
	if st.PulledBytes != size+1 || st.CreatedBytes != size+1 {
		t.Fatalf("the reading node pulled %d and created %d bytes, want one copy of %d", st.PulledBytes, st.CreatedBytes, size+1)
	}
	if st.Reads < 2 {
		t.Fatalf("reads on the reading node: %d, want 2 (both workers mapped the one copy)", st.Reads)
	}
	// The driver's Get maps its node's copy: equal bytes.
	got, err := goray.Get(context.Background(), ref)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get of the large object: equal=%v err=%v", bytes.Equal(got, data), err)
	}
	if hs := storeStats(t, c, c.Head); hs.CreatedBytes != size+1 {
		t.Fatalf("head created %d bytes, want %d (Put writes once)", hs.CreatedBytes, size+1)
	}
	out, err := c.Goray("memory")
	if err != nil || !strings.Contains(out, w.Info.NodeID) || !strings.Contains(out, "Pulled: 200.00 MiB") {
		t.Fatalf("goray memory: %v\n%s", err, out)
	}
	out, err = c.Goray("list", "objects")
	if err != nil || !strings.Contains(out, ref.ID()) || !strings.Contains(out, "COPY") {
		t.Fatalf("goray list objects: %v\n%s", err, out)
	}
	// Once the owner drops it, the object goes from every node, copies too.
	ref, got, data = goray.ObjectRef[[]byte]{}, nil, nil
	testcluster.Eventually(t, 20*time.Second, "the object and its copy to be freed", func() bool {
		runtime.GC()
		return storeStats(t, c, c.Head).NumObjects == 0 && storeStats(t, c, w).NumObjects == 0
	})
}

func TestSpillRestoreAndFree(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	n := c.AddNode(testcluster.NodeOptions{Flags: []string{"--object-store-memory=67108864"}})
	connect(t, c)
	on := goray.NodeAffinity(n.Info.NodeID, false)
	const size = 12 << 20
	var refs []goray.ObjectRef[[]byte]
	for i := 0; i < 10; i++ { // 120 MiB of results into a 64 MiB store
		refs = append(refs, produce.Options(on).Remote(goray.Val(uint64(i)), goray.Val(size)))
	}
	ready, _, err := goray.Wait(context.Background(), anyRefs(refs), len(refs), time.Minute)
	if err != nil || len(ready) != len(refs) {
		t.Fatalf("wait: %d ready, %v", len(ready), err)
	}
	st := storeStats(t, c, n)
	spillDir := filepath.Join(n.Info.SessionDir, "spill")
	if st.SpilledBytes == 0 || st.NumSpilled == 0 {
		t.Fatalf("no spilling past 80%% of a 64 MiB store: %+v", st)
	}
	if files, _ := os.ReadDir(spillDir); len(files) == 0 {
		t.Fatalf("no spill files in %s", spillDir)
	}
	// Every object reads back with the right bytes, restored on access.
	for i, r := range refs {
		if got := getT(t, digest.Options(on).Remote(r, goray.Val(time.Duration(0)))); got != sha256.Sum256(pseudoRandom(uint64(i), size)) {
			t.Fatalf("object %d differs after spilling", i)
		}
	}
	if st := storeStats(t, c, n); st.RestoredBytes == 0 {
		t.Fatal("no object was restored from the spill directory")
	}
	// Dropping the refs frees the objects and their spill files.
	refs = nil
	testcluster.Eventually(t, 20*time.Second, "freed objects to leave the store and the spill directory", func() bool {
		runtime.GC()
		files, _ := os.ReadDir(spillDir)
		return storeStats(t, c, n).NumObjects == 0 && len(files) == 0
	})
	// An object larger than the store is refused clearly.
	_, err = goray.Get(context.Background(), produce.Options(on).Remote(goray.Val(uint64(1)), goray.Val(100<<20)))
	if err == nil || !strings.Contains(err.Error(), "full") {
		t.Fatalf("result larger than the store: %v", err)
	}
}

func anyRefs[T any](refs []goray.ObjectRef[T]) []goray.AnyRef {
	out := make([]goray.AnyRef, len(refs))
	for i, r := range refs {
		out[i] = r
	}
	return out
}

func TestLostObjectsAreReconstructed(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Workers: 1})
	connect(t, c)
	victim := c.Workers[0]
	soft := goray.NodeAffinity(victim.Info.NodeID, true)
	const size = 1 << 20
	rebuilt := produce.Options(soft).Remote(goray.Val(uint64(7)), goray.Val(size))
	final := produce.Options(soft, goray.MaxRetries(0)).Remote(goray.Val(uint64(8)), goray.Val(size))
	if _, _, err := goray.Wait(context.Background(), []goray.AnyRef{rebuilt, final}, 2, time.Minute); err != nil {
		t.Fatal(err)
	}
	if st := storeStats(t, c, victim); st.NumObjects != 2 {
		t.Fatalf("the results should live in the victim's store: %+v", st)
	}
	victim.Kill()
	got, err := goray.Get(context.Background(), rebuilt, goray.Timeout(time.Minute))
	if err != nil || !bytes.Equal(got, pseudoRandom(7, size)) {
		t.Fatalf("reconstructed object: equal=%v err=%v", bytes.Equal(got, pseudoRandom(7, size)), err)
	}
	// The task ran again: its new output is a primary copy on the head.
	rebuiltHere := false
	for _, o := range storeStats(t, c, c.Head).Objects {
		rebuiltHere = rebuiltHere || (o.ObjectId == rebuilt.ID() && o.Primary)
	}
	if !rebuiltHere {
		t.Fatal("the lost object was not re-created on the surviving node")
	}
	_, err = goray.Get(context.Background(), final, goray.Timeout(time.Minute))
	if !errors.Is(err, goray.ErrObjectLost) {
		t.Fatalf("lost object without retries: %v, want ErrObjectLost", err)
	}
}

func TestObjectsGoWithTheirJob(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	secondDriver(t, c, "put", "")
	testcluster.Eventually(t, 20*time.Second, "the finished job's objects to be freed", func() bool {
		st := storeStats(t, c, c.Head)
		return st.CreatedBytes > 2<<20 && st.NumObjects == 0
	})
}

var holdRef = goray.Register1("e2e.holdRef", func(ctx context.Context, e struct{ R goray.ObjectRef[[]byte] }) (int, error) {
	b, err := goray.Get(ctx, e.R)
	return len(b), err
})

func TestRefsInsideValuesAreFreed(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Workers: 1})
	connect(t, c)
	ref, err := goray.Put(pseudoRandom(3, 4<<20))
	if err != nil {
		t.Fatal(err)
	}
	// A worker on another node borrows the ref from inside an argument.
	n := getT(t, holdRef.Options(goray.NodeAffinity(c.Workers[0].Info.NodeID, false)).Remote(goray.Val(struct{ R goray.ObjectRef[[]byte] }{ref})))
	if n != 4<<20 {
		t.Fatalf("borrowed object read %d bytes", n)
	}
	// Inside a Put value, it lives as long as that value.
	outer, err := goray.Put(struct{ R goray.ObjectRef[[]byte] }{ref})
	if err != nil {
		t.Fatal(err)
	}
	ref = goray.ObjectRef[[]byte]{}
	runtime.GC()
	if st := storeStats(t, c, c.Head); st.NumObjects != 1 {
		t.Fatalf("an object held inside a live value was freed: %+v", st)
	}
	got, err := goray.Get(context.Background(), outer)
	if err != nil {
		t.Fatal(err)
	}
	if n := getT(t, holdRef.Remote(goray.Val(got))); n != 4<<20 {
		t.Fatalf("ref read back from the outer value: %d bytes", n)
	}
	// Once nothing holds it (the borrower worker dropped its handle, the
	// outer value is gone), it is freed on every node.
	outer, got = goray.ObjectRef[struct{ R goray.ObjectRef[[]byte] }]{}, struct{ R goray.ObjectRef[[]byte] }{}
	// Idle workers collect their dropped borrows by themselves.
	testcluster.Eventually(t, 30*time.Second, "the object to be freed everywhere", func() bool {
		runtime.GC()
		return storeStats(t, c, c.Head).NumObjects == 0 && storeStats(t, c, c.Workers[0]).NumObjects == 0
	})
}
