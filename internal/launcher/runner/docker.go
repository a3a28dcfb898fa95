package runner

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
)

// Docker runs commands in a running container through the Docker Engine
// API (docker exec) and moves files with the API's archive copy: the
// nodes of the docker provider.
type Docker struct {
	Client    *client.Client
	Container string // name or ID

	mu   sync.Mutex
	home string
}

func (d *Docker) Host() string { return d.Container }

func (d *Docker) Ready(ctx context.Context) error {
	info, err := d.Client.ContainerInspect(ctx, d.Container)
	if err != nil {
		return fmt.Errorf("%s: %w", d.Container, err)
	}
	if info.State == nil || !info.State.Running {
		st := "unknown"
		if info.State != nil {
			st = info.State.Status
		}
		return fmt.Errorf("%s: container is %s", d.Container, st)
	}
	return nil
}

func (d *Docker) exec(ctx context.Context, args []string, stdin io.Reader, out io.Writer, tty bool) (int, error) {
	ex, err := d.Client.ContainerExecCreate(ctx, d.Container, container.ExecOptions{
		Cmd: args, AttachStdout: true, AttachStderr: true, AttachStdin: stdin != nil, Tty: tty,
	})
	if err != nil {
		return 0, fmt.Errorf("%s: docker exec: %w", d.Container, err)
	}
	hj, err := d.Client.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{Tty: tty})
	if err != nil {
		return 0, fmt.Errorf("%s: docker exec attach: %w", d.Container, err)
	}
	defer hj.Close()
	if stdin != nil {
		go func() {
			io.Copy(hj.Conn, stdin)
			hj.CloseWrite()
		}()
	}
	if out == nil {
		out = io.Discard
	}
	done := make(chan error, 1)
	go func() {
		var err error
		if tty {
			_, err = io.Copy(out, hj.Reader)
		} else {
			_, err = stdcopy.StdCopy(out, out, hj.Reader)
		}
		done <- err
	}()
	select {
	case err = <-done:
	case <-ctx.Done():
		return 0, fmt.Errorf("%s: %w", d.Container, ctx.Err())
	}
	if err != nil {
		return 0, fmt.Errorf("%s: docker exec output: %w", d.Container, err)
	}
	insp, err := d.Client.ContainerExecInspect(ctx, ex.ID)
	if err != nil {
		return 0, fmt.Errorf("%s: docker exec inspect: %w", d.Container, err)
	}
	return insp.ExitCode, nil
}

func (d *Docker) Run(ctx context.Context, cmd string, env map[string]string, out io.Writer) error {
	w, t := outputs(out)
	code, err := d.exec(ctx, ShellArgs(Script(cmd, env), true), nil, w, false)
	if err != nil {
		return err
	}
	if code != 0 {
		return &ExitError{Host: d.Container, Cmd: cmd, Code: code, Output: t.String()}
	}
	return nil
}

func (d *Docker) sh(ctx context.Context, cmd string) (string, error) {
	var b bytes.Buffer
	code, err := d.exec(ctx, []string{"sh", "-c", cmd}, nil, &b, false)
	if err != nil {
		return "", err
	}
	if code != 0 {
		return "", &ExitError{Host: d.Container, Cmd: cmd, Code: code, Output: strings.TrimSpace(b.String())}
	}
	return b.String(), nil
}

func (d *Docker) remoteHome(ctx context.Context) (string, error) {
	d.mu.Lock()
	h := d.home
	d.mu.Unlock()
	if h != "" {
		return h, nil
	}
	out, err := d.sh(ctx, `printf %s "$HOME"`)
	if err != nil {
		return "", err
	}
	if h = strings.TrimSpace(out); h == "" {
		h = "/"
	}
	d.mu.Lock()
	d.home = h
	d.mu.Unlock()
	return h, nil
}

