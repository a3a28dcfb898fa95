package runtimeenv

import (
	"archive/zip"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestGitignore(t *testing.T) {
	rules := parseGitignore("", []byte("# comment\n\n*.log\n/build\nout/\ndocs/**/*.tmp\n!keep.log\n\\#hash\n"))
	rules = append(rules, parseGitignore("sub", []byte("local.txt\n/anchored\n"))...)
	for _, tc := range []struct {
		path  string
		dir   bool
		want  bool
		descr string
	}{
		{"a.log", false, true, "glob"},
		{"x/y/a.log", false, true, "glob at any depth"},
		{"keep.log", false, false, "negation"},
		{"build", true, true, "anchored"},
		{"x/build", true, false, "anchored only at the root"},
		{"out", true, true, "dir-only"},
		{"out", false, false, "dir-only skips files"},
		{"x/out", true, true, "dir-only at any depth"},
		{"docs/a/b/c.tmp", false, true, "**"},
		{"docs/c.tmp", false, true, "** matches zero dirs"},
		{"other/c.tmp", false, false, "** anchored"},
		{"#hash", false, true, "escaped #"},
		{"sub/local.txt", false, true, "nested .gitignore"},
		{"local.txt", false, false, "nested rules stay in their dir"},
		{"sub/anchored", false, true, "nested anchored"},
		{"sub/x/anchored", false, false, "nested anchored only at its dir"},
		{"main.go", false, false, "not listed"},
	} {
		if got := ignored(rules, tc.path, tc.dir); got != tc.want {
			t.Errorf("%s: ignored(%q) = %v, want %v", tc.descr, tc.path, got, tc.want)
		}
	}
}

func write(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, mode)
}

func TestScanZipUnpack(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "run.sh"), "#!/bin/sh\necho hi\n", 0o755)
	write(t, filepath.Join(dir, "data", "a.txt"), "a", 0o644)
	write(t, filepath.Join(dir, "data", "skip.log"), "log", 0o644)
	write(t, filepath.Join(dir, ".git", "HEAD"), "ref", 0o644)
	write(t, filepath.Join(dir, ".gitignore"), "*.log\n", 0o644)
	os.MkdirAll(filepath.Join(dir, "empty"), 0o755)
	os.Symlink("/etc/passwd", filepath.Join(dir, "link"))

	p, err := Scan(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p.URI, "gcs://_ray_pkg_") || !strings.HasSuffix(p.URI, ".zip") || ValidURI(p.URI) != nil {
		t.Errorf("URI %s", p.URI)
	}
	var names []string
	for _, f := range p.Files() {
		names = append(names, f.Path)
	}
	if want := []string{".gitignore", "data/a.txt", "run.sh"}; !slices.Equal(names, want) {
		t.Errorf("files %v, want %v", names, want)
	}
	// The name follows the content: same content same name, a mode change a new one.
	if p2, _ := Scan(dir); p2.URI != p.URI {
		t.Errorf("unstable URI")
	}
	os.Chmod(filepath.Join(dir, "data", "a.txt"), 0o755)
	if p3, _ := Scan(dir); p3.URI == p.URI {
		t.Errorf("mode change kept the URI")
	}
	os.Chmod(filepath.Join(dir, "data", "a.txt"), 0o644)

	zpath := filepath.Join(t.TempDir(), "p.zip")
	f, _ := os.Create(zpath)
	if _, err := p.WriteZip(f, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out := t.TempDir()
	if err := Unpack(zpath, out); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(out, "run.sh")); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("run.sh: %v %v", st, err)
	}
	if b, err := os.ReadFile(filepath.Join(out, "data", "a.txt")); err != nil || string(b) != "a" {
		t.Errorf("a.txt: %q %v", b, err)
	}
	if st, err := os.Stat(filepath.Join(out, "empty")); err != nil || !st.IsDir() {
		t.Errorf("empty dir not kept: %v", err)
	}
	for _, gone := range []string{".git", "data/skip.log", "link"} {
		if _, err := os.Lstat(filepath.Join(out, gone)); err == nil {
			t.Errorf("%s was packaged", gone)
		}
	}
}

func TestTooLarge(t *testing.T) {
	dir := t.TempDir()
	big := make([]byte, 300<<10)
	for i := range big {
		big[i] = byte(i*2654435761>>13) ^ byte(i>>5)
	}
	write(t, filepath.Join(dir, "big.bin"), string(big), 0o644)
	write(t, filepath.Join(dir, "small.txt"), "x", 0o644)
	p, err := Scan(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.WriteZip(discard{}, 16<<10)
	var tl *TooLargeError
	if !errors.As(err, &tl) || !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err %v", err)
	}
	msg := err.Error()
	if tl.Limit != 16<<10 || !strings.Contains(msg, "16.0 KiB") || !strings.Contains(msg, "big.bin (300.0 KiB)") || !strings.Contains(msg, EnvMaxPackageSize) {
		t.Errorf("message %q", msg)
	}
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

func TestUnpackRefusesEscapes(t *testing.T) {
	dir := t.TempDir()
	zpath := filepath.Join(dir, "evil.zip")
	writeEvilZip(t, zpath)
	if err := Unpack(zpath, filepath.Join(dir, "out")); err == nil || !strings.Contains(err.Error(), "escapes") {
		t.Errorf("err %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "pwned")); err == nil {
		t.Error("file written outside the package")
	}
}

func TestDriverEnv(t *testing.T) {
	if DriverEnv("") != nil || DriverEnv("{bad") != nil || DriverEnv(`{"metadata": {}}`) != nil {
		t.Error("no job config must give nil")
	}
	env := DriverEnv(`{"submission_id": "s1", "runtime_env": {"working_dir": "gcs://_ray_pkg_x.zip", "env_vars": {"A": "1"}}}`)
	if env[KeySubmissionID] != "s1" || env[KeyWorkingDir] != "gcs://_ray_pkg_x.zip" || env["A"] != "1" {
		t.Errorf("env %v", env)
	}
}

func writeEvilZip(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	w, _ := zw.Create("../pwned")
	w.Write([]byte("x"))
	zw.Close()
	f.Close()
}
