package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/spec"
)

func TestSplitWaves(t *testing.T) {
	cases := []struct {
		n, canary, size int
		want            [][]int
	}{
		{6, 0, 0, [][]int{{0, 1, 2, 3, 4, 5}}},
		{6, 2, 0, [][]int{{0, 1}, {2, 3, 4, 5}}},
		{6, 2, 3, [][]int{{0, 1}, {2, 3, 4}, {5}}},
		{5, 0, 2, [][]int{{0, 1}, {2, 3}, {4}}},
		{2, 5, 1, [][]int{{0, 1}}},
		{0, 1, 1, nil},
	}
	for _, c := range cases {
		if got := splitWaves(c.n, c.canary, c.size); !reflect.DeepEqual(got, c.want) {
			t.Errorf("splitWaves(%d, canary %d, size %d) = %v, want %v", c.n, c.canary, c.size, got, c.want)
		}
	}
}

func TestMaxFailures(t *testing.T) {
	cases := []struct {
		flag         string
		failed, size int
		stop         bool
	}{
		{"0", 1, 10, true},
		{"0", 0, 10, false},
		{"2", 2, 10, false},
		{"2", 3, 10, true},
		{"10%", 1, 10, false},
		{"10%", 2, 10, true},
		{"50%", 1, 2, false},
		{"0%", 1, 100, true},
		{"100%", 4, 4, false},
	}
	for _, c := range cases {
		m, err := parseMaxFailures(c.flag)
		if err != nil {
			t.Fatalf("parseMaxFailures(%q): %v", c.flag, err)
		}
		if got := m.exceeded(c.failed, c.size); got != c.stop {
			t.Errorf("--max-failures %s with %d of %d failed: stop %v, want %v", c.flag, c.failed, c.size, got, c.stop)
		}
	}
	for _, bad := range []string{"-1", "x", "101%", "%", "1.5"} {
		if _, err := parseMaxFailures(bad); err == nil || !strings.Contains(err.Error(), "--max-failures") {
			t.Errorf("parseMaxFailures(%q): %v, want an error naming the flag", bad, err)
		}
	}
}

// TestRunWavesBoundAndStop: at most --parallel-databases run at once, a
// wave starts only after the previous one, and a wave past the limit stops
// the next ones.
func TestRunWavesBoundAndStop(t *testing.T) {
	var running, peak atomic.Int32
	var order []int
	run := func(_ context.Context, i int) *dbResult {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(30 * time.Millisecond)
		running.Add(-1)
		if i == 1 {
			return &dbResult{kind: failPerson, err: errors.New("blocker")}
		}
		return &dbResult{}
	}
	done := func(i int, _ *dbResult) { order = append(order, i) }
	res := runWaves(context.Background(), 8, splitWaves(8, 2, 3), 2, maxFailures{}, run, done)
	if res.stoppedWave != 1 || res.failures != 1 {
		t.Errorf("stopped after wave %d with %d failures, want wave 1 with 1", res.stoppedWave, res.failures)
	}
	for i := 2; i < 8; i++ {
		if res.results[i] != nil {
			t.Errorf("database %d ran after the canary failed", i)
		}
	}
	res = runWaves(context.Background(), 8, splitWaves(8, 2, 3), 2, maxFailures{count: 1}, run, done)
	if res.stoppedWave != 0 || peak.Load() > 2 || res.peak > 2 || res.peak < 2 {
		t.Errorf("stopped %d, peak %d (pool's %d), want no stop and 2 at once at most", res.stoppedWave, peak.Load(), res.peak)
	}
	for i, r := range res.results {
		if r == nil {
			t.Errorf("database %d not run", i)
		}
	}
	// The second wave (2, 3, 4) started after both canaries ended.
	second := order[len(order)-8:]
	if pos := func(x int) int {
		for i, v := range second {
			if v == x {
				return i
			}
		}
		return -1
	}; pos(2) < pos(0) || pos(2) < pos(1) || pos(5) < pos(4) {
		t.Errorf("finish order %v: a wave began before the previous one ended", second)
	}

	// An interrupt starts nothing more.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res = runWaves(ctx, 3, splitWaves(3, 0, 0), 1, maxFailures{}, run, done)
	for i, r := range res.results {
		if r != nil {
			t.Errorf("database %d started after the interrupt", i)
		}
	}
}

