package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/internal/rowcompare"
)

// waitDeadline bounds every wait on replication: generous, because the
// machine running the tests may be loaded; never a timed assertion.
const waitDeadline = 4 * time.Minute

// pagilaPair starts blue 13 and green 17, loads pagila and pgbench's tables
// into blue's database "pagila", and writes a spec named name for the pair.
func pagilaPair(t *testing.T, name string) (blue, green *pgtest.Cluster, dir, spec string) {
	t.Helper()
	cs := pgtest.StartClusters(t, []int{13, 17})
	blue, green = cs[0], cs[1]
	blue.CreateDatabase(t, "pagila")
	green.CreateDatabase(t, "pagila")
	loadPagila(t, blue, "pagila")
	initPgbench(t, blue, "pagila", false)
	dir, spec = writeSpec(t, specOptions{name: name, blue: blue.DSN("pagila"), green: green.DSN("pagila")})
	return blue, green, dir, spec
}

// loadPagila loads pagila's schema and data into db on c.
func loadPagila(t *testing.T, c *pgtest.Cluster, db string) {
	t.Helper()
	for _, f := range []string{"pagila-schema.sql", "pagila-data.sql"} {
		c.LoadSQLFile(t, db, pgtest.PagilaFile(t, f))
	}
}

// pagilaTables are pagila's tables that hold rows.
var pagilaTables = []string{"public.actor", "public.address", "public.category", "public.city", "public.country",
	"public.customer", "public.film", "public.film_actor", "public.film_category", "public.inventory",
	"public.language", "public.payment", "public.rental", "public.staff", "public.store"}

// specOptions shape a test spec.
type specOptions struct {
	name  string
	blue  string // DSN
	green string // DSN
	extra string // more top-level YAML, e.g. "tables:\n  exclude: [...]\n"
}

// writeSpec writes a spec into a fresh folder and returns the folder and
// the spec's path. The exec switch does nothing: these tests stop at the
// cutover gate.
func writeSpec(t *testing.T, o specOptions) (dir, path string) {
	t.Helper()
	dir = t.TempDir()
	path = filepath.Join(dir, o.name+".yaml")
	spec := fmt.Sprintf(`version: 1
name: %s
source:
  dsn: %q
target:
  dsn: %q
cutover:
  switch:
    exec:
      switch: ["true"]
      back: ["true"]
%s`, o.name, o.blue, o.green, o.extra)
	if err := os.WriteFile(path, []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, path
}

// stepState is what the tests read of the state file.
type stepState struct {
	ID      string            `json:"id"`
	Status  string            `json:"status"`
	Error   string            `json:"error"`
	Outputs map[string]string `json:"outputs"`
}

type stateFile struct {
	Steps []stepState `json:"steps"`
}

func (s *stateFile) status(id string) string {
	for _, st := range s.Steps {
		if st.ID == id {
			return st.Status
		}
	}
	return ""
}

func (s *stateFile) output(id, key string) string {
	for _, st := range s.Steps {
		if st.ID == id {
			return st.Outputs[key]
		}
	}
	return ""
}

// readState reads the state file; ok is false while it does not exist.
func readState(t *testing.T, path string) (st *stateFile, ok bool) {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, false
	}
	if err != nil {
		t.Fatal(err)
	}
	st = &stateFile{}
	if err := json.Unmarshal(b, st); err != nil {
		t.Fatalf("state file %s does not parse: %v\n%s", path, err, b)
	}
	return st, true
}

// planJSON is what the tests read of `pgshift plan --format json`.
type planJSON struct {
	Steps []struct {
		ID       string   `json:"id"`
		Action   string   `json:"action"`
		Summary  string   `json:"summary"`
		Blockers []string `json:"blockers"`
	} `json:"steps"`
}

// planSteps runs plan --format json; a plan with blockers exits 1 and is
// still printed.
func planSteps(t *testing.T, dir, spec string) *planJSON {
	t.Helper()
	r := pgshift(t, dir, "plan", "-f", spec, "--format", "json")
	if r.code != 0 && (r.code != 1 || !strings.Contains(r.stderr, "blocker")) {
		t.Fatalf("plan --format json:\n%s", r)
	}
	var p planJSON
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		t.Fatalf("plan JSON: %v\n%s", err, r.stdout)
	}
	return &p
}

func (p *planJSON) has(id string) bool {
	for _, s := range p.Steps {
		if s.ID == id {
			return true
		}
	}
	return false
}

