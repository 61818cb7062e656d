package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/pgshift/pgshift/internal/pgtest"
)

// BenchmarkCompare is `make bench`: on one pgbench database, blue 15 ->
// green 17, every way of filling green until it holds all rows with all
// indexes, one after the other on the same machine and the same data, with
// a fresh green database for each; then verify against two scan floors.
// It prints one table with wall times and ratios against the native
// subscription. A method that fails prints FAILED with the reason; the
// others still run.
//
// BENCH_SCALE sets the pgbench scale (default 70: pgbench_accounts over
// 1 GB with its key), BENCH_SPLIT_MB the split size of big tables for
// pgshift and pgcopydb (default 128), BENCH_ROWS a comma list of the rows
// to run (native,snapshot2,snapshot4,pgcopydb,dump,raw,verify; default all),
// BENCH_ROUNDS how many times the rows run (the table shows the best time
// and every round's), BENCH_DIR where specs, states and logs are kept
// (default a new folder under the temp folder, kept and named at the end).
func BenchmarkCompare(b *testing.B) {
	scale := envInt(b, "BENCH_SCALE", 70)
	splitMB := envInt(b, "BENCH_SPLIT_MB", 128)
	rounds := envInt(b, "BENCH_ROUNDS", 1)
	want := map[string]bool{}
	for _, r := range strings.Split(os.Getenv("BENCH_ROWS"), ",") {
		if r = strings.TrimSpace(r); r != "" {
			want[r] = true
		}
	}
	run := func(key string) bool { return len(want) == 0 || want[key] }

	r := &rig{
		dir:       benchDir(b),
		psql:      pgtest.RequireClientBin(b, "psql"),
		pgDump:    pgtest.RequireClientBin(b, "pg_dump"),
		pgRestore: pgtest.RequireClientBin(b, "pg_restore"),
		split:     fmt.Sprintf("%dMiB", splitMB),
		splitMB:   splitMB,
	}
	if p, err := exec.LookPath("pgcopydb"); err == nil {
		r.pgcopydb = p
	}
	pgbench := pgtest.RequireClientBin(b, "pgbench")
	var err error
	if r.pgshift, err = buildPgshift(r.dir); err != nil {
		b.Fatal(err)
	}
	// The same settings on both sides for every method: room for the WAL of
	// a bulk load without forced checkpoints, and buffers for index builds.
	// Durable as in production (the test rig turns fsync and full-page
	// writes off): WAL-heavy methods pay their real price.
	settings := map[string]string{
		"shared_buffers":       "256MB",
		"max_wal_size":         "8GB",
		"checkpoint_timeout":   "30min",
		"maintenance_work_mem": "256MB",
		"fsync":                "on",
		"full_page_writes":     "on",
	}
	if os.Getenv("BENCH_DURABLE") == "0" {
		delete(settings, "fsync")
		delete(settings, "full_page_writes")
	}
	cs := pgtest.StartClusters(b, []int{15, 17}, pgtest.ClusterOptions{Settings: settings})
	r.blue, r.green = cs[0], cs[1]
	r.blue.CreateDatabase(b, benchDB)
	t0 := time.Now()
	if out, err := exec.Command(pgbench, "-i", "-q", "-s", strconv.Itoa(scale), "-h", r.blue.Host, "-p", strconv.Itoa(r.blue.Port), "-U", "postgres", benchDB).CombinedOutput(); err != nil {
		b.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	r.blue.Exec(b, benchDB, "ALTER TABLE pgbench_history REPLICA IDENTITY FULL")
	r.blue.Exec(b, benchDB, "VACUUM ANALYZE")
	load := time.Since(t0)
	heap := atoi(r.blue.Scalar(b, benchDB, "SELECT sum(pg_table_size(c.oid)) FROM pg_class c WHERE c.relname LIKE 'pgbench\\_%' AND c.relkind = 'r'"))
	accounts := atoi(r.blue.Scalar(b, benchDB, "SELECT pg_total_relation_size('pgbench_accounts')"))
	accountsHeap := atoi(r.blue.Scalar(b, benchDB, "SELECT pg_table_size('pgbench_accounts')"))
	rows := r.blue.Scalar(b, benchDB, "SELECT count(*) FROM pgbench_accounts")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Hour)
	defer cancel()
	var copies []result
	var verifies []verifyResult
	// row runs one method on a fresh green and checks the outcome; a panic
	// or an error fails that row only.
	row := func(name string, f func(context.Context) result) {
		res := func() (res result) {
			defer func() {
				if p := recover(); p != nil {
					res = result{name: name, err: fmt.Errorf("panic: %v", p)}
				}
			}()
			rctx, cancel := context.WithTimeout(ctx, 45*time.Minute)
			defer cancel()
			if err := r.freshGreen(rctx); err != nil {
				return result{name: name, err: fmt.Errorf("fresh green: %w", err)}
			}
			res = f(rctx)
			if res.err == nil {
				if err := r.checkGreen(rctx); err != nil {
					res.err = fmt.Errorf("green incomplete: %w", err)
				}
			}
			return res
		}()
		if res.name == "" {
			res.name = name
		}
		status := "ok"
		if res.err != nil {
			status = "FAILED: " + res.err.Error()
		}
		fmt.Fprintf(os.Stderr, "bench: %s: %s (%s)\n", res.name, res.wall.Round(time.Millisecond), firstLine(status))
		copies = append(copies, res)
	}

	rep := report{
		scale: scale, rows: rows, heap: heap, accounts: accounts, accountsHeap: accountsHeap, load: load,
		blue: r.blue.Version, green: r.green.Version, splitMB: splitMB, dir: r.dir,
	}
	type method struct {
		name string
		run  func(context.Context) result
	}
	var methods []method
	add := func(key, name string, f func(context.Context) result) {
		if run(key) {
			methods = append(methods, method{name, f})
		}
	}
	add("native", "native subscription (copy_data = true)", r.native)
	for _, w := range []int{2, 4} {
		verifyHere := run("verify") && (w == 4 || !run("snapshot4"))
		add(fmt.Sprintf("snapshot%d", w), fmt.Sprintf("pgshift snapshot, %d workers", w), func(ctx context.Context) result {
			res, spec := r.snapshot(ctx, w)
			// Verify runs on the green this copy filled, before the next
			// method replaces it; its rows have their own table.
			if res.err == nil && verifyHere {
				verifies = r.verifyRows(ctx, spec)
			}
			return res
		})
	}
	add("pgcopydb", "pgcopydb clone", func(ctx context.Context) result { return r.pgcopydbClone(ctx, 4) })
	add("dump", "pg_dump -Fc | pg_restore", r.dumpRestore)
	add("raw", "raw binary COPY", r.raw)

	for round := 1; round <= rounds; round++ {
		r.round = round
		copies = nil
		verifies = nil
		// The order turns by one method per round, so that no method always
		// follows the same neighbour (a checkpoint, an autovacuum, another
		// tenant's burst of load).
		for i := range methods {
			m := methods[(i+round-1)%len(methods)]
			row(m.name, m.run)
		}

		rep.copies = append(rep.copies, copies)
		if verifies != nil {
			rep.verifies = append(rep.verifies, verifies)
		}
		if round < rounds {
			// A table after every round: a later crash loses nothing.
			printReport(os.Stderr, rep)
		}
	}
	printReport(os.Stdout, rep)
	for _, round := range rep.copies {
		for _, c := range round {
			if c.err != nil {
				b.Errorf("%s: %v", c.name, c.err)
			}
		}
	}
	for _, round := range rep.verifies {
		for _, v := range round {
			if v.err != nil {
				b.Errorf("%s: %v", v.name, v.err)
			}
		}
	}
}