func TestClassifyFailures(t *testing.T) {
	// A real refused connection, as the engine wraps it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	_, refused := pgx.Connect(context.Background(), fmt.Sprintf("postgres://postgres@127.0.0.1:%d/x?connect_timeout=2", port))
	if refused == nil {
		t.Fatal("connected to a closed port")
	}
	refused = fmt.Errorf("blue: connect to postgres://postgres@127.0.0.1:%d/x: %w (is blue running?)", port, refused)

	cases := []struct {
		name string
		err  error
		want failureKind
	}{
		{"success", nil, failNone},
		{"connection refused", refused, failTransient},
		{"timeout", fmt.Errorf("wait: %w", context.DeadlineExceeded), failTransient},
		{"server shutting down", &pgconn.PgError{Code: "57P01"}, failTransient},
		{"connection exception class", &pgconn.PgError{Code: "08006"}, failTransient},
		{"state locked", fmt.Errorf("open: %w", &engine.LockedError{LockFile: "x.lock"}), failTransient},
		{"database missing", &pgconn.PgError{Code: "3D000", Message: `database "x" does not exist`}, failPerson},
		{"password refused", &pgconn.PgError{Code: "28P01"}, failPerson},
		{"precondition", &engine.PreconditionError{Step: "preflight.source", Failed: []string{"table t has no replica identity"}}, failPerson},
		{"verify difference", errors.New("verify: 3 rows differ in public.t"), failPerson},
		{"usage", &usageError{errors.New("bad flag")}, failPerson},
		{"exit status without a message", &exitCodeError{code: exitError}, failPerson},
		{"apply failed over a refused connection", &exitCodeError{code: exitError, err: stepCauses("apply failed: 1 step (x)",
			[]engine.StepError{{ID: "x", Err: refused}})}, failTransient},
		{"a blocker beside a refused connection", &exitCodeError{code: exitError, err: stepCauses("apply failed: 2 steps (x, y)",
			[]engine.StepError{{ID: "x", Err: refused}, {ID: "y", Err: &engine.PreconditionError{Step: "y"}}})}, failPerson},
	}
	for _, c := range cases {
		if got := classify(c.err); got != c.want {
			t.Errorf("%s: classify(%v) = %q, want %q", c.name, c.err, got, c.want)
		}
	}
	if got := (&withCauses{msg: "apply failed: 1 step (x)"}).Error(); got != "apply failed: 1 step (x)" {
		t.Errorf("the message changed: %q", got)
	}
}

func TestSelectEntries(t *testing.T) {
	var specs []*spec.Spec
	for _, n := range []string{"orders", "invoices", "customers"} {
		specs = append(specs, &spec.Spec{Name: n})
	}
	names := func(ss []*spec.Spec) string {
		var out []string
		for _, s := range ss {
			out = append(out, s.Name)
		}
		return strings.Join(out, ",")
	}
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == envJobIndex {
				return v
			}
			return ""
		}
	}
	cases := []struct {
		name    string
		f       fleetFlags
		env     string
		want    string
		wantErr string
	}{
		{"all", fleetFlags{index: -1}, "", "orders,invoices,customers", ""},
		{"--index", fleetFlags{index: 1, indexGiven: true}, "", "invoices", ""},
		{"--index wins over the Job's index", fleetFlags{index: 0, indexGiven: true}, "2", "orders", ""},
		{"the Job's index", fleetFlags{index: -1}, "2", "customers", ""},
		{"--only keeps inventory order", fleetFlags{index: -1, only: []string{"customers", "orders"}}, "", "orders,customers", ""},
		{"--only over the Job's index", fleetFlags{index: -1, only: []string{"invoices"}}, "0", "invoices", ""},
		{"index past the end", fleetFlags{index: 3, indexGiven: true}, "", "", "--index 3: the inventory has 3 entries (indexes 0 to 2)"},
		{"Job index past the end", fleetFlags{index: -1}, "7", "", "JOB_COMPLETION_INDEX 7: the inventory has 3 entries"},
		{"Job index not a number", fleetFlags{index: -1}, "x", "", `JOB_COMPLETION_INDEX="x"`},
		{"unknown name", fleetFlags{index: -1, only: []string{"nope"}}, "", "", "--only nope: no inventory entry renders that name; the names are orders, invoices, customers"},
		{"both", fleetFlags{index: 0, indexGiven: true, only: []string{"orders"}}, "", "", "--index and --only"},
	}
	for _, c := range cases {
		got, err := selectEntries(specs, &c.f, env(c.env))
		if c.wantErr != "" {
			var ue *usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%s: %v, want a usage error with %q", c.name, err, c.wantErr)
			}
			continue
		}
		if err != nil || names(got) != c.want {
			t.Errorf("%s: %s, %v; want %s", c.name, names(got), err, c.want)
		}
	}
	if got := fleetStatePath("/var/lib/pgshift", specs[0]); got != "/var/lib/pgshift/orders.pgshift-state.json" {
		t.Errorf("state in --state-dir: %s", got)
	}
	if got := fleetStatePath("postgres://pgshift@ops/ops?password_env=PW", specs[0]); got != "postgres://pgshift@ops/ops?password_env=PW#orders" {
		t.Errorf("state row in a postgres --state-dir: %s", got)
	}
}

