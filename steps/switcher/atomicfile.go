package switcher

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// replaceFile replaces the file at path with data atomically: a temporary
// file in the same folder, given the original's owner and mode, synced, then
// renamed over the original, and the folder synced. Readers see the old file
// or the new one, never a mix; PgBouncer running as another user can still
// read it. A symbolic link is followed: the file it points to is replaced.
func replaceFile(path string, data []byte) error {
	real, fi, st, err := fileIdentity(path)
	if err != nil {
		return err
	}
	dir := filepath.Dir(real)
	f, err := os.CreateTemp(dir, "."+filepath.Base(real)+".pgshift-*")
	if err != nil {
		return fmt.Errorf("create a temporary file beside %s: %w (pgshift needs write access to its folder)", real, err)
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// Owner before mode: chown may clear set-id bits.
	if err := keepOwner(f, st); err != nil {
		return fmt.Errorf("%s: %w", real, err)
	}
	if err := f.Chmod(fi.Mode() & (os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky)); err != nil {
		return fmt.Errorf("set the mode of %s: %w", tmp, err)
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
	if err := os.Rename(tmp, real); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp, real, err)
	}
	done = true
	return syncDir(dir)
}

// checkReplaceable tries what replaceFile needs (a file in the folder, the
// original's owner) without touching the original.
func checkReplaceable(path string) error {
	real, _, st, err := fileIdentity(path)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(real), "."+filepath.Base(real)+".pgshift-check-*")
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

func fileIdentity(path string) (string, os.FileInfo, *syscall.Stat_t, error) {
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
