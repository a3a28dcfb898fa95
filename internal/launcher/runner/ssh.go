package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Sync modes of SSHConfig.Sync.
const (
	SyncAuto  = ""      // rsync where both ends have it, else SFTP
	SyncRsync = "rsync" // rsync only
	SyncSFTP  = "sftp"  // SFTP only
)

// SSHConfig says how to reach a host.
type SSHConfig struct {
	Host string
	Port int // default 22
	User string
	// KeyPath is auth.ssh_private_key ("~/" is this machine's home).
	KeyPath string
	// KnownHostsFile, when set, is checked strictly; when empty any host
	// key is accepted and nothing is recorded, like Ray's
	// StrictHostKeyChecking=no with UserKnownHostsFile=/dev/null.
	KnownHostsFile string
	// ProxyCommand is auth.ssh_proxy_command (%h and %p are replaced).
	ProxyCommand string
	// ConnectTimeout bounds one connection attempt (default 10s).
	ConnectTimeout time.Duration
	// NormalShell runs commands with `bash -c` instead of a login shell.
	NormalShell bool
	// Sync picks the file transfer (default SyncAuto; $GORAY_LAUNCHER_SYNC
	// overrides it).
	Sync string
}

// SSH runs commands on a host over SSH. It keeps one connection and
// reconnects when it breaks.
type SSH struct {
	cfg    SSHConfig
	signer ssh.Signer
	hostCB ssh.HostKeyCallback

	mu     sync.Mutex
	client *ssh.Client
	home   string
	rsync  *bool // the host has rsync
}

// NewSSH reads the key; a key that cannot be read or parsed is an error
// wrapping ErrPermanent that names the file.
func NewSSH(cfg SSHConfig) (*SSH, error) {
	if cfg.Port == 0 {
		cfg.Port = 22
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if v := os.Getenv("GORAY_LAUNCHER_SYNC"); v != "" {
		cfg.Sync = v
	}
	if cfg.User == "" {
		return nil, Permanent(fmt.Errorf("%s: auth.ssh_user is empty", cfg.Host))
	}
	s := &SSH{cfg: cfg, hostCB: ssh.InsecureIgnoreHostKey()}
	if cfg.KeyPath == "" {
		return nil, Permanent(fmt.Errorf("%s: auth.ssh_private_key is not set", cfg.Host))
	}
	keyPath := HomePath(cfg.KeyPath, localHome())
	pem, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, Permanent(fmt.Errorf("auth.ssh_private_key %s (needed to reach %s over SSH): %w", keyPath, cfg.Host, pathErr(err)))
	}
	if s.signer, err = ssh.ParsePrivateKey(pem); err != nil {
		return nil, Permanent(fmt.Errorf("auth.ssh_private_key %s: %w", keyPath, err))
	}
	s.cfg.KeyPath = keyPath
	if cfg.KnownHostsFile != "" {
		if s.hostCB, err = knownhosts.New(HomePath(cfg.KnownHostsFile, localHome())); err != nil {
			return nil, Permanent(fmt.Errorf("known hosts %s: %w", cfg.KnownHostsFile, err))
		}
	}
	return s, nil
}

func (s *SSH) Host() string { return s.cfg.Host }

// pathErr drops the path of an *fs.PathError (the message names it).
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// sshError prefixes err with the host and "ssh: ", unless the message
// already starts with "ssh: " (golang.org/x/crypto/ssh's do).
func (s *SSH) sshError(err error) error {
	if strings.HasPrefix(err.Error(), "ssh: ") {
		return fmt.Errorf("%s: %w", s.cfg.Host, err)
	}
	return fmt.Errorf("%s: ssh: %w", s.cfg.Host, err)
}

func (s *SSH) addr() string { return net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.Port)) }