func TestPrefixWriter(t *testing.T) {
	var out bytes.Buffer
	p := &prefixWriter{w: &out, name: "orders-pg17"}
	fmt.Fprint(p, "22:01 [INFO]  applying: step=audit\n  error=\n")
	fmt.Fprint(p, `{"@level":"info","@message":"applying"}`+"\n")
	fmt.Fprint(p, "no newline")
	p.flush()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 4 || lines[0] != "[orders-pg17] 22:01 [INFO]  applying: step=audit" || lines[1] != "[orders-pg17]   error=" || lines[3] != "[orders-pg17] no newline" {
		t.Errorf("prefixed lines:\n%s", out.String())
	}
	var obj map[string]string
	if err := json.Unmarshal([]byte(lines[2]), &obj); err != nil || obj["database"] != "orders-pg17" || obj["@message"] != "applying" {
		t.Errorf("a JSON log line keeps being JSON, with the database: %q (%v)", lines[2], err)
	}
}

// fleetSpecWithPorts writes a spec over an inventory whose databases all
// point at ports nothing listens on.
func fleetSpecWithClosedPorts(t *testing.T, n int) (specPath, invPath string) {
	t.Helper()
	var ports [2]int
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
	}
	dir := t.TempDir()
	specPath = filepath.Join(dir, "fleet.yaml")
	invPath = filepath.Join(dir, "fleet.inventory.yaml")
	os.WriteFile(specPath, []byte(fmt.Sprintf(`version: 1
name: "{{ .db }}-pg17"
vars:
  db: {}
source:
  dsn: "postgres://postgres@127.0.0.1:%d/{{ .db }}?connect_timeout=3"
target:
  dsn: "postgres://postgres@127.0.0.1:%d/{{ .db }}?connect_timeout=3"
cutover:
  switch:
    exec: {switch: ["true"], back: ["true"]}
`, ports[0], ports[1])), 0o600)
	var inv strings.Builder
	for i := range n {
		fmt.Fprintf(&inv, "- {db: db%d}\n", i)
	}
	os.WriteFile(invPath, []byte(inv.String()), 0o600)
	return specPath, invPath
}

// TestFleetUnreachableExitsTransient: servers that refuse connections are
// a failure a retry may get past: exit 3, the canary's failure stops the
// other databases, and the table says why.
func TestFleetUnreachableExitsTransient(t *testing.T) {
	specPath, invPath := fleetSpecWithClosedPorts(t, 4)
	code, out, errOut := runSpecCommand(t, "apply", "-f", specPath, "--inventory", invPath, "--canary", "1", "--parallel-databases", "2")
	if code != exitTransient {
		t.Fatalf("exit %d, want %d (transient)\n%s\n%s", code, exitTransient, out, errOut)
	}
	for _, want := range []string{
		"db0-pg17  preflight.source  failed",
		"retry: blue unreachable (connection refused)",
		"db1-pg17  -                 -       -    -      not started: wave 1 had 1 failed database",
		"apply 4 databases: 0 succeeded, 1 failed transiently, 3 not started",
		"pgshift apply -f " + specPath + " --inventory " + invPath + " --parallel-databases 2 --canary 1",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "[db0-pg17] ") {
		t.Errorf("logs are not under the database's name:\n%s", errOut)
	}
	for _, db := range []string{"db1", "db2", "db3"} {
		if _, err := os.Stat(filepath.Join(filepath.Dir(specPath), db+"-pg17.pgshift-state.json")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s has a state: it was started (%v)", db, err)
		}
	}
}

// TestFleetFlagUsage: fleet flags need --inventory, a fleet never prompts,
// and one state file cannot serve several databases.
func TestFleetFlagUsage(t *testing.T) {
	specPath, invPath := fleetSpecWithClosedPorts(t, 2)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"apply", "-f", specPath, "--only", "db0-pg17"}, "--only takes effect with --inventory only"},
		{[]string{"status", "-f", specPath, "--index", "0"}, "--index takes effect with --inventory only"},
		{[]string{"rollback", "-f", specPath, "--inventory", invPath}, "rollback --inventory never asks database by database: pass --yes"},
		{[]string{"cleanup", "-f", specPath, "--inventory", invPath}, "cleanup --inventory never asks database by database: pass --yes"},
		{[]string{"apply", "-f", specPath, "--inventory", invPath, "--state", "x.json"}, "use --state-dir DIR"},
		{[]string{"apply", "-f", specPath, "--inventory", invPath, "--max-failures", "x"}, `--max-failures "x"`},
		{[]string{"apply", "-f", specPath, "--inventory", invPath, "--parallel-databases", "0"}, "want 1 or more"},
		{[]string{"apply", "-f", specPath, "--inventory", invPath, "--only", "orders"}, "--only orders: no inventory entry renders that name; the names are db0-pg17, db1-pg17"},
		{[]string{"apply", "-f", specPath, "--inventory", invPath, "plan.json"}, "takes no saved plan"},
		{[]string{"status", "-f", specPath, "--inventory", invPath, "--format", "markdown"}, `--format "markdown": use text, json`},
	}
	for _, c := range cases {
		code, out, errOut := runSpecCommand(t, c.args...)
		if code != exitUsage || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, want 2 with %q\n%s%s", c.args, code, c.want, out, errOut)
		}
	}
}
