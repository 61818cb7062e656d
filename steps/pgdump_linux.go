package steps

import (
	"os/exec"
	"runtime"
	"syscall"
)

// runChild runs a client program (pg_dump, psql) so that it dies with
// pgshift: a killed apply must not leave a psql restoring behind the next
// run's back (its transaction rolls back when the connection drops). The
// death signal follows the thread that started the child, so the goroutine
// keeps that thread until the child has exited.
func runChild(cmd *exec.Cmd) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	return cmd.Run()
}
