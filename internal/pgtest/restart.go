package pgtest

import (
	"syscall"
	"testing"
	"time"
)

// Faults beyond a crash of the postmaster (Cluster.Kill): restarts of a
// server and of PgBouncer, as an operator or a supervisor would do them.

// RestartImmediate stops the cluster in immediate mode (no checkpoint, every
// session cut, crash recovery on start, as after a power loss of the server
// processes) and starts it again on the same port.
func (c *Cluster) RestartImmediate(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if out, err := c.pgCtl("restart", "-m", "immediate", "-l", c.logPath); err != nil {
		t.Fatalf("pgtest: restart (immediate) PostgreSQL %d on port %d: %v\n%s\nserver log:\n%s", c.Major, c.Port, err, out, logTail(c.logPath, 4<<10))
	}
}

// Kill sends SIGKILL to PgBouncer and waits until it has exited: its
// in-memory state (a PAUSE, client connections) is gone, its configuration
// file stays.
func (b *PgBouncer) Kill(t testing.TB) {
	t.Helper()
	if b.daemon.cmd == nil || b.daemon.cmd.Process == nil {
		t.Fatal("pgtest: kill PgBouncer: not started")
	}
	select {
	case <-b.daemon.exited:
		t.Fatalf("pgtest: kill PgBouncer on port %d: it had already exited", b.Port)
	default:
	}
	_ = b.daemon.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-b.daemon.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("pgtest: PgBouncer on port %d did not exit after SIGKILL", b.Port)
	}
}

// Start starts a killed PgBouncer again on the same port with its
// configuration file as it is now (a switch may have rewritten it).
func (b *PgBouncer) Start(t testing.TB) {
	t.Helper()
	select {
	case <-b.daemon.exited:
	default:
		t.Fatalf("pgtest: start PgBouncer on port %d: it is still running", b.Port)
	}
	bin, err := requireSystemBin("pgbouncer", "/usr/sbin/pgbouncer", "/usr/bin/pgbouncer", "/usr/local/bin/pgbouncer")
	if err != nil {
		t.Fatal(err)
	}
	u, err := lookupServerUser()
	if err != nil {
		t.Fatal(err)
	}
	// The port was ours a moment ago; another process may take it in
	// between, rarely: fail then rather than move clients elsewhere.
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := b.daemon.start(u.command(b.daemon.dir, bin, b.ConfigPath), b.Port)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgtest: start PgBouncer again on port %d: %v", b.Port, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