// conn returns the connection, dialing it when needed.
func (s *SSH) conn(ctx context.Context) (*ssh.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client != nil {
		return s.client, nil
	}
	var (
		c   net.Conn
		err error
	)
	if s.cfg.ProxyCommand != "" {
		c, err = proxyConn(s.cfg.ProxyCommand, s.cfg.Host, s.cfg.Port)
	} else {
		d := net.Dialer{Timeout: s.cfg.ConnectTimeout}
		c, err = d.DialContext(ctx, "tcp", s.addr())
	}
	if err != nil {
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			// A name that does not resolve will not start to while we
			// retry: say so at once.
			return nil, Permanent(fmt.Errorf("%s: ssh: %w", s.cfg.Host, err))
		}
		return nil, s.sshError(err)
	}
	c.SetDeadline(time.Now().Add(s.cfg.ConnectTimeout))
	cc, chans, reqs, err := ssh.NewClientConn(c, s.addr(), &ssh.ClientConfig{
		User: s.cfg.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(s.signer)},
		HostKeyCallback: s.hostCB, Timeout: s.cfg.ConnectTimeout,
	})
	if err != nil {
		c.Close()
		var kerr *knownhosts.KeyError
		switch {
		case errors.As(err, &kerr) && len(kerr.Want) > 0:
			return nil, Permanent(fmt.Errorf("%s: the host key of %s does not match the one in the known_hosts file %s (GORAY_SSH_KNOWN_HOSTS): %w",
				s.cfg.Host, s.cfg.Host, s.cfg.KnownHostsFile, err))
		case errors.As(err, &kerr):
			return nil, Permanent(fmt.Errorf("%s: the host key of %s is not in the known_hosts file %s (GORAY_SSH_KNOWN_HOSTS): %w",
				s.cfg.Host, s.cfg.Host, s.cfg.KnownHostsFile, err))
		case strings.Contains(err.Error(), "unable to authenticate"):
			return nil, Permanent(fmt.Errorf("%s: the host refused login as %s with the key %s: %w", s.cfg.Host, s.cfg.User, s.cfg.KeyPath, err))
		}
		return nil, s.sshError(err)
	}
	c.SetDeadline(time.Time{})
	s.client = ssh.NewClient(cc, chans, reqs)
	go func(cl *ssh.Client) { // forget a connection once it breaks
		cl.Wait()
		s.mu.Lock()
		if s.client == cl {
			s.client = nil
		}
		s.mu.Unlock()
	}(s.client)
	return s.client, nil
}

// session opens a session, reconnecting once if the connection broke.
func (s *SSH) session(ctx context.Context) (*ssh.Session, error) {
	for i := 0; ; i++ {
		cl, err := s.conn(ctx)
		if err != nil {
			return nil, err
		}
		sess, err := cl.NewSession()
		if err == nil {
			return sess, nil
		}
		cl.Close()
		s.mu.Lock()
		if s.client == cl {
			s.client = nil
		}
		s.mu.Unlock()
		if i > 0 {
			return nil, fmt.Errorf("%s: ssh session: %w", s.cfg.Host, err)
		}
	}
}

func (s *SSH) Ready(ctx context.Context) error {
	sess, err := s.session(ctx)
	if err != nil {
		return err
	}
	defer sess.Close()
	if err := sess.Run("true"); err != nil {
		return s.sshError(err)
	}
	return nil
}

// raw runs a command line as given (the user's shell parses it).
func (s *SSH) raw(ctx context.Context, line string, stdin io.Reader, out io.Writer) error {
	sess, err := s.session(ctx)
	if err != nil {
		return err
	}
	defer sess.Close()
	w, t := outputs(out)
	sess.Stdout, sess.Stderr, sess.Stdin = w, w, stdin
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			sess.Signal(ssh.SIGKILL)
			sess.Close()
		case <-done:
		}
	}()
	err = sess.Run(line)
	var ee *ssh.ExitError
	switch {
	case errors.As(err, &ee):
		return &ExitError{Host: s.cfg.Host, Cmd: line, Code: ee.ExitStatus(), Output: t.String()}
	case ctx.Err() != nil:
		return fmt.Errorf("%s: %w", s.cfg.Host, ctx.Err())
	case err != nil:
		return s.sshError(err)
	}
	return nil
}

