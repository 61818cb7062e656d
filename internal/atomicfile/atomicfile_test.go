package atomicfile

import (
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// otherUser is an account other than the one running the tests, to check
// that a replaced file keeps an owner that is not ours.
func otherUser(t *testing.T) (uid, gid int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("giving a file to another owner needs root")
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return uid, gid
	}
	t.Skip("no postgres or nobody account")
	return 0, 0
}

func TestReplaceFileKeepsOwnerAndMode(t *testing.T) {
	uid, gid := otherUser(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "pgbouncer.ini")
	writeFile(t, path, "old\n")
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	before := statT(t, path)

	if err := Replace(path, []byte("new\n")); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if string(got) != "new\n" {
		t.Errorf("content = %q", got)
	}
	after := statT(t, path)
	if int(after.Uid) != uid || int(after.Gid) != gid {
		t.Errorf("owner %d:%d, want %d:%d", after.Uid, after.Gid, uid, gid)
	}
	if after.Mode&0o7777 != 0o640 {
		t.Errorf("mode %o, want 640", after.Mode&0o7777)
	}
	if after.Ino == before.Ino {
		t.Errorf("the file was written in place, not replaced by rename")
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".*pgshift*"))
	if len(leftovers) > 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
	if err := CheckReplaceable(path); err != nil {
		t.Errorf("CheckReplaceable: %v", err)
	}
}

func TestReplaceFileFollowsSymlink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.ini")
	link := filepath.Join(dir, "pgbouncer.ini")
	writeFile(t, real, "old\n")
	if err := os.Symlink("real.ini", link); err != nil {
		t.Fatal(err)
	}
	if err := Replace(link, []byte("new\n")); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the link was replaced by a file")
	}
	if got, _ := os.ReadFile(real); string(got) != "new\n" {
		t.Errorf("target content = %q", got)
	}
}

// A missing file is an error, not a new file.
func TestReplaceFileMissing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pgbouncer.ini")
	if err := Replace(path, []byte("x")); err == nil {
		t.Errorf("Replace of a missing file succeeded")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("files created: %v", entries)
	}
}

func statT(t *testing.T, path string) *syscall.Stat_t {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestWriteSetsModeAndLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.pgshift-state.json")
	for _, content := range []string{"one\n", "two\n"} {
		if err := Write(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != content {
			t.Fatalf("read back %q, %v; want %q", got, err, content)
		}
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if temps, _ := filepath.Glob(filepath.Join(dir, TempPattern(path))); len(temps) != 0 {
		t.Fatalf("temporary files left: %v", temps)
	}
	stale := filepath.Join(dir, ".x.pgshift-state.json.tmp-123")
	writeFile(t, stale, "half")
	RemoveStale(path)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("RemoveStale left %s", stale)
	}
}
