package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgshift/pgshift/internal/pgtest"
)

// TestDriftDuringSync is the weeks between apply and the cutover, with
// pgbench writing through PgBouncer the whole time, blue 13 -> green 17:
//   - a spec change to done steps (a table excluded) shows as ~ in the
//     plan, apply --accept-spec-change converges it, the next plan has
//     nothing to do;
//   - a column and a table added on blue, and an index, stop green's apply
//     worker; the plan names them with the SQL; the cutover is refused
//     without any freeze (PgBouncer never paused, no cutover phase);
//   - apply reconciles green (column, table copied with its rows, index),
//     the plan has nothing to do, the cutover succeeds, and rows are equal;
//   - rollback --step cutover and a second cutover copy nothing again, rows
//     equal each time.
func TestDriftDuringSync(t *testing.T) {
	integration(t)
	t.Parallel()
	cs := pgtest.StartClusters(t, []int{13, 17})
	blue, green := cs[0], cs[1]
	blue.CreateDatabase(t, "app")
	green.CreateDatabase(t, "app")
	blue.Exec(t, "app", `CREATE TABLE public.orders (id bigserial PRIMARY KEY, note text, qty int);
		INSERT INTO public.orders (note, qty) SELECT 'order ' || g, g % 7 FROM generate_series(1, 1000) g;
		CREATE TABLE public.audit_log (id bigserial PRIMARY KEY, msg text);
		INSERT INTO public.audit_log (msg) SELECT 'm' || g FROM generate_series(1, 100) g`)
	initPgbench(t, blue, "app", false)
	bouncer := pgtest.StartPgBouncer(t, pgtest.PgBouncerOptions{Databases: map[string]string{
		"app": fmt.Sprintf("host=127.0.0.1 port=%d dbname=app", blue.Port),
	}})

	const name = "drift"
	dir := t.TempDir()
	specPath := filepath.Join(dir, name+".yaml")
	writeDriftSpec := func(tables string) {
		t.Helper()
		spec := fmt.Sprintf(`version: 1
name: %s
source:
  dsn: %q
target:
  dsn: %q
%scutover:
  freeze: pooler
  pause_timeout: 20s
  reverse_replication: true
  switch:
    pgbouncer:
      admin_dsn: %q
      config: %q
      database: app
  confirm:
    dsn: %q
`, name, blue.DSN("app"), green.DSN("app"), tables, bouncer.AdminDSN, bouncer.ConfigPath, bouncer.DSN("app"))
		if err := os.WriteFile(specPath, []byte(spec), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeDriftSpec("")
	bench := startPooledPgbench(t, bouncer)

	r := pgshift(t, dir, "apply", "-f", specPath)
	if r.code != 0 || !strings.Contains(r.stdout, "Apply stopped before cutover: approval needed") {
		t.Fatalf("first apply:\n%s", r)
	}

	// 1. A spec change to done steps, and a role created on blue since.
	writeDriftSpec("tables:\n  exclude: [public.audit_log]\n")
	blue.Exec(t, "app", `CREATE ROLE reporting_ro NOLOGIN`)
	r = pgshift(t, dir, "plan", "-f", specPath, "--no-color")
	if mark, line, _ := planLine(r.stdout, "target.roles"); mark != "+" || !strings.Contains(r.stdout, "reporting_ro") {
		t.Fatalf("plan after a role was created on blue: target.roles shows %q, want + with the role\n%s", line, r.stdout)
	}
	if mark, line, _ := planLine(r.stdout, "source.publication"); mark != "~" {
		t.Fatalf("plan after excluding a table: source.publication shows %q, want ~\n%s", line, r.stdout)
	}
	if !strings.Contains(r.stdout, "ALTER PUBLICATION") || !strings.Contains(r.stdout, "- table public.audit_log") {
		t.Fatalf("plan does not show the ALTER PUBLICATION that drops public.audit_log:\n%s", r.stdout)
	}
	r = pgshift(t, dir, "apply", "-f", specPath, "--accept-spec-change")
	if r.code != 0 || !strings.Contains(r.stdout, "applied again") || !strings.Contains(r.stdout, "source.publication") {
		t.Fatalf("apply of the changed spec did not converge the publication:\n%s", r)
	}
	blueConn, greenConn := connect(t, blue.DSN("app")), connect(t, green.DSN("app"))
	if n := scalar[int64](t, greenConn, `SELECT count(*) FROM pg_roles WHERE rolname = 'reporting_ro'`); n != 1 {
		t.Fatal("apply did not create on green the role created on blue")
	}
	if n := scalar[int64](t, blueConn, `SELECT count(*) FROM pg_publication_tables WHERE pubname = 'pgshift_drift' AND tablename = 'audit_log'`); n != 0 {
		t.Fatal("blue's publication still carries public.audit_log")
	}
	if n := scalar[int64](t, greenConn, `SELECT count(*) FROM pg_subscription_rel r JOIN pg_class c ON c.oid = r.srrelid WHERE c.relname = 'audit_log'`); n != 0 {
		t.Fatal("green's subscription still tracks public.audit_log")
	}
	requireNothingToDo(t, dir, specPath, "after converging the spec change")

	// 2. DDL on blue mid-sync, under load.
	blue.Exec(t, "app", `ALTER TABLE public.pgbench_accounts ADD COLUMN note text NOT NULL DEFAULT 'none';
		CREATE TABLE public.events (id bigserial PRIMARY KEY, kind text NOT NULL, at timestamptz NOT NULL DEFAULT '2026-01-01');
		INSERT INTO public.events (kind) SELECT 'e' || g FROM generate_series(1, 300) g;
		CREATE INDEX orders_qty ON public.orders (qty);
		UPDATE public.pgbench_accounts SET note = 'touched' WHERE aid <= 10`)
	waitFor(t, 30*time.Second, "green's apply worker to fail on the new column", func() bool {
		return scalar[int64](t, greenConn, `SELECT coalesce(sum(apply_error_count), 0)::bigint FROM pg_stat_subscription_stats`) > 0
	})
	r = pgshift(t, dir, "plan", "-f", specPath, "--no-color")
	for _, want := range []string{
		`ADD COLUMN "note" text DEFAULT 'none'::text NOT NULL`,
		"public.events: table missing on green",
		`CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_qty ON public.orders`,
		"+ table public.events",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("plan after DDL on blue lacks %q", want)
		}
	}
	if r := pgshift(t, dir, "status", "-f", specPath); !strings.Contains(r.stdout, "public.pgbench_accounts.note: column missing on green") {
		t.Errorf("status after DDL on blue does not name the new column:\n%s", r)
	}
	if mark, line, _ := planLine(r.stdout, "target.schema"); mark != "~" {
		t.Errorf("plan after DDL on blue: target.schema shows %q, want ~", line)
	}
	if t.Failed() {
		t.Fatalf("plan:\n%s", r.stdout)
	}

	// apply reconciles green.
	r = pgshift(t, dir, "apply", "-f", specPath)
	if r.code != 0 || !strings.Contains(r.stdout, "Apply stopped before cutover") {
		t.Fatalf("apply after DDL on blue:\n%s", r)
	}
	for _, id := range []string{"target.schema", "source.publication", "target.subscription", "verify"} {
		if !strings.Contains(r.stdout, id) {
			t.Errorf("apply after DDL did not run %s again:\n%s", id, r.stdout)
		}
	}
	if n := scalar[int64](t, greenConn, `SELECT count(*) FROM public.events`); n != 300 {
		t.Errorf("green holds %d rows of the new table, want 300", n)
	}
	if n := scalar[int64](t, greenConn, `SELECT count(*) FROM public.pgbench_accounts WHERE note = 'touched'`); n != 10 {
		t.Errorf("green holds %d accounts with blue's new column set, want 10", n)
	}
	if st, _ := readState(t, filepath.Join(dir, name+".pgshift-state.json")); st.output("verify", "result") != "passed" {
		t.Errorf("verify after reconciling: %q", st.output("verify", "result"))
	}
	requireNothingToDo(t, dir, specPath, "after reconciling blue's DDL")

	// 3. A broken subscription: a row written on green by mistake makes
	// blue's next row with that key fail there, again and again. The
	// cutover refuses before any freeze.
	green.Exec(t, "app", `INSERT INTO public.events (id, kind) VALUES (5000, 'written on green')`)
	blue.Exec(t, "app", `INSERT INTO public.events (id, kind) VALUES (5000, 'written on blue')`)
	r = pgshift(t, dir, "apply", "-f", specPath, "--approve-cutover")
	out := r.stdout + r.stderr
	if r.code == 0 || !strings.Contains(out, "no apply errors") && !strings.Contains(out, "apply worker running on green") {
		t.Fatalf("cutover with green's worker failing: want a refusal naming the apply worker\n%s", r)
	}
	t.Logf("refused cutover:\n%s", r)
	st, _ := readState(t, filepath.Join(dir, name+".pgshift-state.json"))
	if ph := st.output("cutover", "phase"); ph != "" {
		t.Fatalf("the refused cutover reached phase %q; it must not start", ph)
	}
	if paused := bouncer.Paused(t, "app"); paused {
		t.Fatal("PgBouncer is paused after the refused cutover")
	}
	r = pgshift(t, dir, "plan", "-f", specPath, "--no-color")
	if !strings.Contains(r.stdout, "apply error") && !strings.Contains(r.stdout, "no steady apply worker") {
		t.Fatalf("plan with green's worker failing does not say so:\n%s", r.stdout)
	}
	t.Logf("plan with green's worker failing:\n%s", r.stdout)
	green.Exec(t, "app", `DELETE FROM public.events WHERE id = 5000`)

	r = pgshift(t, dir, "apply", "-f", specPath, "--approve-cutover")
	if r.code != 0 || !strings.Contains(r.stdout, "Apply complete") {
		t.Fatalf("cutover after reconciling:\n%s", r)
	}
	// Green is live and reverse replication keeps blue current. The rows
	// are compared with the load stopped: a table pgbench updates moves
	// between reading blue and reading green.
	bench.stop(t)
	waitCaughtUp(t, greenConn, "pgshift_drift_reverse")
	compareAll(t, blue.DSN("app"), green.DSN("app"), "public.audit_log")

	// 4. Back to blue and forward again, each under load: the forward
	// replication is kept, so nothing is copied again.
	subOID := scalar[string](t, greenConn, `SELECT oid::text FROM pg_subscription WHERE subname = 'pgshift_drift'`)
	bench = startPooledPgbench(t, bouncer)
	time.Sleep(time.Second)
	r = pgshift(t, dir, "rollback", "-f", specPath, "--step", "cutover", "--yes")
	if r.code != 0 {
		t.Fatalf("rollback --step cutover:\n%s", r)
	}
	if r := pgshift(t, dir, "status", "-f", specPath, "--offline"); !strings.Contains(r.stdout, "Live side: blue") {
		t.Fatalf("status after the rollback does not say blue is live:\n%s", r)
	}
	bench.stop(t)
	waitCaughtUp(t, blueConn, "pgshift_drift")
	compareAll(t, blue.DSN("app"), green.DSN("app"), "public.audit_log")
	bench = startPooledPgbench(t, bouncer)
	time.Sleep(time.Second)
	r = pgshift(t, dir, "apply", "-f", specPath, "--approve-cutover")
	if r.code != 0 || !strings.Contains(r.stdout, "Apply complete") {
		t.Fatalf("second cutover:\n%s", r)
	}
	if got := scalar[string](t, greenConn, `SELECT oid::text FROM pg_subscription WHERE subname = 'pgshift_drift'`); got != subOID {
		t.Fatalf("the second cutover made a new forward subscription (oid %s, was %s): a recopy", got, subOID)
	}
	if n := scalar[int64](t, greenConn, `SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'`); n != 0 {
		t.Fatalf("%d tables left ready on green after the second cutover: a recopy", n)
	}
	bench.stop(t)
	waitCaughtUp(t, greenConn, "pgshift_drift_reverse")
	compareAll(t, blue.DSN("app"), green.DSN("app"), "public.audit_log")
}

// requireNothingToDo: every done step shows ✓ (or ! for warnings) in the
// plan, and the cutover +.
func requireNothingToDo(t *testing.T, dir, specPath, when string) {
	t.Helper()
	r := pgshift(t, dir, "plan", "-f", specPath, "--no-color")
	if r.code != 0 {
		t.Fatalf("plan %s:\n%s", when, r)
	}
	for _, s := range planSteps(t, dir, specPath).Steps {
		mark, line, _ := planLine(r.stdout, s.ID)
		if s.ID == "cutover" {
			continue
		}
		if mark != "✓" && mark != "!" {
			t.Errorf("plan %s: %s", when, line)
		}
	}
	if t.Failed() {
		t.Fatalf("plan %s:\n%s", when, r.stdout)
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", timeout, what)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// pooledPgbench is pgbench's own TPC-B-like load through PgBouncer.
type pooledPgbench struct {
	cmd    *exec.Cmd
	out    bytes.Buffer
	exited chan struct{}
}

// script, when not "", replaces the built-in TPC-B-like transaction.
func startPooledPgbench(t *testing.T, b *pgtest.PgBouncer, script ...string) *pooledPgbench {
	t.Helper()
	bin := pgtest.RequireClientBin(t, "pgbench")
	p := &pooledPgbench{exited: make(chan struct{})}
	args := []string{"-n", "-c", "2", "-j", "1", "-R", "50", "-T", "3600",
		"-h", b.Host, "-p", strconv.Itoa(b.Port), "-U", "postgres", "app"}
	if len(script) > 0 {
		f := filepath.Join(t.TempDir(), "load.sql")
		if err := os.WriteFile(f, []byte(script[0]), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-f", f)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

var pgbenchFailed = regexp.MustCompile(`number of failed transactions: (\d+)`)

// stop ends pgbench with SIGINT (it prints its summary) and fails the test
// when it stopped early or counted failed transactions.
func (p *pooledPgbench) stop(t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
		t.Fatalf("pgbench stopped before the test ended it:\n%s", p.out.String())
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	out := p.out.String()
	if m := pgbenchFailed.FindStringSubmatch(out); m != nil && m[1] != "0" {
		t.Fatalf("pgbench counted %s failed transactions:\n%s", m[1], out)
	}
	if strings.Contains(out, "ERROR") || strings.Contains(out, "aborted") {
		t.Fatalf("pgbench reported errors:\n%s", out)
	}
}
