package auth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// isolate clears every variable LookupToken reads and points HOME at a fresh
// directory, which it returns.
func isolate(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	for _, k := range []string{"GORAY_AUTH_TOKEN", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "GORAY_AUTH_MODE", "RAY_AUTH_MODE"} {
		t.Setenv(k, "")
	}
	return home
}

func TestLookupTokenOrder(t *testing.T) {
	home := isolate(t)
	dir := t.TempDir()
	named := filepath.Join(dir, "tok")
	if err := os.WriteFile(named, []byte("  from-path\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	def := filepath.Join(home, ".goray", "auth_token")
	if err := os.MkdirAll(filepath.Dir(def), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(def, []byte("from-home\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// Each step removes the highest-priority source left.
	steps := []struct {
		unset      string
		want, from string
	}{
		{"", "from-goray", "GORAY_AUTH_TOKEN"},
		{"GORAY_AUTH_TOKEN", "from-ray", "RAY_AUTH_TOKEN"},
		{"RAY_AUTH_TOKEN", "from-path", named},
		{"RAY_AUTH_TOKEN_PATH", "from-home", def},
	}
	t.Setenv("GORAY_AUTH_TOKEN", " from-goray ")
	t.Setenv("RAY_AUTH_TOKEN", "from-ray")
	t.Setenv("RAY_AUTH_TOKEN_PATH", named)
	for _, s := range steps {
		if s.unset != "" {
			t.Setenv(s.unset, "")
		}
		tok, src, ok, err := LookupToken()
		if err != nil || !ok || tok != s.want || src != s.from {
			t.Errorf("after unsetting %q: LookupToken() = %q, %q, %v, %v; want %q from %q", s.unset, tok, src, ok, err, s.want, s.from)
		}
	}

	if err := os.Remove(def); err != nil {
		t.Fatal(err)
	}
	if tok, src, ok, err := LookupToken(); ok || err != nil || tok != "" || src != "" {
		t.Errorf("no sources: LookupToken() = %q, %q, %v, %v; want none", tok, src, ok, err)
	}
}

func TestLookupTokenBadPath(t *testing.T) {
	isolate(t)
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(t.TempDir(), "missing"), empty} {
		t.Setenv("RAY_AUTH_TOKEN_PATH", p)
		_, _, ok, err := LookupToken()
		if ok || err == nil || !strings.Contains(err.Error(), p) || !strings.HasPrefix(err.Error(), "auth: ") {
			t.Errorf("RAY_AUTH_TOKEN_PATH=%s: ok=%v err=%v; want an error naming the path", p, ok, err)
		}
	}
}

func TestDisabled(t *testing.T) {
	tests := []struct {
		goray, ray string
		want       bool
	}{
		{"", "", false},
		{"disabled", "", true},
		{"", "DISABLED", true},
		{"token", "", false},
		{"", "token", false},
	}
	for _, tt := range tests {
		t.Setenv("GORAY_AUTH_MODE", tt.goray)
		t.Setenv("RAY_AUTH_MODE", tt.ray)
		if got := Disabled(); got != tt.want {
			t.Errorf("Disabled() with GORAY_AUTH_MODE=%q RAY_AUTH_MODE=%q = %v, want %v", tt.goray, tt.ray, got, tt.want)
		}
	}
}

func TestGenerate(t *testing.T) {
	a, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Generate()
	if len(a) != 64 || strings.Trim(a, "0123456789abcdef") != "" || a == b {
		t.Errorf("Generate() = %q, %q; want two distinct 64-char hex strings", a, b)
	}
}

func TestEnsureToken(t *testing.T) {
	home := isolate(t)
	tok, err := EnsureToken()
	if err != nil || len(tok) != 64 {
		t.Fatalf("EnsureToken() = %q, %v", tok, err)
	}
	p := filepath.Join(home, ".goray", "auth_token")
	if got, _ := DefaultTokenPath(); got != p {
		t.Errorf("DefaultTokenPath() = %q, want %q", got, p)
	}
	for path, want := range map[string]os.FileMode{p: 0o600, filepath.Dir(p): 0o700 | os.ModeDir} {
		if fi, err := os.Stat(path); err != nil || fi.Mode() != want {
			t.Errorf("%s: mode %v (err %v), want %v", path, fi.Mode(), err, want)
		}
	}
	if b, _ := os.ReadFile(p); strings.TrimSpace(string(b)) != tok {
		t.Errorf("file holds %q, want %q", b, tok)
	}
	// A second call reuses the file.
	if again, err := EnsureToken(); err != nil || again != tok {
		t.Errorf("second EnsureToken() = %q, %v; want %q", again, err, tok)
	}
	// An env token wins and the file is left alone.
	t.Setenv("GORAY_AUTH_TOKEN", "env-token")
	if got, err := EnsureToken(); err != nil || got != "env-token" {
		t.Errorf("EnsureToken() with env = %q, %v", got, err)
	}
	// A blank existing file is never overwritten.
	t.Setenv("GORAY_AUTH_TOKEN", "")
	if err := os.WriteFile(p, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := EnsureToken(); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("EnsureToken() over blank file = %q, %v; want error naming %s", got, err, p)
	}
	if b, _ := os.ReadFile(p); string(b) != "\n" {
		t.Errorf("blank file was overwritten with %q", b)
	}
}
