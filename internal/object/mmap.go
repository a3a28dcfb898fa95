package object

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Map maps the first size bytes of a sealed object's file read-only and
// shared; data aliases the node's shared memory, so nothing is copied.
// unmap releases the mapping, after which data must not be used. The
// mapping stays valid if the store deletes or spills the object meanwhile.
// A zero size gives an empty slice. It fails if the file is shorter than
// size, since touching pages past its end would SIGBUS.
func Map(path string, size int64) (data []byte, unmap func() error, err error) {
	return mapFile(path, size, os.O_RDONLY, unix.PROT_READ)
}

func mapFile(path string, size int64, flag, prot int) ([]byte, func() error, error) {
	if size < 0 || int64(int(size)) != size {
		return nil, nil, fmt.Errorf("object store: map %s: bad size %d", path, size)
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, nil, err
	}
	// The mapping holds its own reference to the file.
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if fi.Size() < size {
		return nil, nil, fmt.Errorf("object store: map %s: file has %d bytes, want %d", path, fi.Size(), size)
	}
	if size == 0 {
		return []byte{}, func() error { return nil }, nil
	}
	// MAP_POPULATE maps every page in one call: faulting 4 KiB pages in
	// one by one made filling a 100 MiB object ~30x slower here.
	data, err := unix.Mmap(int(f.Fd()), 0, int(size), prot, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, nil, &os.PathError{Op: "mmap", Path: path, Err: err}
	}
	return data, func() error { return unix.Munmap(data) }, nil
}