// planLine finds the text plan's line for a step: "  <mark> <id>  ...".
func planLine(plan, id string) (mark string, line string, ok bool) {
	for _, l := range strings.Split(plan, "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[1] == id {
			return f[0], l, true
		}
	}
	return "", "", false
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func scalar[T any](t *testing.T, c *pgx.Conn, sql string, args ...any) T {
	t.Helper()
	var v T
	if err := c.QueryRow(context.Background(), sql, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

// waitCaughtUp waits until the slot on blue has confirmed everything blue
// had written when the wait began: green then holds all of it.
func waitCaughtUp(t *testing.T, blue *pgx.Conn, slot string) {
	t.Helper()
	target := scalar[string](t, blue, `SELECT pg_current_wal_lsn()::text`)
	deadline := time.Now().Add(waitDeadline)
	for {
		var done bool
		err := blue.QueryRow(context.Background(),
			`SELECT coalesce(confirmed_flush_lsn >= $2::text::pg_lsn, false) FROM pg_replication_slots WHERE slot_name = $1`,
			slot, target).Scan(&done)
		if err != nil {
			t.Fatalf("slot %s on blue: %v", slot, err)
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			lag := scalar[string](t, blue, `SELECT coalesce((pg_current_wal_lsn() - confirmed_flush_lsn)::text, 'none') FROM pg_replication_slots WHERE slot_name = $1`, slot)
			t.Fatalf("green did not catch up with blue's WAL %s within %s (lag %s bytes)", target, waitDeadline, lag)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// compareAll compares every table of blue with green, row by row, and
// returns the results by table. Both sides must list the same tables;
// tables the spec leaves out (skip) are not compared.
func compareAll(t *testing.T, blueDSN, greenDSN string, skip ...string) map[string]rowcompare.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitDeadline)
	defer cancel()
	blue, green := connect(t, blueDSN), connect(t, greenDSN)
	tables, err := rowcompare.Tables(ctx, blue)
	if err != nil {
		t.Fatal(err)
	}
	greenTables, err := rowcompare.Tables(ctx, green)
	if err != nil {
		t.Fatal(err)
	}
	tables, greenTables = without(tables, skip), without(greenTables, skip)
	if strings.Join(tables, ",") != strings.Join(greenTables, ",") {
		t.Fatalf("tables differ:\nblue  %v\ngreen %v", tables, greenTables)
	}
	res, err := rowcompare.Compare(ctx, blue, green, tables)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]rowcompare.Result{}
	var bad []string
	for _, r := range res {
		out[r.Table] = r
		if !r.Equal {
			bad = append(bad, r.String())
		}
	}
	if len(bad) > 0 {
		t.Fatalf("green differs from blue:\n  %s", strings.Join(bad, "\n  "))
	}
	return out
}

// replicationObjects counts pgshift's objects: publications and slots on
// blue (slots of the table copy, pg_*_sync_*, included), subscriptions on
// green.
type replicationObjects struct {
	publications, slots, subscriptions int
	slotNames                          []string
}

func countObjects(t *testing.T, blue, green *pgx.Conn) replicationObjects {
	t.Helper()
	o := replicationObjects{
		publications:  scalar[int](t, blue, `SELECT count(*)::int FROM pg_publication`),
		slots:         scalar[int](t, blue, `SELECT count(*)::int FROM pg_replication_slots`),
		subscriptions: scalar[int](t, green, `SELECT count(*)::int FROM pg_subscription`),
	}
	o.slotNames = scalar[[]string](t, blue, `SELECT coalesce(array_agg(slot_name::text ORDER BY 1), '{}') FROM pg_replication_slots`)
	return o
}

// pgbench writes to blue in the background: pgbench's own tables and
// pagila's (a payment inserted through the partitioned root, a customer
// updated).
type pgbench struct {
	cmd    *exec.Cmd
	out    bytes.Buffer
	exited chan struct{}
}

const pgbenchScript = `\set aid random(1, 100000 * :scale)
\set bid random(1, 1 * :scale)
\set tid random(1, 10 * :scale)
\set delta random(-5000, 5000)
\set cid random(1, 599)
\set secs random(0, 2000000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
UPDATE public.customer SET activebool = NOT activebool WHERE customer_id = :cid;
INSERT INTO public.payment (customer_id, staff_id, rental_id, amount, payment_date)
  SELECT :cid, 1, r.rental_id, 4.99, timestamptz '2022-02-01 00:00:00+00' + make_interval(secs => :secs)
    FROM public.rental r WHERE r.customer_id = :cid ORDER BY r.rental_id LIMIT 1;
END;
`

// initPgbench creates pgbench's tables (scale 1) in db on blue; its
// history table has no key, so it gets REPLICA IDENTITY FULL unless the
// spec leaves it out (keyless).
func initPgbench(t *testing.T, blue *pgtest.Cluster, db string, keyless bool) {
	t.Helper()
	bin := pgtest.RequireClientBin(t, "pgbench")
	out, err := exec.Command(bin, "-i", "-q", "-s", "1", blue.DSN(db)).CombinedOutput()
	if err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	if !keyless {
		blue.Exec(t, db, `ALTER TABLE public.pgbench_history REPLICA IDENTITY FULL`)
	}
}

// startPgbench runs the script with two clients at a modest rate until
// stop; its output is checked for errors then.
func startPgbench(t *testing.T, blue *pgtest.Cluster, db string) *pgbench {
	t.Helper()
	bin := pgtest.RequireClientBin(t, "pgbench")
	script := filepath.Join(t.TempDir(), "writes.sql")
	if err := os.WriteFile(script, []byte(pgbenchScript), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &pgbench{exited: make(chan struct{})}
	p.cmd = exec.Command(bin, "-n", "-c", "2", "-j", "1", "-R", "50", "-T", "3600", "-f", script, blue.DSN(db))
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *pgbench) kill() {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
	}
}

// stop ends pgbench; it fails the test when pgbench had stopped on its own
// or reported an error (its writes would not have run the whole time).
func (p *pgbench) stop(t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
		t.Fatalf("pgbench stopped before the test ended it:\n%s", p.out.String())
	default:
	}
	p.kill()
	if out := p.out.String(); strings.Contains(out, "ERROR") || strings.Contains(out, "aborted") {
		t.Fatalf("pgbench reported errors:\n%s", out)
	}
}

func without(list, drop []string) []string {
	var out []string
	for _, s := range list {
		if !slices.Contains(drop, s) {
			out = append(out, s)
		}
	}
	return out
}

// done says whether pgbench has exited.
func (p *pgbench) done() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}
