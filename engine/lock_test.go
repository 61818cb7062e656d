package engine

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// holdOrRefuse takes the lock of path without waiting: the lock, or nil
// when refused as locked (any other error fails the test).
func holdOrRefuse(t *testing.T, path string) *Lock {
	t.Helper()
	l, err := AcquireLock(path, "apply", 0)
	if err != nil {
		if !errors.Is(err, ErrLocked) {
			t.Fatalf("AcquireLock: %v, want the lock or ErrLocked", err)
		}
		return nil
	}
	t.Cleanup(func() { l.Release() })
	return l
}

// TestFileForceUnlockHoldsTheLockWhileRemoving: a run taking the lock
// between force-unlock's look and its removal of the lock file must not
// end up holding a removed file while the next run creates a new one and
// holds the lock too.
func TestFileForceUnlockHoldsTheLockWhileRemoving(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.json")
	// A lock file left behind, held by no one.
	l, err := AcquireLock(path, "apply", 0)
	if err != nil {
		t.Fatal(err)
	}
	l.Release()

	var inWindow *Lock
	testHookBeforeLockUnlink = func() { inWindow = holdOrRefuse(t, path) }
	err = ForceUnlock(path, nil)
	testHookBeforeLockUnlink = nil
	if err != nil {
		t.Fatalf("force-unlock of a free lock: %v", err)
	}
	next := holdOrRefuse(t, path)
	switch {
	case inWindow != nil && next != nil:
		t.Fatal("two runs hold the lock at once: the one that took it while force-unlock removed the file, and the next one")
	case next == nil:
		t.Fatal("the lock is not free after force-unlock")
	}
	if info, held := LockHolder(path); !held || info == nil || info.PID != os.Getpid() {
		t.Fatalf("LockHolder after force-unlock and a new run: %+v, %v", info, held)
	}
}

// TestFileLockOnARemovedFileIsNotHeld: a run that opened the lock file
// just before a force-unlock removed it takes the new file, so that the
// next run is refused instead of holding the lock beside it.
func TestFileLockOnARemovedFileIsNotHeld(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.json")
	l, err := AcquireLock(path, "apply", 0)
	if err != nil {
		t.Fatal(err)
	}
	l.Release()

	testHookLockFileOpened = func() {
		testHookLockFileOpened = nil
		if err := ForceUnlock(path, nil); err != nil {
			t.Errorf("force-unlock of a free lock: %v", err)
		}
	}
	first := holdOrRefuse(t, path)
	testHookLockFileOpened = nil
	if first == nil {
		t.Fatal("the lock was refused although no one held it")
	}
	if second := holdOrRefuse(t, path); second != nil {
		t.Fatal("two runs hold the lock at once: the first holds the flock of the removed file, the second the new one")
	}
	if _, held := LockHolder(path); !held {
		t.Fatal("LockHolder says free while a run holds the lock")
	}
}
