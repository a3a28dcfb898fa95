package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Local runs commands in a shell on this machine: the head of a cluster
// whose provider is "process".
type Local struct {
	// Env is added to every command's environment (after os.Environ).
	Env []string
}

func (l *Local) Host() string { return "localhost" }

func (l *Local) Ready(ctx context.Context) error {
	if _, err := exec.LookPath("bash"); err != nil {
		return Permanent(fmt.Errorf("localhost: %w", err))
	}
	return nil
}

func (l *Local) command(ctx context.Context, cmd string, env map[string]string) *exec.Cmd {
	args := ShellArgs(Script(cmd, env), false)
	c := exec.CommandContext(ctx, args[0], args[1:]...)
	c.Env = append(os.Environ(), l.Env...)
	if home, err := os.UserHomeDir(); err == nil {
		c.Dir = home
	}
	return c
}

func (l *Local) Run(ctx context.Context, cmd string, env map[string]string, out io.Writer) error {
	c := l.command(ctx, cmd, env)
	w, t := outputs(out)
	c.Stdout, c.Stderr = w, w
	err := c.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return &ExitError{Host: l.Host(), Cmd: cmd, Code: ee.ExitCode(), Output: t.String()}
	}
	if err != nil {
		return fmt.Errorf("localhost: %s: %w", cmd, err)
	}
	return nil
}

func localHome() string {
	h, _ := os.UserHomeDir()
	return h
}

func (l *Local) Upload(ctx context.Context, local, remote string, opt SyncOptions) error {
	return copyTree(HomePath(local, localHome()), HomePath(remote, localHome()), opt)
}

func (l *Local) Download(ctx context.Context, remote, local string) error {
	return copyTree(HomePath(remote, localHome()), HomePath(local, localHome()), SyncOptions{})
}

func (l *Local) Interactive(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	if cmd == "" {
		cmd = "exec bash --login"
	}
	c := l.command(ctx, cmd, nil)
	c.Stdin, c.Stdout, c.Stderr = stdin, stdout, stderr
	err := c.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return &ExitError{Host: l.Host(), Cmd: cmd, Code: ee.ExitCode()}
	}
	return err
}

func (l *Local) Close() error { return nil }

// copyTree copies src (a file or a directory's contents) to dst on this
// machine, keeping modes; a file's destination ending in "/" or naming a
// directory receives it under its own name.
func copyTree(src, dst string, opt SyncOptions) error {
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		if di, err := os.Stat(dst); err == nil && di.IsDir() || strings.HasSuffix(dst, "/") {
			dst = filepath.Join(dst, filepath.Base(src))
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return copyFile(src, dst, st.Mode())
	}
	return walkSource(src, opt, func(rel string, info fs.FileInfo) error {
		target := filepath.Join(dst, filepath.FromSlash(rel))
		switch {
		case info.IsDir():
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
			return os.Chmod(target, info.Mode().Perm())
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(filepath.Join(src, filepath.FromSlash(rel)))
			if err != nil {
				return err
			}
			os.Remove(target)
			return os.Symlink(link, target)
		case info.Mode().IsRegular():
			return copyFile(filepath.Join(src, filepath.FromSlash(rel)), target, info.Mode())
		}
		return nil
	})
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".goray-tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode.Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(tmp)
		return err
	}
	if err := out.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	os.Chmod(tmp, mode.Perm())
	return os.Rename(tmp, dst)
}