// verifyRows times pgshift's verify (real binary, on the state of the
// snapshot run) and the two floors, each side of each at the same time.
func (r *rig) verifyRows(ctx context.Context, spec string) []verifyResult {
	// The first read of freshly copied rows sets their hint bits on green
	// (and writes those pages): whichever scan comes first pays for it. It
	// is timed on its own so that verify and the floors meet the same pages.
	first := r.scanBoth(ctx, "first count(*) after the copy (sets hint bits)", "", "SELECT count(*) FROM %s")
	v := r.pgshiftVerify(ctx, spec)
	out := []verifyResult{v, r.scanBoth(ctx, "floor: count(*) both sides at once", "", "SELECT count(*) FROM %s")}
	out = append(out, r.scanBoth(ctx, "sum(hashtext(t::text)) both sides at once", pinned, "SELECT sum(hashtext(t::text)) FROM %s t"))
	// The same pass with as many backends per side as verify's 2 workers.
	out = append(out, r.scanBoth(ctx, "  same, 2 backends per side (as verify's 2 workers)", pinned+"; SET max_parallel_workers_per_gather = 1", "SELECT sum(hashtext(t::text)) FROM %s t"))
	out = append(out, first)
	for _, x := range out {
		fmt.Fprintf(os.Stderr, "bench: %s: %s %v\n", x.name, x.wall.Round(time.Millisecond), x.err)
	}
	return out
}

