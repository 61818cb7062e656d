package switcher

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgshift/pgshift/spec"
)

// execSpec writes script as switch.sh in a temporary spec folder and
// returns a spec whose exec switch runs it (relative path, as users write
// it) with the target side as argument.
func execSpec(t *testing.T, script string) (*spec.Spec, string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "switch.sh"), []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	return &spec.Spec{
		File:   filepath.Join(dir, "orders.yaml"),
		Source: spec.Endpoint{DSN: "postgres://app@blue.internal:5432/orders?sslmode=disable", PasswordEnv: "BLUE_PW"},
		Target: spec.Endpoint{DSN: "postgres://app@green.internal:5433/orders", PasswordEnv: "GREEN_PW"},
		Cutover: spec.CutoverSpec{Switch: spec.SwitchSpec{Exec: &spec.ExecSwitch{
			Switch: []string{"./switch.sh", "green"},
			Back:   []string{"./switch.sh", "blue"},
		}}},
	}, dir
}

var execBlue = Endpoint{Host: "blue.internal", Port: 5432, DBName: "orders"}
var execGreen = Endpoint{Host: "green.internal", Port: 5433, DBName: "orders"}

func TestExecSwitch(t *testing.T) {
	t.Setenv("BLUE_PW", "blue-secret")
	t.Setenv("GREEN_PW", "green-secret")
	sp, dir := execSpec(t, `env | grep '^PGSHIFT_' | sort > "state.$1"; echo "$1" > current`)
	drv, err := New(sp, execBlue, execGreen)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := drv.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if _, err := drv.Current(ctx); !errors.Is(err, ErrUnknownSide) {
		t.Errorf("Current = %v, want ErrUnknownSide", err)
	}
	if err := drv.Switch(ctx, Green); err != nil {
		t.Fatalf("Switch(green): %v", err)
	}
	env, err := os.ReadFile(filepath.Join(dir, "state.green"))
	if err != nil {
		t.Fatalf("the switch command did not run in the spec's folder: %v", err)
	}
	for _, want := range []string{
		"PGSHIFT_PHASE=switch",
		"PGSHIFT_TARGET=green",
		"PGSHIFT_BLUE_DSN=postgres://app@blue.internal:5432/orders",
		"PGSHIFT_GREEN_DSN=postgres://app@green.internal:5433/orders",
	} {
		if !strings.Contains(string(env), want+"\n") {
			t.Errorf("environment lacks %s:\n%s", want, env)
		}
	}
	if strings.Contains(string(env), "secret") {
		t.Errorf("a password reached the command's PGSHIFT_ variables:\n%s", env)
	}
	if err := drv.Switch(ctx, Blue); err != nil {
		t.Fatalf("Switch(blue): %v", err)
	}
	back, _ := os.ReadFile(filepath.Join(dir, "state.blue"))
	if !strings.Contains(string(back), "PGSHIFT_PHASE=back\n") {
		t.Errorf("back command environment:\n%s", back)
	}
	if cur, _ := os.ReadFile(filepath.Join(dir, "current")); string(cur) != "blue\n" {
		t.Errorf("current = %q", cur)
	}
	if lines := drv.Describe(Green); len(lines) != 1 || !strings.Contains(lines[0], "./switch.sh green") {
		t.Errorf("Describe = %q", lines)
	}
}

func TestExecSwitchFailure(t *testing.T) {
	sp, _ := execSpec(t, `echo "starting" ; echo "cannot reach the load balancer" >&2; exit 3`)
	drv, _ := New(sp, execBlue, execGreen)
	err := drv.Switch(context.Background(), Green)
	if err == nil {
		t.Fatal("a failing command did not fail the switch")
	}
	for _, want := range []string{"exit status 3", "cannot reach the load balancer", "cutover.switch.exec.switch"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// On timeout the command and what it started are killed.
func TestExecSwitchTimeout(t *testing.T) {
	sp, dir := execSpec(t, `sleep 60 & echo $! > child.tmp; mv child.tmp child.pid; wait`)
	drv, _ := New(sp, execBlue, execGreen)
	// The pause ends once the command has started its child, however slowly
	// the shell starts (bounded: a hang fails the test, not the suite).
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			if _, err := os.Stat(filepath.Join(dir, "child.pid")); err == nil {
				cancel()
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	err := drv.Switch(ctx, Green)
	if err == nil || !strings.Contains(err.Error(), "killed after the pause timeout") {
		t.Fatalf("err = %v", err)
	}
	data, rerr := os.ReadFile(filepath.Join(dir, "child.pid"))
	if rerr != nil {
		t.Fatal(rerr)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("the command's child %d survived the timeout", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive says whether a process runs (a zombie waiting to be reaped does not).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) STATE ...: the state follows the last ')'.
	i := strings.LastIndexByte(string(stat), ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

func TestExecCheckMissingCommand(t *testing.T) {
	sp, _ := execSpec(t, "exit 0")
	sp.Cutover.Switch.Exec.Back = []string{"./missing.sh"}
	drv, _ := New(sp, execBlue, execGreen)
	if err := drv.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "cutover.switch.exec.back") {
		t.Errorf("Check = %v", err)
	}
}

func TestNewRefuses(t *testing.T) {
	sp, _ := execSpec(t, "exit 0")
	if _, err := New(sp, execBlue, execBlue); err == nil || !strings.Contains(err.Error(), "same database") {
		t.Errorf("same endpoints: %v", err)
	}
	sp.Cutover.Switch.HAProxy = &spec.HAProxySwitch{Socket: "x", Backend: "b", BlueServer: "a", GreenServer: "c"}
	if _, err := New(sp, execBlue, execGreen); err == nil || !strings.Contains(err.Error(), "exactly one") {
		t.Errorf("two drivers: %v", err)
	}
}
