// Package auth implements goray's shared-token authentication, modelled on
// Ray's token auth (Ray ≥ 2.52) but on by default: every gRPC server and HTTP
// endpoint requires "authorization: Bearer <token>" unless auth is disabled.
package auth

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DefaultTokenPath returns ~/.goray/auth_token (Ray uses ~/.ray/auth_token).
func DefaultTokenPath() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("auth: cannot locate home directory for the token file: %w", err)
	}
	return filepath.Join(home, ".goray", "auth_token"), nil
}

// LookupToken finds the cluster token, in order: env GORAY_AUTH_TOKEN, env
// RAY_AUTH_TOKEN, the file named by RAY_AUTH_TOKEN_PATH, ~/.goray/auth_token.
// Values are trimmed of whitespace; source is the env var name or the file
// path. ok is false when no token is configured. As in Ray, a
// RAY_AUTH_TOKEN_PATH file that cannot be read or is empty is an error
// naming the path; so is a ~/.goray/auth_token that exists but cannot be read.
func LookupToken() (token string, source string, ok bool, err error) {
	for _, env := range []string{"GORAY_AUTH_TOKEN", "RAY_AUTH_TOKEN"} {
		if t := strings.TrimSpace(os.Getenv(env)); t != "" {
			return t, env, true, nil
		}
	}
	if p := os.Getenv("RAY_AUTH_TOKEN_PATH"); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", "", false, fmt.Errorf("auth: cannot read token file %s (RAY_AUTH_TOKEN_PATH): %w", p, err)
		}
		t := strings.TrimSpace(string(b))
		if t == "" {
			return "", "", false, fmt.Errorf("auth: token file %s (RAY_AUTH_TOKEN_PATH) is empty", p)
		}
		return t, p, true, nil
	}
	p, err := DefaultTokenPath()
	if err != nil {
		return "", "", false, nil
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return "", "", false, nil
	} else if err != nil {
		return "", "", false, fmt.Errorf("auth: cannot read token file %s: %w", p, err)
	}
	if t := strings.TrimSpace(string(b)); t != "" {
		return t, p, true, nil
	}
	return "", "", false, nil
}

// Disabled reports whether GORAY_AUTH_MODE or RAY_AUTH_MODE is "disabled"
// (case-insensitive). Unlike Ray, where auth is off unless RAY_AUTH_MODE=token,
// goray authenticates by default.
func Disabled() bool {
	return strings.EqualFold(strings.TrimSpace(os.Getenv("GORAY_AUTH_MODE")), "disabled") ||
		strings.EqualFold(strings.TrimSpace(os.Getenv("RAY_AUTH_MODE")), "disabled")
}

// Generate returns a new random token: 32 bytes from crypto/rand, hex-encoded
// (64 characters).
func Generate() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("auth: generate token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// EnsureToken returns the token found by LookupToken or, when there is none,
// generates one and saves it to ~/.goray/auth_token (directory 0700, file
// 0600). An existing file is never overwritten: if another process creates it
// first, its token is returned. Used by `goray start --head`, like
// `ray get-auth-token --generate`.
func EnsureToken() (string, error) {
	if t, _, ok, err := LookupToken(); err != nil || ok {
		return t, err
	}
	p, err := DefaultTokenPath()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return "", fmt.Errorf("auth: create token directory: %w", err)
	}
	t, err := Generate()
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		// Lost a race with another process, or the file exists but is blank.
		if t, _, ok, err := LookupToken(); err != nil || ok {
			return t, err
		}
		return "", fmt.Errorf("auth: token file %s exists but is empty; delete it or write a token into it", p)
	} else if err != nil {
		return "", fmt.Errorf("auth: create token file %s: %w", p, err)
	}
	if _, err := f.WriteString(t + "\n"); err != nil {
		f.Close()
		os.Remove(p)
		return "", fmt.Errorf("auth: write token file %s: %w", p, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(p)
		return "", fmt.Errorf("auth: write token file %s: %w", p, err)
	}
	return t, nil
}