type report struct {
	scale                        int
	rows                         string
	heap, accounts, accountsHeap int64
	load                         time.Duration
	blue, green                  string
	splitMB                      int
	dir                          string
	copies                       [][]result       // by round
	verifies                     [][]verifyResult // by round
}

// row is one method over every round: its best successful run and the
// time (or failure) of each round.
type row struct {
	name   string
	best   *result
	rounds []string
	ok     []time.Duration // the successful rounds
	err    error           // the last failure, when no round succeeded
}

// median of the successful rounds: the machine is shared, the best round
// is the one least disturbed, the median the typical one.
func (x *row) median() time.Duration {
	if len(x.ok) == 0 {
		return 0
	}
	d := slices.Clone(x.ok)
	slices.Sort(d)
	if len(d)%2 == 1 {
		return d[len(d)/2]
	}
	return (d[len(d)/2-1] + d[len(d)/2]) / 2
}

func collect(rounds [][]result) []*row {
	var out []*row
	by := map[string]*row{}
	for _, round := range rounds {
		for i := range round {
			c := round[i]
			x := by[c.name]
			if x == nil {
				x = &row{name: c.name}
				by[c.name] = x
				out = append(out, x)
			}
			if c.err != nil {
				x.rounds = append(x.rounds, "FAILED")
				x.err = c.err
				continue
			}
			x.rounds = append(x.rounds, fmt.Sprintf("%.1f", c.wall.Seconds()))
			x.ok = append(x.ok, c.wall)
			if x.best == nil || c.wall < x.best.wall {
				x.best = &c
			}
		}
	}
	return out
}