func (s *SSH) Run(ctx context.Context, cmd string, env map[string]string, out io.Writer) error {
	err := s.raw(ctx, ShellLine(Script(cmd, env), !s.cfg.NormalShell), nil, out)
	var ee *ExitError
	if errors.As(err, &ee) {
		ee.Cmd = cmd
	}
	return err
}

// remoteHome is the login user's $HOME on the host.
func (s *SSH) remoteHome(ctx context.Context) (string, error) {
	s.mu.Lock()
	h := s.home
	s.mu.Unlock()
	if h != "" {
		return h, nil
	}
	var b bytes.Buffer
	if err := s.raw(ctx, `printf %s "$HOME"`, nil, &b); err != nil {
		return "", err
	}
	h = strings.TrimSpace(b.String())
	if h == "" {
		return "", fmt.Errorf("%s: $HOME is empty", s.cfg.Host)
	}
	s.mu.Lock()
	s.home = h
	s.mu.Unlock()
	return h, nil
}

// useRsync reports whether files go by rsync: both ends have rsync (and
// this end ssh), unless a mode forces one.
func (s *SSH) useRsync(ctx context.Context) (bool, error) {
	switch s.cfg.Sync {
	case SyncSFTP:
		return false, nil
	case SyncAuto, SyncRsync:
	default:
		return false, fmt.Errorf("file sync mode %q: want rsync or sftp", s.cfg.Sync)
	}
	_, e1 := exec.LookPath("rsync")
	_, e2 := exec.LookPath("ssh")
	local := e1 == nil && e2 == nil
	if !local {
		if s.cfg.Sync == SyncRsync {
			return false, fmt.Errorf("rsync and ssh are needed on this machine for file sync")
		}
		return false, nil
	}
	s.mu.Lock()
	r := s.rsync
	s.mu.Unlock()
	if r == nil {
		has := s.raw(ctx, "command -v rsync", nil, nil) == nil
		r = &has
		s.mu.Lock()
		s.rsync = r
		s.mu.Unlock()
	}
	if !*r && s.cfg.Sync == SyncRsync {
		return false, fmt.Errorf("%s has no rsync", s.cfg.Host)
	}
	return *r, nil
}

// sshCommand is the ssh client command line rsync runs.
func (s *SSH) sshCommand() string {
	args := []string{"ssh", "-i", s.cfg.KeyPath, "-p", strconv.Itoa(s.cfg.Port), "-o", "IdentitiesOnly=yes",
		"-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=" + strconv.Itoa(int(s.cfg.ConnectTimeout/time.Second))}
	if s.cfg.KnownHostsFile != "" {
		args = append(args, "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile="+HomePath(s.cfg.KnownHostsFile, localHome()))
	} else {
		args = append(args, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null")
	}
	if s.cfg.ProxyCommand != "" {
		args = append(args, "-o", "ProxyCommand="+s.cfg.ProxyCommand)
	}
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = Quote(a)
	}
	return strings.Join(q, " ")
}

func (s *SSH) rsyncRun(ctx context.Context, args ...string) error {
	full := append([]string{"-az", "-e", s.sshCommand()}, args...)
	c := exec.CommandContext(ctx, "rsync", full...)
	var out tail
	out.n = 4096
	c.Stdout, c.Stderr = &out, &out
	if err := c.Run(); err != nil {
		return fmt.Errorf("%s: rsync %s: %w: %s", s.cfg.Host, strings.Join(args[len(args)-2:], " "), err, out.String())
	}
	return nil
}

func (s *SSH) remoteSpec(p string) string {
	host := s.cfg.Host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return s.cfg.User + "@" + host + ":" + p
}

func (s *SSH) Upload(ctx context.Context, local, remote string, opt SyncOptions) error {
	local = HomePath(local, localHome())
	st, err := os.Stat(local)
	if err != nil {
		return err
	}
	home, err := s.remoteHome(ctx)
	if err != nil {
		return err
	}
	remote = HomePath(remote, home)
	rs, err := s.useRsync(ctx)
	if err != nil {
		return err
	}
	if !rs {
		return s.sftpUpload(ctx, local, remote, st, opt)
	}
	dir := path.Dir(remote)
	if st.IsDir() {
		dir = remote
		local = strings.TrimSuffix(local, "/") + "/"
		remote = strings.TrimSuffix(remote, "/") + "/"
	}
	if err := s.raw(ctx, "mkdir -p "+Quote(dir), nil, nil); err != nil {
		return err
	}
	return s.rsyncRun(ctx, append(rsyncFilterArgs(opt), local, s.remoteSpec(remote))...)
}

