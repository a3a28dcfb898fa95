package runner

import (
	"os"

	"golang.org/x/sys/unix"
)

// makeRaw puts a terminal into raw mode for an interactive session and
// returns how to restore it and the terminal's size; ok is false when f is
// not a terminal.
func makeRaw(f *os.File) (restore func(), width, height int, ok bool) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, 0, 0, false
	}
	raw := *old
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN] = 1
	raw.Cc[unix.VTIME] = 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return nil, 0, 0, false
	}
	width, height = 80, 24
	if ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ); err == nil && ws.Col > 0 {
		width, height = int(ws.Col), int(ws.Row)
	}
	return func() { unix.IoctlSetTermios(fd, unix.TCSETS, old) }, width, height, true
}
