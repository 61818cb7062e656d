//go:build !linux

package steps

import "os/exec"

// runChild runs a client program. Outside Linux there is no parent-death
// signal: a killed apply may leave a restore running, whose single
// transaction then either commits whole (the next apply sees the schema in
// place) or fails on the objects the next run created.
func runChild(cmd *exec.Cmd) error { return cmd.Run() }
