package runner

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestQuoteAndScript(t *testing.T) {
	for in, want := range map[string]string{
		"plain":             "plain",
		"":                  "''",
		"a b":               "'a b'",
		"it's":              `'it'"'"'s'`,
		"$HOME":             "'$HOME'",
		"/a/b-c_d.e=f:g,h+": "/a/b-c_d.e=f:g,h+",
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
	}
	if got := Script("echo $A", map[string]string{"B": "x y", "A": "1"}); got != "export A=1; export B='x y'; echo $A" {
		t.Errorf("Script = %s", got)
	}
	if got := ShellLine("echo 'hi'", true); got != `bash --login -c 'echo '"'"'hi'"'"''` {
		t.Errorf("ShellLine = %s", got)
	}
	if got := ShellArgs("true", false); !reflect.DeepEqual(got, []string{"bash", "-c", "true"}) {
		t.Errorf("ShellArgs = %q", got)
	}
	if got := HomePath("~/x", "/home/u"); got != "/home/u/x" {
		t.Errorf("HomePath = %s", got)
	}
}

func TestWalkSourceExcludesAndFilterFiles(t *testing.T) {
	root := t.TempDir()
	for _, p := range []string{"keep.go", "skip.log", "build/out.bin", "src/a.go", "src/gen/x.go", "src/.gitignore", "src/notes.tmp"} {
		os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(root, p), []byte(p), 0o644)
	}
	os.WriteFile(filepath.Join(root, "src/.gitignore"), []byte("# generated\ngen/\n*.tmp\n"), 0o644)
	var got []string
	err := walkSource(root, SyncOptions{Exclude: []string{"*.log", "build"}, FilterFiles: []string{".gitignore"}}, func(rel string, info fs.FileInfo) error {
		if !info.IsDir() {
			got = append(got, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	want := []string{"keep.go", "src/.gitignore", "src/a.go"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("walked %q, want %q", got, want)
	}
	if args := rsyncFilterArgs(SyncOptions{Exclude: []string{"*.log"}, FilterFiles: []string{".gitignore"}}); !reflect.DeepEqual(args, []string{"--exclude=*.log", "--filter=dir-merge,- .gitignore"}) {
		t.Fatalf("rsync args %q", args)
	}
}

func TestLocalRunnerRunAndCopy(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	l := &Local{}
	var out strings.Builder
	if err := l.Run(context.Background(), `echo "$X in $PWD"`, map[string]string{"X": "a b"}, &out); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out.String()); got != "a b in "+home {
		t.Fatalf("output %q", got)
	}
	err := l.Run(context.Background(), "echo bad >&2; exit 5", nil, nil)
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 5 || ee.Output != "bad" || ee.Host != "localhost" {
		t.Fatalf("exit error %#v", err)
	}
	src := filepath.Join(t.TempDir(), "src")
	os.MkdirAll(filepath.Join(src, "d"), 0o755)
	os.WriteFile(filepath.Join(src, "d", "f.sh"), []byte("#!/bin/sh\n"), 0o750)
	os.Symlink("d/f.sh", filepath.Join(src, "link"))
	if err := l.Upload(context.Background(), src, "~/dst", SyncOptions{}); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(home, "dst/d/f.sh")); err != nil || st.Mode().Perm() != 0o750 {
		t.Fatalf("copied file: %v %v", st, err)
	}
	if l, err := os.Readlink(filepath.Join(home, "dst/link")); err != nil || l != "d/f.sh" {
		t.Fatalf("copied link: %q %v", l, err)
	}
}

func TestNewSSHRejectsBadKeys(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("not a key"), 0o600)
	for name, cfg := range map[string]SSHConfig{
		"missing key file": {Host: "h", User: "u", KeyPath: filepath.Join(dir, "nope")},
		"garbage key":      {Host: "h", User: "u", KeyPath: bad},
		"no user":          {Host: "h", KeyPath: bad},
		"no key":           {Host: "h", User: "u"},
	} {
		_, err := NewSSH(cfg)
		if err == nil || !errors.Is(err, ErrPermanent) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// A host name that does not resolve is not retried, and its message says
// "ssh:" once.
func TestSSHUnknownHostIsPermanent(t *testing.T) {
	key := filepath.Join(t.TempDir(), "id")
	writeTestKey(t, key)
	s, err := NewSSH(SSHConfig{Host: "no-such-host.invalid", User: "u", KeyPath: key})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.Ready(context.Background())
	if err == nil || !errors.Is(err, ErrPermanent) || !strings.Contains(err.Error(), "no such host") || strings.Contains(err.Error(), "ssh: ssh:") {
		t.Fatalf("Ready: %v (want a permanent error saying no such host)", err)
	}
	_, err = NewSSH(SSHConfig{Host: "10.0.0.1", User: "u", KeyPath: key + ".missing"})
	if err == nil || !strings.Contains(err.Error(), key+".missing") || !strings.Contains(err.Error(), "10.0.0.1") {
		t.Fatalf("missing key: %v (want the file and the host named)", err)
	}
}

func writeTestKey(t *testing.T, path string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
}