func (s *SSH) Download(ctx context.Context, remote, local string) error {
	local = HomePath(local, localHome())
	home, err := s.remoteHome(ctx)
	if err != nil {
		return err
	}
	remote = HomePath(remote, home)
	rs, err := s.useRsync(ctx)
	if err != nil {
		return err
	}
	if !rs {
		return s.sftpDownload(ctx, remote, local)
	}
	isDir := s.raw(ctx, "test -d "+Quote(remote), nil, nil) == nil
	if isDir {
		remote = strings.TrimSuffix(remote, "/") + "/"
		local = strings.TrimSuffix(local, "/") + "/"
		if err := os.MkdirAll(local, 0o755); err != nil {
			return err
		}
	} else if err := os.MkdirAll(filepath.Dir(local), 0o755); err != nil {
		return err
	}
	return s.rsyncRun(ctx, s.remoteSpec(remote), local)
}

func (s *SSH) sftpClient(ctx context.Context) (*sftp.Client, error) {
	cl, err := s.conn(ctx)
	if err != nil {
		return nil, err
	}
	c, err := sftp.NewClient(cl)
	if err != nil {
		return nil, fmt.Errorf("%s: sftp: %w", s.cfg.Host, err)
	}
	return c, nil
}

func (s *SSH) sftpUpload(ctx context.Context, local, remote string, st fs.FileInfo, opt SyncOptions) error {
	c, err := s.sftpClient(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	put := func(src, dst string, mode fs.FileMode) error {
		in, err := os.Open(src)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := c.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
		if err != nil {
			return fmt.Errorf("%s: sftp create %s: %w", s.cfg.Host, dst, err)
		}
		if _, err := out.ReadFrom(in); err != nil {
			out.Close()
			return fmt.Errorf("%s: sftp write %s: %w", s.cfg.Host, dst, err)
		}
		if err := out.Close(); err != nil {
			return err
		}
		return c.Chmod(dst, mode.Perm())
	}
	if !st.IsDir() {
		if fi, err := c.Stat(remote); err == nil && fi.IsDir() {
			remote = path.Join(remote, filepath.Base(local))
		}
		if err := c.MkdirAll(path.Dir(remote)); err != nil {
			return fmt.Errorf("%s: sftp mkdir %s: %w", s.cfg.Host, path.Dir(remote), err)
		}
		return put(local, remote, st.Mode())
	}
	return walkSource(local, opt, func(rel string, info fs.FileInfo) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		dst := path.Join(remote, rel)
		src := filepath.Join(local, filepath.FromSlash(rel))
		switch {
		case info.IsDir():
			if err := c.MkdirAll(dst); err != nil {
				return fmt.Errorf("%s: sftp mkdir %s: %w", s.cfg.Host, dst, err)
			}
			return c.Chmod(dst, info.Mode().Perm())
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(src)
			if err != nil {
				return err
			}
			c.Remove(dst)
			return c.Symlink(target, dst)
		case info.Mode().IsRegular():
			return put(src, dst, info.Mode())
		}
		return nil
	})
}

