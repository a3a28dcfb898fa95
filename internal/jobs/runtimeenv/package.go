package runtimeenv

import (
	"archive/zip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"google.golang.org/grpc/status"

	"github.com/goray/goray/internal/gcs"
	"github.com/goray/goray/proto/rpcpb"
)

// PackageNamespace is the GCS KV namespace that maps a package URI to the
// content hash of its zip in the cluster's package store.
const PackageNamespace = "packages"

// entry is one file or directory of a package.
type entry struct {
	rel  string // slash-separated, relative to the root
	abs  string
	mode fs.FileMode
	size int64
}

// Package is a scanned working_dir: what will be zipped, and its URI.
type Package struct {
	Root    string
	URI     string
	entries []entry
}

// Files lists the package's regular files with their sizes.
func (p *Package) Files() []FileSize {
	var out []FileSize
	for _, e := range p.entries {
		if e.mode.IsRegular() {
			out = append(out, FileSize{e.rel, e.size})
		}
	}
	return out
}

// Scan walks dir, skipping .git and what .gitignore files list, and names
// the package by a hash of every path, mode and file content.
func Scan(dir string) (*Package, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("runtimeenv: working_dir: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("runtimeenv: working_dir %s is not a directory", dir)
	}
	p := &Package{Root: dir}
	var rules []ignoreRule
	h := sha256.New()
	var walk func(abs, rel string) error
	walk = func(abs, rel string) error {
		if b, err := os.ReadFile(filepath.Join(abs, ".gitignore")); err == nil {
			rules = append(rules, parseGitignore(rel, b)...)
		}
		des, err := os.ReadDir(abs)
		if err != nil {
			return fmt.Errorf("runtimeenv: working_dir: %w", err)
		}
		sort.Slice(des, func(a, b int) bool { return des[a].Name() < des[b].Name() })
		for _, de := range des {
			name := de.Name()
			crel := path.Join(rel, name)
			cabs := filepath.Join(abs, name)
			if de.IsDir() && name == ".git" {
				continue
			}
			if ignored(rules, crel, de.IsDir()) {
				continue
			}
			info, err := de.Info()
			if err != nil {
				return fmt.Errorf("runtimeenv: working_dir: %w", err)
			}
			switch {
			case info.IsDir():
				p.entries = append(p.entries, entry{rel: crel, abs: cabs, mode: info.Mode()})
				fmt.Fprintf(h, "d\x00%s\x00%o\x00", crel, info.Mode().Perm())
				if err := walk(cabs, crel); err != nil {
					return err
				}
			case info.Mode().IsRegular():
				p.entries = append(p.entries, entry{rel: crel, abs: cabs, mode: info.Mode(), size: info.Size()})
				fmt.Fprintf(h, "f\x00%s\x00%o\x00%d\x00", crel, info.Mode().Perm(), info.Size())
				f, err := os.Open(cabs)
				if err != nil {
					return fmt.Errorf("runtimeenv: working_dir: %w", err)
				}
				_, err = io.Copy(h, f)
				f.Close()
				if err != nil {
					return fmt.Errorf("runtimeenv: working_dir: %w", err)
				}
			default:
				// Symlinks, sockets and devices are not packaged.
			}
		}
		return nil
	}
	if err := walk(dir, ""); err != nil {
		return nil, err
	}
	p.URI = "gcs://_ray_pkg_" + hex.EncodeToString(h.Sum(nil))[:32] + ".zip"
	return p, nil
}

// WriteZip writes the package as a zip archive whose entries keep their
// Unix modes. It stops with a TooLargeError once the archive passes limit
// (limit <= 0: no limit).
func (p *Package) WriteZip(w io.Writer, limit int64) (int64, error) {
	cw := &countWriter{w: w, limit: limit}
	zw := zip.NewWriter(cw)
	for _, e := range p.entries {
		hdr := &zip.FileHeader{Name: e.rel, Method: zip.Deflate}
		hdr.SetMode(e.mode)
		if e.mode.IsDir() {
			hdr.Name += "/"
			hdr.Method = zip.Store
			if _, err := zw.CreateHeader(hdr); err != nil {
				return cw.n, p.zipErr(cw, err)
			}
			continue
		}
		fw, err := zw.CreateHeader(hdr)
		if err != nil {
			return cw.n, p.zipErr(cw, err)
		}
		f, err := os.Open(e.abs)
		if err != nil {
			return cw.n, fmt.Errorf("runtimeenv: zip working_dir: %w", err)
		}
		_, err = io.Copy(fw, f)
		f.Close()
		if err != nil {
			return cw.n, p.zipErr(cw, err)
		}
	}
	if err := zw.Close(); err != nil {
		return cw.n, p.zipErr(cw, err)
	}
	return cw.n, nil
}

func (p *Package) zipErr(cw *countWriter, err error) error {
	if errors.Is(err, errLimit) {
		return &TooLargeError{Limit: cw.limit, Size: cw.n, AtLeast: true, Largest: largest(p.Files(), 5)}
	}
	return fmt.Errorf("runtimeenv: zip working_dir: %w", err)
}

var errLimit = errors.New("limit reached")