// Upload sends a tar of local to the container.
func (d *Docker) Upload(ctx context.Context, local, remote string, opt SyncOptions) error {
	local = HomePath(local, localHome())
	st, err := os.Stat(local)
	if err != nil {
		return err
	}
	home, err := d.remoteHome(ctx)
	if err != nil {
		return err
	}
	remote = HomePath(remote, home)
	dir, name := remote, ""
	if !st.IsDir() {
		if out, err := d.sh(ctx, "test -d "+Quote(remote)+" && echo dir"); err == nil && strings.TrimSpace(out) == "dir" {
			name = filepath.Base(local)
		} else {
			dir, name = path.Dir(remote), path.Base(remote)
		}
	}
	if _, err := d.sh(ctx, "mkdir -p "+Quote(dir)); err != nil {
		return err
	}
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		var err error
		if name != "" {
			err = tarFile(tw, local, name, st)
		} else {
			err = walkSource(local, opt, func(rel string, info fs.FileInfo) error {
				if rel == "." {
					return nil
				}
				return tarFile(tw, filepath.Join(local, filepath.FromSlash(rel)), rel, info)
			})
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	if err := d.Client.CopyToContainer(ctx, d.Container, dir, pr, container.CopyToContainerOptions{}); err != nil {
		pr.CloseWithError(err)
		return fmt.Errorf("%s: copy to %s: %w", d.Container, remote, err)
	}
	return nil
}

func tarFile(tw *tar.Writer, src, name string, info fs.FileInfo) error {
	link := ""
	if info.Mode()&fs.ModeSymlink != 0 {
		var err error
		if link, err = os.Readlink(src); err != nil {
			return err
		}
	}
	h, err := tar.FileInfoHeader(info, link)
	if err != nil {
		return err
	}
	h.Name = name
	if info.IsDir() {
		h.Name += "/"
	}
	h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return nil
	}
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(tw, f)
	return err
}

// Download unpacks the container's archive of remote into local.
func (d *Docker) Download(ctx context.Context, remote, local string) error {
	local = HomePath(local, localHome())
	home, err := d.remoteHome(ctx)
	if err != nil {
		return err
	}
	remote = strings.TrimSuffix(HomePath(remote, home), "/")
	rc, stat, err := d.Client.CopyFromContainer(ctx, d.Container, remote)
	if err != nil {
		return fmt.Errorf("%s: copy from %s: %w", d.Container, remote, err)
	}
	defer rc.Close()
	base := path.Base(remote)
	if !stat.Mode.IsDir() {
		if fi, err := os.Stat(local); err == nil && fi.IsDir() {
			local = filepath.Join(local, base)
		}
	}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: copy from %s: %w", d.Container, remote, err)
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(path.Clean(h.Name), base), "/")
		if strings.HasPrefix(rel, "../") || rel == ".." {
			return fmt.Errorf("%s: copy from %s: unsafe path %q", d.Container, remote, h.Name)
		}
		dst := local
		if rel != "" {
			dst = filepath.Join(local, filepath.FromSlash(rel))
		}
		mode := fs.FileMode(h.Mode).Perm()
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
			os.Chmod(dst, mode)
		case tar.TypeSymlink:
			os.MkdirAll(filepath.Dir(dst), 0o755)
			os.Remove(dst)
			if err := os.Symlink(h.Linkname, dst); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, tr); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			os.Chmod(dst, mode)
		}
	}
}

func (d *Docker) Interactive(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	args := []string{"bash", "--login"}
	if cmd != "" {
		args = ShellArgs(cmd, true)
	}
	tty := false
	if f, ok := stdin.(*os.File); ok {
		if restore, _, _, ok := makeRaw(f); ok {
			defer restore()
			tty = true
		}
	}
	code, err := d.exec(ctx, args, stdin, stdout, tty)
	if err != nil {
		return err
	}
	if code != 0 {
		return &ExitError{Host: d.Container, Cmd: cmd, Code: code}
	}
	return nil
}

func (d *Docker) Close() error { return nil }
