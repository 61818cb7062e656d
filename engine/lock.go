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
}

// LockedError is returned when the state is locked by another process.
type LockedError struct {
	LockFile string
	Holder   *LockInfo // nil when the holder had not yet written its info
}

func (e *LockedError) Error() string {
	who := "another pgshift process"
	if h := e.Holder; h != nil {
		who = fmt.Sprintf("pid %d on %s since %s (pgshift %s)", h.PID, h.Host, h.Since.UTC().Format(time.RFC3339), h.Operation)
	}
	return fmt.Sprintf("state is locked by %s: wait for it to finish. "+
		"The lock (an flock on %s) is released when that process exits, even if it is killed; "+
		"if it hangs, stop that process. On a network filesystem without flock support, "+
		"make sure no pgshift runs and delete %s", who, e.LockFile, e.LockFile)
}

func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// Lock is a held state lock.
type Lock struct {
	f *os.File
}

// LockPath is the lock file of a state file.
func LockPath(statePath string) string { return statePath + ".lock" }

// AcquireLock takes the exclusive lock of a state file, retrying until
// timeout (0: one try), and records who holds it.
func AcquireLock(statePath, operation string, timeout time.Duration) (*Lock, error) {
	path := LockPath(statePath)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file %s: %w", path, err)
	}
	deadline := time.Now().Add(timeout)
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			holder := readLockInfo(path)
			f.Close()
			return nil, &LockedError{LockFile: path, Holder: holder}
		}
		time.Sleep(100 * time.Millisecond)
	}
	host, _ := os.Hostname()
	info, _ := json.Marshal(LockInfo{PID: os.Getpid(), Host: host, Operation: operation, Since: time.Now().UTC().Truncate(time.Second)})
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt(append(info, '\n'), 0)
		_ = f.Sync()
	}
	return &Lock{f: f}, nil
}

// Release clears the holder info and unlocks.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
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

// LockHolder reports who holds a state's lock right now, if anyone. It
// probes with a shared lock that it drops at once.
func LockHolder(statePath string) (*LockInfo, bool) {
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
