package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// ErrLocked is what errors.Is matches when another run holds the state lock.
var ErrLocked = errors.New("state is locked")

// LockInfo says who holds a state lock. It is written into the lock file by
// the holder; the lock itself is an flock(2) on that file, which the kernel
// releases when the holder exits, even on kill -9. So a crashed run never
// leaves a stale lock behind, and no force-unlock is needed on a local disk.
type LockInfo struct {
	PID       int       `json:"pid"`
	Host      string    `json:"host"`
	Operation string    `json:"operation"` // apply, rollback
	Since     time.Time `json:"since"`
	// Backend is the server process holding the advisory lock of the
	// postgres backend (pg_locks.pid); 0 for the file backend.
	Backend int `json:"backend_pid,omitempty"`
}

// describe is "pid 4242 on db-admin-1 since ... (pgshift apply)".
func (h *LockInfo) describe() string {
	if h == nil {
		return "another pgshift process"
	}
	if h.PID == 0 {
		return fmt.Sprintf("server backend %d (no pgshift holder recorded)", h.Backend)
	}
	s := fmt.Sprintf("pid %d on %s since %s (pgshift %s)", h.PID, h.Host, h.Since.UTC().Format(time.RFC3339), h.Operation)
	if h.Backend != 0 {
		s += fmt.Sprintf(" through server backend %d", h.Backend)
	}
	return s
}

// String is how messages name a holder.
func (h *LockInfo) String() string { return h.describe() }

// LockedError is returned when the state is locked by another process.
type LockedError struct {
	LockFile string    // the lock file; for the postgres backend, where the state is
	Holder   *LockInfo // nil when the holder had not yet written its info
	Postgres bool      // an advisory lock of the postgres backend
}

func (e *LockedError) Error() string {
	who := e.Holder.describe()
	if e.Postgres {
		return fmt.Sprintf("%s is locked by %s: wait for it to finish. "+
			"The lock (a session advisory lock on the state's database) is released when that process exits or its connection ends, even if it is killed; "+
			"if it hangs, stop that process, or end its session with pgshift force-unlock", e.LockFile, who)
	}
	return fmt.Sprintf("state is locked by %s: wait for it to finish. "+
		"The lock (an flock on %s) is released when that process exits, even if it is killed; "+
		"if it hangs, stop that process. On a network filesystem without flock support, "+
		"make sure no pgshift runs and run pgshift force-unlock, which removes %s", who, e.LockFile, e.LockFile)
}

func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// Lock is a held state lock.
type Lock struct {
	f  *os.File // the file backend's flocked file
	pg *pgLock  // the postgres backend's advisory lock
}

// LockPath is the lock file of a state file.
func LockPath(statePath string) string { return statePath + ".lock" }

// AcquireLock takes the exclusive lock of a state (a file or a postgres
// location), retrying until timeout (0: one try), and records who holds it.
func AcquireLock(statePath, operation string, timeout time.Duration) (*Lock, error) {
	b, err := backendOf(statePath)
	if err != nil {
		return nil, err
	}
	return b.lock(operation, timeout)
}

func acquireFileLock(statePath, operation string, timeout time.Duration) (*Lock, error) {
	path := LockPath(statePath)
	deadline := time.Now().Add(timeout)
	var f *os.File
	for {
		var err error
		f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("open lock file %s: %w", path, err)
		}
		if testHookLockFileOpened != nil {
			testHookLockFileOpened()
		}
		if err := flockUntil(f, path, deadline); err != nil {
			f.Close()
			return nil, err
		}
		// A force-unlock may have removed the file between the open and the
		// flock: a lock on a file no longer at path is no lock (the next
		// run creates a new file and locks that). Try again on the new one.
		if sameFile(f, path) {
			break
		}
		f.Close()
	}
	host, _ := os.Hostname()
	info, _ := json.Marshal(LockInfo{PID: os.Getpid(), Host: host, Operation: operation, Since: time.Now().UTC().Truncate(time.Second)})
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt(append(info, '\n'), 0)
		_ = f.Sync()
	}
	return &Lock{f: f}, nil
}

// flockUntil takes the exclusive flock of f (the lock file at path),
// retrying until deadline; held by another process past it is a
// *LockedError naming the holder.
func flockUntil(f *os.File, path string, deadline time.Time) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("lock %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			return &LockedError{LockFile: path, Holder: readLockInfo(path)}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sameFile says whether the open file f is still the file at path (same
// device and inode): false once path was removed or replaced.
func sameFile(f *os.File, path string) bool {
	var open, named syscall.Stat_t
	if syscall.Fstat(int(f.Fd()), &open) != nil || syscall.Stat(path, &named) != nil {
		return false
	}
	return open.Dev == named.Dev && open.Ino == named.Ino
}

// Test hooks: run between the steps of the file lock whose interleaving
// with another process matters (nil outside tests).
var (
	testHookLockFileOpened   func() // acquireFileLock: the file is open, not yet flocked
	testHookBeforeLockUnlink func() // fileBackend.forceUnlock: the lock was seen free, the file not yet removed
)

// Release clears the holder info and unlocks.
func (l *Lock) Release() error {
	if l == nil {
		return nil
	}
	if l.pg != nil {
		return l.pg.release()
	}
	if l.f == nil {
		return nil
	}
	_ = l.f.Truncate(0)
	err := syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	return err
}

// LockHolder reports who holds a state's lock right now, if anyone. For a
// file it probes with a shared lock that it drops at once; for the
// postgres backend it looks the advisory lock up in pg_locks (a server it
// cannot reach: not held, as far as it can tell).
func LockHolder(statePath string) (*LockInfo, bool) {
	info, held, _ := LockStatus(statePath)
	return info, held
}

// LockStatus is LockHolder with the reason it could not tell, if any.
func LockStatus(statePath string) (*LockInfo, bool, error) {
	b, err := backendOf(statePath)
	if err != nil {
		return nil, false, err
	}
	return b.holder()
}

// ForceUnlock frees a state's lock. For a file it removes a lock file no
// process holds (a held one is a *LockedError: stop that process); for
// the postgres backend it ends the server session holding the advisory
// lock, only if it is still the one seen (from LockHolder, shown to the
// user), and waits until the lock is free. seen nil: the lock was seen
// free, and only a holder record left behind is cleared.
func ForceUnlock(statePath string, seen *LockInfo) error {
	b, err := backendOf(statePath)
	if err != nil {
		return err
	}
	return b.forceUnlock(seen)
}

func fileLockHolder(statePath string) (*LockInfo, bool) {
	path := LockPath(statePath)
	f, err := os.Open(path)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err == nil {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return nil, false
	}
	return readLockInfo(path), true
}

func readLockInfo(path string) *LockInfo {
	data, err := os.ReadFile(path)
	if err != nil || len(data) == 0 {
		return nil
	}
	var info LockInfo
	if json.Unmarshal(data, &info) != nil {
		return nil
	}
	return &info
}
