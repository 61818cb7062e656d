// Package atomicfile replaces files so that a crash at any instant leaves
// either the old content or the new one, never a mix: a temporary file in
// the same folder, synced, renamed over the original, then the folder
// synced. pgshift's state file and PgBouncer's configuration are written
// this way.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// TempPattern is the name of the temporary files beside path; a killed
// writer may leave one behind (RemoveStale).
func TempPattern(path string) string { return "." + filepath.Base(path) + ".tmp-*" }

// Write replaces (or creates) the file at path with data and mode perm.
func Write(path string, data []byte, perm os.FileMode) error {
	return write(path, data, func(f *os.File) error { return f.Chmod(perm) })
}

// Replace replaces an existing file with data, keeping its owner and mode,
// so that a program running as another user can still read it. A symbolic
// link is followed: the file it points to is replaced.
func Replace(path string, data []byte) error {
	real, fi, st, err := identity(path)
	if err != nil {
		return err
	}
	return write(real, data, func(f *os.File) error {
		// Owner before mode: chown may clear set-id bits.
		if err := keepOwner(f, st); err != nil {
			return fmt.Errorf("%s: %w", real, err)
		}
		return f.Chmod(fi.Mode() & (os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky))
	})
}

// CheckReplaceable tries what Replace needs (a file in the folder, the
// original's owner) without touching the original.
func CheckReplaceable(path string) error {
	real, _, st, err := identity(path)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(real), TempPattern(real))
	if err != nil {
		return fmt.Errorf("cannot create files beside %s: %w (pgshift needs write access to its folder)", real, err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := keepOwner(f, st); err != nil {
		return fmt.Errorf("%s: %w", real, err)
	}
	return nil
}

// RemoveStale deletes the temporary files a killed writer left beside path.
// Call it only where no other writer can be running (under a lock).
func RemoveStale(path string) {
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(path), TempPattern(path)))
	for _, m := range matches {
		os.Remove(m)
	}
}

func write(path string, data []byte, prepare func(*os.File) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, TempPattern(path))
	if err != nil {
		return fmt.Errorf("create a temporary file beside %s: %w (pgshift needs write access to its folder)", path, err)
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := prepare(f); err != nil {
		return fmt.Errorf("prepare %s: %w", tmp, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp, path, err)
	}
	done = true
	return syncDir(dir)
}

func identity(path string) (string, os.FileInfo, *syscall.Stat_t, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", nil, nil, fmt.Errorf("read %s: %w", real, err)
	}
	if !fi.Mode().IsRegular() {
		return "", nil, nil, fmt.Errorf("%s is not a regular file", real)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "", nil, nil, fmt.Errorf("%s: cannot read its owner", real)
	}
	return real, fi, st, nil
}

// keepOwner gives f the owner and group in st, when they differ from the
// ones f was created with.
func keepOwner(f *os.File, st *syscall.Stat_t) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	cur := fi.Sys().(*syscall.Stat_t)
	if cur.Uid == st.Uid && cur.Gid == st.Gid {
		return nil
	}
	if err := f.Chown(int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("cannot keep the file's owner %d:%d (%v): run pgshift as that user or as root", st.Uid, st.Gid, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync folder %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync folder %s: %w", dir, err)
	}
	return nil
}
