// Package runner runs the cluster launcher's commands on a node and moves
// files to and from it, like Ray's command runners: over SSH
// (golang.org/x/crypto/ssh, with rsync or SFTP for files), into a
// container through the Docker Engine API, or in a local shell (the
// process provider's head, which is this machine).
//
// Every command is its own shell invocation, as in Ray: environment
// variables are exported in front of it, and state such as `cd` does not
// carry over to the next command.
package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Runner runs commands on one node.
type Runner interface {
	// Host names the node in messages (its IP, container or "localhost").
	Host() string
	// Ready checks that the node accepts commands (the updater's
	// waiting-for-ssh step). An error wrapping ErrPermanent (a rejected
	// key) is not worth retrying.
	Ready(ctx context.Context) error
	// Run runs cmd in one shell invocation with env exported; stdout and
	// stderr both go to out (which may be nil). A command that exits
	// non-zero returns an *ExitError.
	Run(ctx context.Context, cmd string, env map[string]string, out io.Writer) error
	// Upload copies a local file or directory to remote (a path on the
	// node; "~/" is the node user's home). A directory's contents land in
	// remote, which is created.
	Upload(ctx context.Context, local, remote string, opt SyncOptions) error
	// Download copies a remote file or directory to local.
	Download(ctx context.Context, remote, local string) error
	// Interactive runs cmd ("" for a login shell) with the terminal or the
	// given streams attached: goray attach.
	Interactive(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error
	// Close releases connections.
	Close() error
}

// SyncOptions are the config's rsync_exclude and rsync_filter.
type SyncOptions struct {
	// Exclude are rsync --exclude patterns, matched against names and
	// paths relative to the source.
	Exclude []string
	// FilterFiles name files (e.g. .gitignore) searched for in the source
	// tree whose patterns exclude paths below their directory.
	FilterFiles []string
}

// ErrPermanent marks errors that retrying cannot fix (a rejected key, a
// key file that cannot be read): errors.Is(err, ErrPermanent).
var ErrPermanent = errors.New("launcher: not worth retrying")

type permanent struct{ err error }

func (p permanent) Error() string        { return p.err.Error() }
func (p permanent) Unwrap() error        { return p.err }
func (p permanent) Is(target error) bool { return target == ErrPermanent }

// Permanent marks err as not worth retrying.
func Permanent(err error) error { return permanent{err} }

// ExitError is a command that ran and exited non-zero.
type ExitError struct {
	Host   string
	Cmd    string
	Code   int
	Output string // the command's last output, for messages
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("%s: command exited with status %d: %s", e.Host, e.Code, e.Cmd)
}

// Quote quotes s for a POSIX shell.
func Quote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}

// Script renders one command with its environment: `export K=V; ...; cmd`,
// variables sorted by name.
func Script(cmd string, env map[string]string) string {
	if len(env) == 0 {
		return cmd
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "export %s=%s; ", k, Quote(env[k]))
	}
	b.WriteString(cmd)
	return b.String()
}

// ShellArgs is the argument vector that runs a rendered script: `bash
// --login -c SCRIPT` with login shells (Ray's default, so the user's
// profile sets PATH), else `bash -c SCRIPT`.
func ShellArgs(script string, login bool) []string {
	if login {
		return []string{"bash", "--login", "-c", script}
	}
	return []string{"bash", "-c", script}
}

// ShellLine joins ShellArgs into one command line, quoted, for runners
// that take a string (SSH).
func ShellLine(script string, login bool) string {
	args := ShellArgs(script, login)
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = Quote(a)
	}
	return strings.Join(q, " ")
}

// tail keeps the last n bytes of output for error messages.
type tail struct {
	buf []byte
	n   int
}

func (t *tail) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.n {
		t.buf = t.buf[len(t.buf)-t.n:]
	}
	return len(p), nil
}

func (t *tail) String() string { return strings.TrimSpace(string(t.buf)) }

// outputs returns a writer for a command's output that keeps its tail.
func outputs(out io.Writer) (io.Writer, *tail) {
	t := &tail{n: 4096}
	if out == nil {
		return t, t
	}
	return io.MultiWriter(out, t), t
}

// HomePath expands a leading "~" or "~/" of p with home.
func HomePath(p, home string) string {
	if p == "~" {
		return home
	}
	if strings.HasPrefix(p, "~/") {
		return strings.TrimSuffix(home, "/") + p[1:]
	}
	return p
}
