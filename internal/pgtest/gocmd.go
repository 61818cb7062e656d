package pgtest

import (
	"os"
	"os/exec"
	"path/filepath"
)

// GoCommand is the go command for tests that build pgshift's binary: the
// one on PATH, else the one in $GOROOT (the go command sets it for the
// tests it runs), else the standard install.
func GoCommand() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if root := os.Getenv("GOROOT"); root != "" {
		return filepath.Join(root, "bin", "go")
	}
	return "/usr/local/go/bin/go"
}