type countWriter struct {
	w     io.Writer
	n     int64
	limit int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	if c.limit > 0 && c.n+int64(len(b)) > c.limit {
		c.n += int64(len(b))
		return 0, errLimit
	}
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// ZipLargest lists the biggest files (uncompressed) of the zip at path.
func ZipLargest(zipPath string, n int) []FileSize {
	zr, err := zip.OpenReader(zipPath)
	if err != nil {
		return nil
	}
	defer zr.Close()
	var files []FileSize
	for _, f := range zr.File {
		if !f.FileInfo().IsDir() {
			files = append(files, FileSize{f.Name, int64(f.UncompressedSize64)})
		}
	}
	return largest(files, n)
}

// ValidURI checks a package URI goray can serve: gcs://<name>.zip, name
// without path separators.
func ValidURI(uri string) error {
	name, ok := strings.CutPrefix(uri, "gcs://")
	if !ok {
		return fmt.Errorf("package URI %q must start with gcs:// (upload the directory with PUT /api/packages/gcs/<name>)", uri)
	}
	if !ValidName(name) {
		return fmt.Errorf("package URI %q must name a .zip package without '/'", uri)
	}
	return nil
}

// ValidName checks a package name: a .zip file name without separators.
func ValidName(name string) bool {
	return strings.HasSuffix(name, ".zip") && len(name) > len(".zip") && len(name) <= 255 &&
		!strings.ContainsAny(name, "/\\\x00") && name != "." && name != ".."
}

// Exists reports whether the package store holds uri.
func Exists(ctx context.Context, gcs rpcpb.GcsServiceClient, uri string) (bool, error) {
	r, err := gcs.KVGet(ctx, &rpcpb.KVRequest{Namespace: PackageNamespace, Key: uri})
	if err != nil {
		return false, fmt.Errorf("runtimeenv: GCS: %s", status.Convert(err).Message())
	}
	return r.Found, nil
}

// Store uploads the zip at zipPath into the package store under uri.
func Store(ctx context.Context, client rpcpb.GcsServiceClient, uri, zipPath string) error {
	hash, err := gcs.StoreFile(ctx, client, zipPath)
	if err != nil {
		return fmt.Errorf("runtimeenv: store package: %w", err)
	}
	if _, err := client.KVPut(ctx, &rpcpb.KVRequest{Namespace: PackageNamespace, Key: uri, Value: []byte(hash), Overwrite: true}); err != nil {
		return fmt.Errorf("runtimeenv: GCS: %s", status.Convert(err).Message())
	}
	return nil
}

var fetchMu sync.Mutex // one download at a time per process

// Fetch returns the local directory of package uri under
// <runtimeResources>/working_dir_files, downloading and unpacking it first
// when this host does not have it yet.
func Fetch(ctx context.Context, client rpcpb.GcsServiceClient, uri, runtimeResources string) (string, error) {
	if err := ValidURI(uri); err != nil {
		return "", fmt.Errorf("runtimeenv: %w", err)
	}
	name := strings.TrimSuffix(strings.TrimPrefix(uri, "gcs://"), ".zip")
	base := filepath.Join(runtimeResources, "working_dir_files")
	dest := filepath.Join(base, name)
	fetchMu.Lock()
	defer fetchMu.Unlock()
	if _, err := os.Stat(dest); err == nil {
		return dest, nil
	}
	r, err := client.KVGet(ctx, &rpcpb.KVRequest{Namespace: PackageNamespace, Key: uri})
	if err != nil {
		return "", fmt.Errorf("runtimeenv: GCS: %s", status.Convert(err).Message())
	}
	if !r.Found {
		return "", fmt.Errorf("runtimeenv: package %s does not exist in the cluster", uri)
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", err
	}
	zipPath, err := gcs.FetchFile(ctx, client, string(r.Value), base, ".fetched-"+name+".zip", 0o644)
	if err != nil {
		return "", fmt.Errorf("runtimeenv: fetch %s: %w", uri, err)
	}
	defer os.Remove(zipPath)
	udir, err := os.MkdirTemp(base, ".unpack-*")
	if err != nil {
		return "", err
	}
	if err := Unpack(zipPath, udir); err != nil {
		os.RemoveAll(udir)
		return "", fmt.Errorf("runtimeenv: unpack %s: %w", uri, err)
	}
	if err := os.Rename(udir, dest); err != nil {
		os.RemoveAll(udir)
		return "", err
	}
	return dest, nil
}

// Unpack extracts a zip into dir, keeping file modes; entries that would
// land outside dir are refused.
func Unpack(zipPath, dir string) error {
	zr, err := zip.OpenReader(zipPath)
	if err != nil {
		return err
	}
	defer zr.Close()
	for _, f := range zr.File {
		name := path.Clean(strings.TrimSuffix(f.Name, "/"))
		if name == "." || path.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("zip entry %q escapes the package", f.Name)
		}
		target := filepath.Join(dir, filepath.FromSlash(name))
		mode := f.Mode()
		if mode.IsDir() || strings.HasSuffix(f.Name, "/") {
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
			if perm := mode.Perm(); perm != 0 {
				os.Chmod(target, perm|0o700)
			}
			continue
		}
		if !mode.IsRegular() {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		perm := mode.Perm()
		if perm == 0 {
			perm = 0o644
		}
		rc, err := f.Open()
		if err != nil {
			return err
		}
		out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
		if err != nil {
			rc.Close()
			return err
		}
		_, err = io.Copy(out, rc)
		rc.Close()
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		if err := os.Chmod(target, perm); err != nil {
			return err
		}
	}
	return nil
}
