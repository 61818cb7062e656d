package pgtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// serverUser is the account servers run as: the current user, or postgres when running as root
// (PostgreSQL and PgBouncer refuse root).
type serverUser struct {
	name     string
	uid, gid int
	switched bool // true when commands must drop to uid/gid
}

var (
	serverUserOnce sync.Once
	serverUserVal  serverUser
	serverUserErr  error
)

func lookupServerUser() (serverUser, error) {
	serverUserOnce.Do(func() {
		if os.Geteuid() != 0 {
			serverUserVal = serverUser{name: "current user", uid: os.Getuid(), gid: os.Getgid()}
			return
		}
		u, err := user.Lookup("postgres")
		if err != nil {
			serverUserErr = fmt.Errorf("tests run as root and PostgreSQL refuses root, but user postgres does not exist: run `make deps` (creates it)")
			return
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		serverUserVal = serverUser{name: "postgres", uid: uid, gid: gid, switched: true}
	})
	return serverUserVal, serverUserErr
}

// command prepares a program to run as the server user in dir.
func (u serverUser) command(dir, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	// A small, fixed environment: C messages (the rig reads logs), no PG* variables leaking in.
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C", "LC_ALL=C", "HOME=" + dir}
	if u.switched {
		cmd.Env = append(cmd.Env, "USER="+u.name, "LOGNAME="+u.name)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid)}}
	}
	return cmd
}

// chown hands a path the rig created to the server user.
func (u serverUser) chown(path string) error {
	if !u.switched {
		return nil
	}
	return os.Chown(path, u.uid, u.gid)
}

var (
	tempRootOnce sync.Once
	tempRootVal  string
	tempRootErr  error
)

// tempRoot is the folder holding every instance folder of the rig. It must be traversable by the
// server user: os.TempDir() unless TMPDIR points somewhere postgres cannot enter (say under
// /root), then /tmp; PGSHIFT_TMPDIR overrides. Leftovers of killed test processes are swept here.
func tempRoot() (string, error) {
	tempRootOnce.Do(func() {
		base := os.Getenv("PGSHIFT_TMPDIR")
		if base == "" {
			base = os.TempDir()
			if os.Geteuid() == 0 && !traversableByOthers(base) {
				base = "/tmp"
			}
		}
		root := filepath.Join(base, "pgshift-pgtest")
		if err := os.MkdirAll(root, 0o755); err != nil {
			tempRootErr = fmt.Errorf("create temp folder %s: %w", root, err)
			return
		}
		// Sticky and world-writable like /tmp: several users may run tests on one machine.
		_ = os.Chmod(root, os.ModeSticky|0o777)
		tempRootVal = root
		sweepLeftovers(root)
	})
	return tempRootVal, tempRootErr
}

// traversableByOthers reports whether every folder from path up to / has the x bit for others.
func traversableByOthers(path string) bool {
	p, err := filepath.Abs(path)
	if err != nil {
		return false
	}
	for {
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm()&0o001 == 0 {
			return false
		}
		parent := filepath.Dir(p)
		if parent == p {
			return true
		}
		p = parent
	}
}

// ownerFile names the test process that owns an instance folder; the sweep uses it.
const ownerFile = "owner.pid"

// newInstanceDir creates a world-traversable folder for one server, owned by this process.
func newInstanceDir(kind string) (string, error) {
	root, err := tempRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp(root, kind+"-")
	if err != nil {
		return "", fmt.Errorf("create temp folder under %s: %w", root, err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return "", err
	}
	return dir, nil
}

// sweepLeftovers kills servers and removes folders left by test processes that died without
// running their cleanups (a test binary killed on timeout, say).
func sweepLeftovers(root string) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range entries {
		dir := filepath.Join(root, e.Name())
		owner, err := readPidFile(filepath.Join(dir, ownerFile))
		if err != nil || processAlive(owner) {
			continue
		}
		killProcessesIn(dir, 10*time.Second)
		_ = os.RemoveAll(dir)
	}
}

// readPidFile reads the number on the first line of a pid file (postmaster.pid included).
func readPidFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s: no pid in %q", path, line)
	}
	return pid, nil
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// waitDeadOrZombie waits until pid has exited (reaped or not).
func waitDeadOrZombie(pid int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for processAlive(pid) && !isZombie(pid) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

// isZombie reports whether pid has exited but was not reaped yet.
func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...: comm may hold spaces, so look after the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}

// processesIn lists the processes whose working folder is dir or below it. Every process of a
// rig server runs there: PostgreSQL's in its data folder (the postmaster's children are session
// leaders of their own, so no process group holds them all), PgBouncer and HAProxy in their
// instance folder.
func processesIn(dir string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if err != nil {
			continue
		}
		cwd = strings.TrimSuffix(cwd, " (deleted)")
		if cwd == dir || strings.HasPrefix(cwd, dir+"/") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// waitProcessesGone waits until no process works in dir.
func waitProcessesGone(dir string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if len(processesIn(dir)) == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// killProcessesIn sends SIGKILL to every process working in dir until none is left.
func killProcessesIn(dir string, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for {
		pids := processesIn(dir)
		if len(pids) == 0 || time.Now().After(deadline) {
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var (
	portMu    sync.Mutex
	usedPorts = map[int]bool{}
)

// freePort picks a loopback port nobody listens on, never the same twice in this process. Another
// process may still take it before the server binds it: callers retry on a bind failure.
func freePort() (int, error) {
	portMu.Lock()
	defer portMu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("find a free loopback port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if !usedPorts[port] {
			usedPorts[port] = true
			return port, nil
		}
	}
	return 0, errors.New("find a free loopback port: every port offered was already handed out")
}

// waitListening waits until something accepts TCP connections on 127.0.0.1:port, or the process
// exits (exited is closed), or the timeout passes.
func waitListening(port int, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return nil
		}
		select {
		case <-exited:
			return errors.New("process exited before listening")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s after %s", addr, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logTail returns the end of a log file, for test output.
func logTail(path string, max int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	if len(b) > max {
		return "...\n" + string(b[len(b)-max:])
	}
	return string(b)
}

// logOnFailure prints a server's log in the test output when the test failed.
func logOnFailure(t testing.TB, what, path string) {
	if t.Failed() {
		t.Logf("pgtest: %s log (%s):\n%s", what, path, logTail(path, 64<<10))
	}
}

// execCommand prepares a client program run as the test's own user, without PG* variables from
// the environment changing where it connects.
func execCommand(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	return cmd
}

// TempDir returns a folder for files a server reads or writes (COPY files, configurations of your
// own): unlike t.TempDir, the server user can reach it. Removed in cleanup.
func TempDir(t testing.TB) string {
	t.Helper()
	dir, err := newInstanceDir("tmp")
	if err == nil {
		var u serverUser
		if u, err = lookupServerUser(); err == nil {
			err = u.chown(dir)
		}
	}
	if err != nil {
		t.Fatalf("pgtest: temp folder: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// ServerUserIDs is the uid and gid the rig runs servers as: postgres when
// the tests run as root, the current user otherwise. A test gives a file
// to it to check that a rewrite keeps an owner other than root.
func ServerUserIDs() (uid, gid int, err error) {
	u, err := lookupServerUser()
	return u.uid, u.gid, err
}
