package pgtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// daemon is a foreground server process (PgBouncer, HAProxy) owned by a test: output in a log file
// of its instance folder, stopped in cleanup.
type daemon struct {
	name    string // "PgBouncer", for messages
	dir     string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// start runs the program, waits until it listens on port, and says whether a failure looks like
// the port was taken (worth another port).
func (d *daemon) start(cmd *exec.Cmd, port int) (portTaken bool, err error) {
	logFile, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return false, err
	}
	defer logFile.Close() // the child holds its own copy
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// Its own process group: a Ctrl-C at the terminal reaches the test, which then stops it.
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		return false, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	d.cmd = cmd
	d.exited = make(chan struct{})
	go func() { _ = cmd.Wait(); close(d.exited) }()
	if err := waitListening(port, d.exited, time.Minute); err != nil {
		d.stop()
		log := logTail(d.logPath, 4<<10)
		taken := strings.Contains(log, "in use") || strings.Contains(log, "cannot bind")
		return taken, fmt.Errorf("%s on port %d: %v\n%s log:\n%s", d.name, port, err, d.name, log)
	}
	return false, nil
}

// stop terminates the process (SIGTERM, then SIGKILL) and anything left in its folder.
func (d *daemon) stop() {
	if d.cmd != nil && d.cmd.Process != nil {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(10 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
	}
	killProcessesIn(d.dir, 10*time.Second)
}

// cleanup stops the daemon, prints its log when the test failed and removes its folder.
func (d *daemon) cleanup(t testing.TB, port int) {
	d.stop()
	logOnFailure(t, fmt.Sprintf("%s on port %d", d.name, port), d.logPath)
	if err := os.RemoveAll(d.dir); err != nil {
		t.Logf("pgtest: remove %s: %v", d.dir, err)
	}
}

// writeConfig writes a file the server user can read (it may run as postgres).
func writeConfig(dir, name, content string) (string, error) {
	path := filepath.Join(dir, name)
	return path, os.WriteFile(path, []byte(content), 0o644)
}