func (s *SSH) sftpDownload(ctx context.Context, remote, local string) error {
	c, err := s.sftpClient(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	get := func(src, dst string, mode fs.FileMode) error {
		in, err := c.Open(src)
		if err != nil {
			return fmt.Errorf("%s: sftp open %s: %w", s.cfg.Host, src, err)
		}
		defer in.Close()
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode.Perm())
		if err != nil {
			return err
		}
		if _, err := in.WriteTo(out); err != nil {
			out.Close()
			return err
		}
		if err := out.Close(); err != nil {
			return err
		}
		return os.Chmod(dst, mode.Perm())
	}
	st, err := c.Stat(remote)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", s.cfg.Host, remote, err)
	}
	if !st.IsDir() {
		if fi, err := os.Stat(local); err == nil && fi.IsDir() {
			local = filepath.Join(local, path.Base(remote))
		}
		return get(remote, local, st.Mode())
	}
	w := c.Walk(remote)
	for w.Step() {
		if err := w.Err(); err != nil {
			return fmt.Errorf("%s: sftp walk: %w", s.cfg.Host, err)
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(w.Path(), remote), "/")
		dst := filepath.Join(local, filepath.FromSlash(rel))
		info := w.Stat()
		switch {
		case info.IsDir():
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
			os.Chmod(dst, info.Mode().Perm())
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := c.ReadLink(w.Path())
			if err != nil {
				return err
			}
			os.Remove(dst)
			if err := os.Symlink(target, dst); err != nil {
				return err
			}
		case info.Mode().IsRegular():
			if err := get(w.Path(), dst, info.Mode()); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *SSH) Interactive(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	sess, err := s.session(ctx)
	if err != nil {
		return err
	}
	defer sess.Close()
	sess.Stdin, sess.Stdout, sess.Stderr = stdin, stdout, stderr
	if f, ok := stdin.(*os.File); ok {
		if restore, w, h, ok := makeRaw(f); ok {
			defer restore()
			if err := sess.RequestPty(termName(), h, w, ssh.TerminalModes{ssh.ECHO: 1}); err != nil {
				return fmt.Errorf("%s: ssh pty: %w", s.cfg.Host, err)
			}
		}
	}
	line := "exec bash --login"
	if s.cfg.NormalShell {
		line = "exec bash"
	}
	if cmd != "" {
		line = ShellLine(cmd, !s.cfg.NormalShell)
	}
	err = sess.Run(line)
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		return &ExitError{Host: s.cfg.Host, Cmd: cmd, Code: ee.ExitStatus()}
	}
	if err != nil && !errors.Is(err, io.EOF) {
		var missing *ssh.ExitMissingError
		if errors.As(err, &missing) {
			return nil
		}
		return s.sshError(err)
	}
	return nil
}

func (s *SSH) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client != nil {
		err := s.client.Close()
		s.client = nil
		return err
	}
	return nil
}

func termName() string {
	if t := os.Getenv("TERM"); t != "" {
		return t
	}
	return "xterm"
}

// proxyConn runs a ProxyCommand and speaks SSH over its stdin and stdout.
func proxyConn(command, host string, port int) (net.Conn, error) {
	line := strings.NewReplacer("%h", host, "%p", strconv.Itoa(port), "%%", "%").Replace(command)
	c := exec.Command("sh", "-c", line)
	in, err := c.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := c.StdoutPipe()
	if err != nil {
		return nil, err
	}
	c.Stderr = os.Stderr
	if err := c.Start(); err != nil {
		return nil, fmt.Errorf("ssh_proxy_command %q: %w", line, err)
	}
	return &pipeConn{r: out, w: in, cmd: c}, nil
}

type pipeConn struct {
	r   io.ReadCloser
	w   io.WriteCloser
	cmd *exec.Cmd
}

func (p *pipeConn) Read(b []byte) (int, error)  { return p.r.Read(b) }
func (p *pipeConn) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p *pipeConn) Close() error {
	p.w.Close()
	p.r.Close()
	p.cmd.Process.Kill()
	p.cmd.Wait()
	return nil
}
func (p *pipeConn) LocalAddr() net.Addr                { return &net.UnixAddr{Name: "proxy", Net: "unix"} }
func (p *pipeConn) RemoteAddr() net.Addr               { return &net.UnixAddr{Name: "proxy", Net: "unix"} }
func (p *pipeConn) SetDeadline(t time.Time) error      { return nil }
func (p *pipeConn) SetReadDeadline(t time.Time) error  { return nil }
func (p *pipeConn) SetWriteDeadline(t time.Time) error { return nil }
