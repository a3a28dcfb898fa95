// Package spawn starts child processes that must die with this one.
//
// Linux delivers a child's parent-death signal (Pdeathsig) when the
// thread that forked it exits, not the process; Go may end an OS thread
// (golang.org/issue/27505). Start forks from one locked thread that never
// exits, so Pdeathsig fires only when this process dies.
package spawn

import (
	"os/exec"
	"runtime"
	"sync"
)

type request struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	once sync.Once
	reqs chan request
)

// Start is cmd.Start on the spawning thread.
func Start(cmd *exec.Cmd) error {
	once.Do(func() {
		reqs = make(chan request)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as the process
			for r := range reqs {
				r.done <- r.cmd.Start()
			}
		}()
	})
	r := request{cmd: cmd, done: make(chan error, 1)}
	reqs <- r
	return <-r.done
}
