package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pgshift/pgshift/internal/pgtest"
)

// TestPagilaPipeline takes pagila, with pgbench's tables beside it and
// pgbench writing to both the whole time, from blue to green through the
// CLI: validate, plan (+ for every step), apply up to the cutover gate
// with verify passed, plan again (✓ for what is done), status (per-table
// state and lag). Once pgbench stops and green has caught up, every table
// is compared row by row with rowcompare; cleanup then drops the
// replication objects and green keeps its rows.
func TestPagilaPipeline(t *testing.T) {
	integration(t)
	t.Parallel()
	for _, tc := range []struct {
		name        string
		blue, green int
		extra       string
		excluded    []string // tables the spec leaves out
	}{
		{name: "13to17", blue: 13, green: 17},
		// pgbench_history, without a key, left out rather than given a
		// replica identity.
		{name: "15to18", blue: 15, green: 18, extra: "tables:\n  exclude: [public.pgbench_history]\n", excluded: []string{"public.pgbench_history"}},
		{name: "15to17-snapshot", blue: 15, green: 17, extra: "replication:\n  initial_copy:\n    method: snapshot\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			runPagilaPipeline(t, tc.blue, tc.green, tc.extra, tc.excluded)
		})
	}
}

func runPagilaPipeline(t *testing.T, blueMajor, greenMajor int, extra string, excluded []string) {
	cs := pgtest.StartClusters(t, []int{blueMajor, greenMajor})
	blue, green := cs[0], cs[1]
	blue.CreateDatabase(t, "pagila")
	green.CreateDatabase(t, "pagila")
	loadPagila(t, blue, "pagila")
	initPgbench(t, blue, "pagila", len(excluded) > 0)

	name := fmt.Sprintf("pagila-%d-%d", blueMajor, greenMajor)
	dir, spec := writeSpec(t, specOptions{name: name, blue: blue.DSN("pagila"), green: green.DSN("pagila"), extra: extra})
	slot := "pgshift_" + strings.ReplaceAll(name, "-", "_")

	bench := startPgbench(t, blue, "pagila")
	blueConn := connect(t, blue.DSN("pagila"))
	historyBefore := scalar[int64](t, blueConn, `SELECT count(*) FROM public.pgbench_history`)

	if r := pgshift(t, dir, "validate", "-f", spec); r.code != 0 {
		t.Fatalf("validate:\n%s", r)
	}

	r := pgshift(t, dir, "plan", "-f", spec, "--no-color")
	if r.code != 0 {
		t.Fatalf("plan:\n%s", r)
	}
	p := planSteps(t, dir, spec)
	gated := p.has("cutover")
	for _, s := range p.Steps {
		mark, line, ok := planLine(r.stdout, s.ID)
		if !ok {
			t.Fatalf("the text plan has no line for %s:\n%s", s.ID, r.stdout)
		}
		if s.Action == "blocker" {
			t.Errorf("plan: %s is blocked: %q", s.ID, s.Blockers)
		}
		if createdByApply[s.ID] && mark != "+" {
			t.Errorf("plan before apply: %s shows %q, want +\n%s", s.ID, mark, line)
		}
	}
	if t.Failed() {
		t.Fatalf("plan:\n%s", r.stdout)
	}

	r = pgshift(t, dir, "apply", "-f", spec)
	if r.code != 0 {
		t.Fatalf("apply:\n%s", r)
	}
	st, ok := readState(t, dir+"/"+name+".pgshift-state.json")
	if !ok {
		t.Fatal("apply left no state file")
	}
	if gated {
		if !strings.Contains(r.stdout, "Apply stopped before cutover: approval needed") {
			t.Fatalf("apply did not stop at the cutover gate:\n%s", r)
		}
		if s := st.status("cutover"); s != "pending" {
			t.Fatalf("cutover is %q after apply without approval, want pending", s)
		}
	} else if !strings.Contains(r.stdout, "Apply complete") {
		t.Fatalf("apply did not complete:\n%s", r)
	}
	if res := st.output("verify", "result"); res != "passed" {
		t.Fatalf("verify recorded %q, want passed", res)
	}
	if strings.Contains(extra, "snapshot") && st.status("target.copy") != "done" {
		t.Fatalf("snapshot method: target.copy is %q, want done", st.status("target.copy"))
	}
	for _, s := range st.Steps {
		if s.ID != "cutover" && s.Status != "done" {
			t.Fatalf("after apply %s is %s %s", s.ID, s.Status, s.Error)
		}
	}

	r = pgshift(t, dir, "plan", "-f", spec, "--no-color")
	if r.code != 0 {
		t.Fatalf("plan after apply:\n%s", r)
	}
	// Done steps show ✓; a check whose findings are warnings (audit's
	// materialized view) keeps showing them as !.
	after := planSteps(t, dir, spec)
	for _, s := range after.Steps {
		mark, line, ok := planLine(r.stdout, s.ID)
		want := "✓"
		switch {
		case s.ID == "cutover":
			want = "+"
		case s.Action == "warning":
			want = "!"
		}
		if !ok || mark != want || (st.status(s.ID) == "done" && (s.Action == "blocker" || s.Action == "create")) {
			t.Errorf("plan after apply: %s shows %q (%s), want %s: %q", s.ID, mark, s.Action, want, line)
		}
	}
	if t.Failed() {
		t.Fatalf("plan after apply:\n%s", r.stdout)
	}

	r = pgshift(t, dir, "status", "-f", spec)
	if r.code != 0 {
		t.Fatalf("status:\n%s", r)
	}
	for _, want := range []string{"verify", "done", "lag ", "public.payment", "public.pgbench_accounts", "tables ready"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status lacks %q", want)
		}
	}
	for _, tbl := range excluded {
		if strings.Contains(r.stdout, tbl) {
			t.Errorf("status shows %s, which the spec leaves out", tbl)
		}
	}
	for _, tbl := range pagilaTables {
		if !statusShowsReady(r.stdout, tbl) {
			t.Errorf("status does not show %s ready", tbl)
		}
	}
	if t.Failed() {
		t.Fatalf("status:\n%s", r.stdout)
	}
	t.Logf("status:\n%s", r.stdout)

	bench.stop(t)
	if after := scalar[int64](t, blueConn, `SELECT count(*) FROM public.pgbench_history`); after <= historyBefore {
		t.Fatalf("pgbench wrote nothing during the run (%d history rows before, %d after)", historyBefore, after)
	}
	waitCaughtUp(t, blueConn, slot)
	res := compareAll(t, blue.DSN("pagila"), green.DSN("pagila"), excluded...)
	for _, tbl := range without(append(pagilaTables, "public.pgbench_accounts", "public.pgbench_history"), excluded) {
		if res[tbl].GreenRows == 0 {
			t.Errorf("%s: no rows on green (%s)", tbl, res[tbl])
		}
	}
	for _, tbl := range excluded {
		if n := scalar[int64](t, blueConn, `SELECT count(*) FROM pg_publication_tables WHERE schemaname || '.' || tablename = $1`, tbl); n != 0 {
			t.Errorf("%s, left out by the spec, is in blue's publication", tbl)
		}
	}
	t.Logf("%d tables equal on blue and green, e.g. %s; %s", len(res), res["public.payment"], res["public.pgbench_accounts"])

	// Blue retired: cleanup shows what it drops, drops it, and green keeps
	// its rows. A second cleanup has nothing left to drop.
	greenConn := connect(t, green.DSN("pagila"))
	r = pgshift(t, dir, "cleanup", "-f", spec, "--yes")
	if r.code != 0 {
		t.Fatalf("cleanup:\n%s", r)
	}
	for _, want := range []string{"- ", slot} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("cleanup output lacks %q:\n%s", want, r)
		}
	}
	if o := countObjects(t, blueConn, greenConn); o.publications != 0 || o.slots != 0 || o.subscriptions != 0 {
		t.Fatalf("cleanup left objects: %d publications, %d subscriptions, slots %v", o.publications, o.subscriptions, o.slotNames)
	}
	if n := scalar[int64](t, greenConn, `SELECT count(*) FROM public.rental`); n != res["public.rental"].BlueRows {
		t.Fatalf("green holds %d rentals after cleanup, want %d", n, res["public.rental"].BlueRows)
	}
	if r = pgshift(t, dir, "cleanup", "-f", spec, "--yes"); r.code != 0 {
		t.Fatalf("second cleanup:\n%s", r)
	}
}

// createdByApply are the steps that have something to create on a fresh
// pair (the checks and the roles, which pagila's owner already has on
// green, may show as in place).
var createdByApply = map[string]bool{"target.schema": true, "source.publication": true, "source.slot": true,
	"target.copy": true, "target.subscription": true, "replication.catchup": true, "verify": true, "cutover": true}

// statusShowsReady finds a table's line in status with the ready state.
func statusShowsReady(status, table string) bool {
	for _, l := range strings.Split(status, "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == table && f[1] == "r" {
			return true
		}
	}
	return false
}