func printReport(out io.Writer, rep report) {
	fmt.Fprintf(out, "\npgshift benchmark: pgbench scale %d (pgbench_accounts %s rows, %s with its key, %s heap; %s of table data), blue %s -> green %s\n",
		rep.scale, rep.rows, mb(rep.accounts), mb(rep.accountsHeap), mb(rep.heap), rep.blue, rep.green)
	fmt.Fprintf(out, "machine: %d cores (runtime.NumCPU), GOMAXPROCS %d; blue loaded in %s; split size %d MB; %d round(s), best shown; logs in %s\n\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), rep.load.Round(time.Second), rep.splitMB, len(rep.copies), rep.dir)

	rows := collect(rep.copies)
	best := func(prefix string) time.Duration {
		for _, x := range rows {
			if x.best != nil && strings.HasPrefix(x.name, prefix) {
				return x.best.wall
			}
		}
		return 0
	}
	native := best("native")
	var nativeMedian time.Duration
	for _, x := range rows {
		if strings.HasPrefix(x.name, "native") {
			nativeMedian = x.median()
		}
	}
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "initial copy, until green holds all rows and all indexes\tbest s\t× native\tfaster than native\tmedian s\tfaster (medians)\tpeak RSS (pgshift)\trounds (s)\tnote (best round)\n")
	for _, x := range rows {
		if x.best == nil {
			fmt.Fprintf(w, "%s\tFAILED\t\t\t\t\t\t%s\t%s\n", x.name, strings.Join(x.rounds, ", "), oneLine(x.err.Error(), 200))
			continue
		}
		c := x.best
		ratio, speed, mspeed := "-", "-", "-"
		if native > 0 {
			ratio = fmt.Sprintf("%.2f×", c.wall.Seconds()/native.Seconds())
			speed = fmt.Sprintf("%.2f×", native.Seconds()/c.wall.Seconds())
		}
		if nativeMedian > 0 {
			mspeed = fmt.Sprintf("%.2f×", nativeMedian.Seconds()/x.median().Seconds())
		}
		rss := ""
		if c.peakRSS > 0 {
			rss = mb(c.peakRSS)
		}
		fmt.Fprintf(w, "%s\t%.1f\t%s\t%s\t%.1f\t%s\t%s\t%s\t%s\n", c.name, c.wall.Seconds(), ratio, speed, x.median().Seconds(), mspeed, rss, strings.Join(x.rounds, ", "), c.note)
	}
	w.Flush()

	var vrows []*row
	if len(rep.verifies) > 0 {
		asResults := make([][]result, len(rep.verifies))
		for i, round := range rep.verifies {
			for _, v := range round {
				asResults[i] = append(asResults[i], result(v))
			}
		}
		vrows = collect(asResults)
		vbest := func(prefix string) time.Duration {
			for _, x := range vrows {
				if x.best != nil && strings.HasPrefix(x.name, prefix) {
					return x.best.wall
				}
			}
			return 0
		}
		floor, hash := vbest("floor"), vbest("sum(hashtext")
		fmt.Fprintf(out, "\nverify, %s of table data per side (both sides read)\n", mb(rep.heap))
		w = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintf(w, "\tseconds\tMB/s (one side's data)\tof count(*) floor\tof hash pass\tpeak RSS (pgshift)\trounds (s)\tnote\n")
		for _, x := range vrows {
			if x.best == nil {
				fmt.Fprintf(w, "%s\tFAILED\t\t\t\t\t%s\t%s\n", x.name, strings.Join(x.rounds, ", "), oneLine(x.err.Error(), 200))
				continue
			}
			v := x.best
			pct := func(base time.Duration) string {
				if base == 0 || v.wall == 0 {
					return "-"
				}
				return fmt.Sprintf("%.0f%%", 100*base.Seconds()/v.wall.Seconds())
			}
			rss := ""
			if v.peakRSS > 0 {
				rss = mb(v.peakRSS)
			}
			fmt.Fprintf(w, "%s\t%.1f\t%.1f\t%s\t%s\t%s\t%s\t%s\n", v.name, v.wall.Seconds(),
				float64(rep.heap)/(1<<20)/v.wall.Seconds(), pct(floor), pct(hash), rss, strings.Join(x.rounds, ", "), v.note)
		}
		w.Flush()
	}

	fmt.Fprintf(out, "\ntargets (same run; best rounds, then medians):\n")
	check := func(label string, ok bool, detail string) {
		verdict := "MISSED"
		if ok {
			verdict = "met"
		}
		fmt.Fprintf(out, "  %-55s %-7s %s\n", label, verdict, detail)
	}
	get := func(prefix string, median bool) float64 {
		for _, x := range rows {
			if x.best != nil && strings.HasPrefix(x.name, prefix) {
				if median {
					return x.median().Seconds()
				}
				return x.best.wall.Seconds()
			}
		}
		return 0
	}
	for _, median := range []bool{false, true} {
		which := "best"
		if median {
			which = "median"
		}
		raw, pgcopydb, nat := get("raw", median), get("pgcopydb", median), get("native", median)
		for _, wk := range []int{2, 4} {
			snap := get(fmt.Sprintf("pgshift snapshot, %d workers", wk), median)
			if snap == 0 {
				continue
			}
			if raw > 0 {
				check(fmt.Sprintf("%s: snapshot %dw within 1.2× of the raw pipeline", which, wk), snap/raw <= 1.2, fmt.Sprintf("%.2f× its time", snap/raw))
			}
			if nat > 0 {
				check(fmt.Sprintf("%s: snapshot %dw at least 2× faster than native", which, wk), nat/snap >= 2, fmt.Sprintf("%.2f×", nat/snap))
			}
			if pgcopydb > 0 {
				check(fmt.Sprintf("%s: snapshot %dw at least 1.5× faster than pgcopydb", which, wk), pgcopydb/snap >= 1.5, fmt.Sprintf("%.2f×", pgcopydb/snap))
			}
		}
	}
	if len(vrows) >= 3 && vrows[0].best != nil {
		v := vrows[0].best.wall.Seconds()
		if vrows[1].best != nil {
			x := vrows[1].best.wall.Seconds() / v
			check("verify at 80% or more of the count(*) floor", x >= 0.8, fmt.Sprintf("%.0f%%", 100*x))
		}
		if vrows[2].best != nil {
			x := vrows[2].best.wall.Seconds() / v
			check("verify at 80% or more of the hashtext pass", x >= 0.8, fmt.Sprintf("%.0f%%", 100*x))
		}
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		s = s[:max] + "..."
	}
	return s
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

func atoi(s string) int64 { n, _ := strconv.ParseInt(s, 10, 64); return n }

func mb(n int64) string { return fmt.Sprintf("%.0f MB", float64(n)/(1<<20)) }

// benchDir is where specs, states and logs stay after the run: BENCH_DIR, or
// a new folder under the temp folder.
func benchDir(b *testing.B) string {
	if d := os.Getenv("BENCH_DIR"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
		return d
	}
	d, err := os.MkdirTemp("", "pgshift-bench-")
	if err != nil {
		b.Fatal(err)
	}
	return d
}
