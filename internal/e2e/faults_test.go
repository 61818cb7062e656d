package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgshift/pgshift/internal/pgtest"
)

// TestServerRestarts restarts blue and green the ways operators and
// supervisors do (pg_ctl restart -m fast, and -m immediate: every session
// cut, crash recovery) while apply waits for the catch-up or runs verify,
// with pgbench writing through PgBouncer. (A kill -9 of a postmaster during
// the copy, the catch-up and verify is TestServerCrashes.) The same apply
// rides the restart out: it waits for the server, reconnects and stops at
// the cutover gate, its log naming the outage and the reconnection when the
// restart cut one of its queries; green then equals blue row by row, with
// exactly one publication, slot and subscription. A server that stays down
// past replication.outage_timeout fails the run, and status says how to go
// on.
func TestServerRestarts(t *testing.T) {
	integration(t)
	t.Parallel()
	f := newFaultPair(t, "restarts", "")
	bench := startPooledPgbench(t, f.bouncer, ledgerLoad)

	type fault struct {
		step string
		side *pgtest.Cluster
		name string
		mode string
	}
	var faults []fault
	for _, step := range []string{"replication.catchup", "verify"} {
		for _, mode := range []string{"fast", "immediate"} {
			faults = append(faults, fault{step, f.blue, "blue", mode})
		}
	}
	for _, mode := range []string{"fast", "immediate"} {
		faults = append(faults, fault{"replication.catchup", f.green, "green", mode})
	}
	// rerun has the next apply run catch-up and verify again: they run
	// again once the steps before them have something new, and rolling back
	// the catch-up (it only waits) does that. A burst of rows gives green
	// work to catch up with and verify rows to compare.
	rerun := func(what string, extra ...string) {
		t.Helper()
		args := append([]string{"rollback", "-f", f.spec, "--step", "replication.catchup", "--yes"}, extra...)
		if r := pgshift(t, f.dir, args...); r.code != 0 {
			t.Fatalf("%s: rollback --step replication.catchup:\n%s", what, r)
		}
		f.blue.Exec(t, "app", `INSERT INTO public.ledger (note) SELECT 'burst' FROM generate_series(1, 200000)`)
	}
	noticed := 0
	for _, fl := range faults {
		what := fmt.Sprintf("%s restarted (%s) during %s", fl.name, fl.mode, fl.step)
		rerun(what)
		p := startPgshift(t, f.dir, "apply", "-f", f.spec)
		seen := waitRunning(t, p, f.statePath, fl.step)
		if fl.mode == "fast" {
			fl.side.Restart(t)
		} else {
			fl.side.RestartImmediate(t)
		}
		code := p.exitCode()
		out := p.out.String()
		st, _ := readState(t, f.statePath)
		t.Logf("%s (seen running: %v): apply exit %d, %s", what, seen, code, stepSummary(st))
		if code != 0 || !strings.Contains(out, "Apply stopped before cutover") {
			t.Fatalf("%s: apply did not ride the restart out (exit %d):\n%s", what, code, out)
		}
		// pgshift notices a restart when it cuts one of its queries; one
		// that falls between two polls of the catch-up goes unseen (the
		// pool dials afresh), which is fine too.
		switch outage := grepLines(out, "unreachable ("); {
		case outage == "":
			t.Logf("%s: the restart cut none of pgshift's queries", what)
		case !strings.Contains(outage, fl.name+" unreachable (") || !strings.Contains(outage, "waiting up to 5m0s for it to come back"):
			t.Fatalf("%s: apply's log names another outage than %s's:\n%s", what, fl.name, outage)
		case !strings.Contains(out, "connection back, going on"):
			t.Fatalf("%s: apply's log names the outage but not the reconnection:\n%s", what, out)
		default:
			noticed++
			t.Logf("%s: apply said:\n%s\n%s", what, outage, grepLines(out, "connection back"))
		}
		if fl.side == f.blue {
			// pgbench's connections through PgBouncer died with blue.
			bench.killNow()
			waitThroughBouncer(t, f.bouncer)
			bench = startPooledPgbench(t, f.bouncer, ledgerLoad)
		}
		f.requireEqual(t, what)
	}
	if noticed == 0 {
		t.Errorf("none of the %d restarts cut a query of pgshift: the test did not exercise the wait", len(faults))
	}

	// A server that stays down past replication.outage_timeout fails the
	// run, naming the side, the bound and how to go on. Green is stopped
	// while the catch-up runs, which cannot finish first: a transaction on
	// green holds ledger in SHARE mode (reads go on, the apply worker's
	// inserts wait), taken before the burst, whose WAL alone is over the
	// catch-up threshold (16 MiB); the stop ends it.
	what := "green down past replication.outage_timeout"
	hold := f.green.Conn(t, "app")
	if _, err := hold.Exec(context.Background(), "BEGIN; LOCK TABLE public.ledger IN SHARE MODE"); err != nil {
		t.Fatalf("%s: hold green's apply worker: %v", what, err)
	}
	rerun(what)
	if lag := f.blue.Scalar(t, "app", "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn) > 16 * 1024 * 1024 FROM pg_replication_slots WHERE slot_name = 'pgshift_"+f.name+"'"); lag != "t" {
		t.Fatalf("%s: setup: with green's apply worker held, blue's slot lags by no more than 16 MiB: the catch-up could finish before green stops", what)
	}
	b, err := os.ReadFile(f.spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.spec, append(b, "replication:\n  outage_timeout: 10s\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startPgshift(t, f.dir, "apply", "-f", f.spec, "--accept-spec-change")
	seen := waitRunning(t, p, f.statePath, "replication.catchup")
	f.green.Stop(t)
	code := p.exitCode()
	out := p.out.String()
	t.Logf("%s (catch-up seen running: %v): apply exit %d", what, seen, code)
	if !seen || code == 0 {
		f.green.Start(t)
		t.Fatalf("%s: apply did not fail in the catch-up (seen running: %v, exit %d):\n%s", what, seen, code, out)
	}
	if st, _ := readState(t, f.statePath); st.status("replication.catchup") != "failed" {
		t.Errorf("%s: the state file says replication.catchup is %q, want failed: %s", what, st.status("replication.catchup"), stepSummary(st))
	}
	for _, want := range []string{"green unreachable for ", "longer than replication.outage_timeout (10s)", "bring green back, or raise replication.outage_timeout"} {
		if !strings.Contains(out, want) {
			t.Errorf("%s: apply's output lacks %q:\n%s", what, want, out)
		}
	}
	s := pgshift(t, f.dir, "status", "-f", f.spec, "--offline")
	if !strings.Contains(s.stdout, "continue with: pgshift apply -f ") && !strings.Contains(s.stdout, "Resume with: pgshift apply -f ") {
		t.Errorf("%s: status does not say how to go on:\n%s", what, s)
	}
	f.green.Start(t)
	if r := pgshift(t, f.dir, "apply", "-f", f.spec, "--accept-spec-change"); r.code != 0 || !strings.Contains(r.stdout, "Apply stopped before cutover") {
		t.Fatalf("%s: apply once green is back:\n%s", what, r)
	}
	f.requireEqual(t, "green back")

	bench.stop(t)
	f.requireEqual(t, "after the restarts, load stopped")
	compareAll(t, f.blue.DSN("app"), f.green.DSN("app"))
}

// TestRetainedWALWhileGreenDown: green stopped while blue writes; blue
// keeps the WAL for pgshift's slot; `pgshift watch` crosses
// watch.max_retained_wal, warns naming the fix, /healthz fails and
// /metrics shows the retained WAL; green comes back, apply converges and
// the rows are equal.
func TestRetainedWALWhileGreenDown(t *testing.T) {
	integration(t)
	t.Parallel()
	addr := freeListenAddr(t)
	f := newFaultPair(t, "walheld", fmt.Sprintf("watch:\n  interval: 1s\n  max_retained_wal: 32MiB\n  listen: %q\n", addr))
	bench := startPooledPgbench(t, f.bouncer, ledgerLoad)

	logPath := filepath.Join(t.TempDir(), "watch.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	watch := exec.Command(pgshiftBin, "watch", "-f", f.spec)
	watch.Dir = f.dir
	watch.Stdout, watch.Stderr = logFile, logFile
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	watchDone := make(chan struct{})
	go func() { _ = watch.Wait(); close(watchDone) }()
	t.Cleanup(func() {
		_ = watch.Process.Kill()
		<-watchDone
	})
	readLog := func() string { b, _ := os.ReadFile(logPath); return string(b) }

	f.green.Stop(t)
	// About 60 MiB of WAL on blue that green cannot confirm.
	for i := 0; i < 6; i++ {
		f.blue.Exec(t, "app", `INSERT INTO public.ledger (note) SELECT repeat('w', 200) FROM generate_series(1, 40000)`)
	}
	slot := "pgshift_walheld"
	retainedRe := regexp.MustCompile(`pgshift_slot_retained_wal_bytes\{slot="` + slot + `"\} ([0-9.e+]+)`)
	var retained float64
	var metrics string
	warned := false
	for deadline := time.Now().Add(30 * time.Second); !warned && time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		metrics = httpBody(t, "http://"+addr+"/metrics")
		if m := retainedRe.FindStringSubmatch(metrics); m != nil {
			retained, _ = strconv.ParseFloat(m[1], 64)
		}
		warned = strings.Contains(readLog(), "over watch.max_retained_wal")
		select {
		case <-watchDone:
			t.Fatalf("watch exited:\n%s", readLog())
		default:
		}
	}
	log := readLog()
	if code, body := httpStatus(t, "http://"+addr+"/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "green") {
		t.Errorf("/healthz with green down and WAL held: %d %q, want 503 naming green", code, body)
	}
	// With green unreachable watch still reads blue's slots: the retained
	// WAL and its warning must show in the very case where blue's disk
	// fills.
	if !warned {
		held := f.blue.Scalar(t, "app", "SELECT pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)) FROM pg_replication_slots WHERE slot_name = '"+slot+"'")
		t.Fatalf("with green down, blue retains %s of WAL for %s (over watch.max_retained_wal 32 MiB), but watch did not warn within 30s (retained series seen: %v); its log:\n%s",
			held, slot, retained, log)
	}
	for _, want := range []string{fmt.Sprintf("replication slot %q", slot), "Make green catch up", "give blue's pg_wal more disk"} {
		if !strings.Contains(log, want) {
			t.Errorf("watch's warning lacks %q:\n%s", want, log)
		}
	}
	if retained < 32<<20 {
		t.Errorf("/metrics: pgshift_slot_retained_wal_bytes{slot=%q} = %v, want over 32 MiB", slot, retained)
	}
	t.Logf("retained %.1f MiB; watch said:\n%s", retained/(1<<20), grepLines(log, "max_retained_wal"))
	if t.Failed() {
		t.FailNow()
	}

	f.green.Start(t)
	r := pgshift(t, f.dir, "apply", "-f", f.spec)
	if r.code != 0 || !strings.Contains(r.stdout, "Apply stopped before cutover") {
		t.Fatalf("apply once green is back:\n%s", r)
	}
	bench.stop(t)
	f.requireEqual(t, "green back")
	compareAll(t, f.blue.DSN("app"), f.green.DSN("app"))
	// Green confirmed what blue kept: the WAL is released at blue's
	// next checkpoint, and watch says so.
	f.blue.Exec(t, "app", "CHECKPOINT")
	waitFor(t, 2*time.Minute, "watch to see the retained WAL back under the limit", func() bool {
		return strings.Contains(readLog(), "back under watch.max_retained_wal")
	})
	if s := pgshift(t, f.dir, "status", "-f", f.spec); !strings.Contains(s.stdout, "approve-cutover") {
		t.Fatalf("status once green is back does not say what comes next:\n%s", s)
	}
}

// faultPair is blue 13 and green 17 with a ledger table, PgBouncer in
// front of blue, and the pipeline applied up to the cutover gate.
type faultPair struct {
	blue, green     *pgtest.Cluster
	bouncer         *pgtest.PgBouncer
	dir, spec       string
	statePath, name string
}

func newFaultPair(t *testing.T, name, extra string) *faultPair {
	t.Helper()
	cs := pgtest.StartClusters(t, []int{13, 17})
	f := &faultPair{blue: cs[0], green: cs[1], name: name, dir: t.TempDir()}
	for _, c := range cs {
		c.CreateDatabase(t, "app")
	}
	f.blue.Exec(t, "app", `CREATE TABLE public.ledger (id bigserial PRIMARY KEY, note text NOT NULL, at timestamptz NOT NULL DEFAULT now());
		INSERT INTO public.ledger (note) SELECT 'seed' FROM generate_series(1, 1000)`)
	f.bouncer = pgtest.StartPgBouncer(t, pgtest.PgBouncerOptions{Databases: map[string]string{
		"app": fmt.Sprintf("host=127.0.0.1 port=%d dbname=app", f.blue.Port),
	}})
	f.spec = filepath.Join(f.dir, name+".yaml")
	f.statePath = filepath.Join(f.dir, name+".pgshift-state.json")
	spec := fmt.Sprintf(`version: 1
name: %s
source:
  dsn: %q
target:
  dsn: %q
%scutover:
  freeze: pooler
  pause_timeout: 5s
  switch:
    pgbouncer:
      admin_dsn: %q
      config: %q
      database: app
`, name, f.blue.DSN("app"), f.green.DSN("app"), extra, f.bouncer.AdminDSN, f.bouncer.ConfigPath)
	if err := os.WriteFile(f.spec, []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := pgshift(t, f.dir, "apply", "-f", f.spec); r.code != 0 || !strings.Contains(r.stdout, "Apply stopped before cutover") {
		t.Fatalf("first apply:\n%s", r)
	}
	return f
}

// requireEqual: green holds every ledger row blue held when it was called,
// no more and no fewer, and exactly one publication, slot and subscription
// exist.
func (f *faultPair) requireEqual(t *testing.T, what string) {
	t.Helper()
	blue, green := connect(t, f.blue.DSN("app")), connect(t, f.green.DSN("app"))
	if o := countObjects(t, blue, green); o.publications != 1 || o.subscriptions != 1 || len(o.slotNames) != 1 || o.slotNames[0] != "pgshift_"+f.name {
		t.Fatalf("%s: %d publications, %d subscriptions, slots %v; want one of each", what, o.publications, o.subscriptions, o.slotNames)
	}
	last := scalar[int64](t, blue, `SELECT max(id) FROM public.ledger`)
	want := scalar[int64](t, blue, `SELECT count(*) FROM public.ledger WHERE id <= $1`, last)
	waitCaughtUp(t, blue, "pgshift_"+f.name)
	if got := scalar[int64](t, green, `SELECT count(*) FROM public.ledger WHERE id <= $1`, last); got != want {
		t.Fatalf("%s: green holds %d ledger rows up to id %d, blue %d", what, got, last, want)
	}
	t.Logf("%s: green holds blue's %d ledger rows up to id %d", what, want, last)
}

// waitRunning waits until step is running in the state file; false when
// the run ended or got past it first.
func waitRunning(t *testing.T, p *running, statePath, step string) bool {
	t.Helper()
	deadline := time.Now().Add(cliTimeout)
	for !p.done() && time.Now().Before(deadline) {
		if st, ok := readState(t, statePath); ok {
			switch st.status(step) {
			case "running":
				return true
			case "done", "failed":
				return false
			}
		}
		time.Sleep(time.Millisecond)
	}
	return false
}

func freeListenAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func httpBody(t *testing.T, url string) string {
	t.Helper()
	_, body := httpStatus(t, url)
	return body
}

// httpStatus GETs url; a refused connection (watch not listening yet) is
// status 0.
func httpStatus(t *testing.T, url string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// killNow ends pgbench without judging its output (its connections died
// with a server on purpose).
func (p *pooledPgbench) killNow() {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// waitThroughBouncer waits until a query through PgBouncer succeeds again:
// after a server restart PgBouncer refuses logins for server_login_retry.
func waitThroughBouncer(t *testing.T, b *pgtest.PgBouncer) {
	t.Helper()
	waitFor(t, time.Minute, "a query through PgBouncer to succeed", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, b.DSN("app")+"&default_query_exec_mode=simple_protocol")
		if err != nil {
			return false
		}
		defer c.Close(context.Background())
		_, err = c.Exec(ctx, "SELECT 1")
		return err == nil
	})
}
