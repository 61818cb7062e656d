// Package verifybench measures verify's speed against the scan floor on a
// pgbench database, blue 15 -> green 17:
//
//	go test ./internal/bench/verify -run '^$' -bench . -benchtime 1x -timeout 60m -v
//
// PGSHIFT_BENCH_SCALE sets the pgbench scale (default 20, about 300 MB).
package verifybench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/steps/verify"
)

const db = "bench"

var tables = []verify.Table{
	{Schema: "public", Name: "pgbench_accounts", Key: []string{"aid"}},
	{Schema: "public", Name: "pgbench_branches", Key: []string{"bid"}},
	{Schema: "public", Name: "pgbench_tellers", Key: []string{"tid"}},
	{Schema: "public", Name: "pgbench_history"},
}

func BenchmarkVerify(b *testing.B) {
	scale := 20
	if s := os.Getenv("PGSHIFT_BENCH_SCALE"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatalf("PGSHIFT_BENCH_SCALE=%q: %v", s, err)
		}
		scale = n
	}
	pgbench := pgtest.RequireClientBin(b, "pgbench")
	cs := pgtest.StartClusters(b, []int{15, 17}, pgtest.ClusterOptions{Settings: map[string]string{
		"shared_buffers": "256MB",
	}})
	blue, green := cs[0], cs[1]
	ctx := context.Background()

	// pgbench -i writes the same rows on every run, so both sides are
	// loaded at once; a subscription without copy then keeps them in step.
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, c := range cs {
		c.CreateDatabase(b, db)
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := exec.Command(pgbench, "-h", c.Host, "-p", fmt.Sprint(c.Port), "-U", "postgres",
				"-i", "-q", "-s", fmt.Sprint(scale), db).CombinedOutput()
			if err != nil {
				errs[i] = fmt.Errorf("pgbench -i on %d: %v\n%s", c.Major, err, out)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	blue.Exec(b, db, "CREATE PUBLICATION bench_pub FOR ALL TABLES")
	green.Exec(b, db, fmt.Sprintf(`CREATE SUBSCRIPTION bench_sub CONNECTION 'host=%s port=%d user=postgres dbname=%s'
		PUBLICATION bench_pub WITH (copy_data = false)`, blue.Host, blue.Port, db))
	for _, c := range cs {
		c.Exec(b, db, "VACUUM ANALYZE")
	}
	b.Logf("loaded pgbench scale %d on blue 15 and green 17 in %s", scale, time.Since(start).Round(time.Second))

	connect := func(c *pgtest.Cluster) verify.Connector {
		return func(ctx context.Context) (*pgx.Conn, error) { return pgx.Connect(ctx, c.DSN(db)) }
	}
	bytes := tableBytes(b, blue)
	mb := float64(bytes) / (1 << 20)
	b.Logf("table data on blue (heap+TOAST): %.1f MB; pgbench_accounts %s rows", mb, blue.Scalar(b, db, "SELECT count(*) FROM pgbench_accounts"))

	type row struct {
		name string
		d    time.Duration
	}
	var rows []row
	best := func(name string, f func() error) time.Duration {
		// Best of two: the machine is shared, the first run may also warm caches.
		var d time.Duration
		for i := 0; i < 2; i++ {
			t0 := time.Now()
			if err := f(); err != nil {
				b.Fatalf("%s: %v", name, err)
			}
			if e := time.Since(t0); i == 0 || e < d {
				d = e
			}
		}
		rows = append(rows, row{name, d})
		return d
	}
	bothSides := func(query string) func() error {
		return func() error { return scanBoth(ctx, blue, green, "", query) }
	}
	for i := 0; i < b.N; i++ {
		rows = nil
		best("warm-up: count(*) both sides", bothSides("SELECT count(*) FROM %s"))
		rows = nil
		floor := best("floor: count(*) both sides at once", bothSides("SELECT count(*) FROM %s"))
		hashPass := best("sum(hashtext(t::text)) both sides at once", bothSides("SELECT sum(hashtext(t::text)) FROM %s t"))
		// The same pass with as many backends per side as verify with 2 workers.
		best("  same, 2 backends per side", func() error {
			return scanBoth(ctx, blue, green, "SET max_parallel_workers_per_gather = 1", "SELECT sum(hashtext(t::text)) FROM %s t")
		})
		var last *verify.Report
		resetPeakRSS()
		for _, mode := range []verify.Mode{verify.ModeCount, verify.ModeChecksum} {
			for _, w := range []int{2, 4} {
				best(fmt.Sprintf("pgshift verify %s, %d workers", mode, w), func() error {
					r, err := verify.Run(ctx, connect(blue), connect(green), tables, verify.Options{
						Mode: mode, Workers: w, Subscription: "bench_sub"})
					if err == nil && !r.OK() {
						err = fmt.Errorf("differences: %s", r.Error())
					}
					last = r
					return err
				})
			}
		}
		b.Logf("%s", last.Summary())
		peak := peakRSS()

		var out strings.Builder
		fmt.Fprintf(&out, "\nverify on pgbench scale %d (%.1f MB of table data per side), blue 15 -> green 17, %d cores\n", scale, mb, runtime.NumCPU())
		// Speed relative to a floor: 100% runs as fast as the floor.
		fmt.Fprintf(&out, "%-46s %9s %9s %14s %14s\n", "", "seconds", "MB/s", "of count(*)", "of hash pass")
		for _, r := range rows {
			fmt.Fprintf(&out, "%-46s %9.2f %9.1f %13.0f%% %13.0f%%\n", r.name, r.d.Seconds(), mb/r.d.Seconds(),
				100*floor.Seconds()/r.d.Seconds(), 100*hashPass.Seconds()/r.d.Seconds())
		}
		if peak > 0 {
			fmt.Fprintf(&out, "peak RSS of the benchmark process while verifying: %.1f MB\n", float64(peak)/(1<<20))
		}
		hashes := hashAlternatives(b, blue)
		fmt.Fprintf(&out, "\nrow hash alternatives, pgbench_accounts on blue, one backend, no parallel query:\n")
		for _, h := range hashes {
			fmt.Fprintf(&out, "%-66s %7.2f s\n", h.name, h.d.Seconds())
		}
		b.Log(out.String())
		for _, r := range rows {
			if strings.HasPrefix(r.name, "pgshift verify checksum, 2") {
				b.ReportMetric(mb/r.d.Seconds(), "checksum-MB/s")
			}
		}
		b.ReportMetric(mb/floor.Seconds(), "count-floor-MB/s")
		b.ReportMetric(mb/hashPass.Seconds(), "hash-pass-MB/s")
	}
}

// tableBytes is heap+TOAST of the pgbench tables on one side.
func tableBytes(b *testing.B, c *pgtest.Cluster) int64 {
	s := c.Scalar(b, db, "SELECT sum(pg_table_size(c.oid)) FROM pg_class c WHERE c.relname LIKE 'pgbench\\_%' AND c.relkind = 'r'")
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		b.Fatalf("table size %q: %v", s, err)
	}
	return n
}

// scanBoth runs query (with %s for the table) over every table, on blue and
// green at the same time, tables one after the other on each side
// (PostgreSQL's parallel query may use its own workers), after setup.
func scanBoth(ctx context.Context, blue, green *pgtest.Cluster, setup, query string) error {
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, c := range []*pgtest.Cluster{blue, green} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := pgx.Connect(ctx, c.DSN(db))
			if err != nil {
				errs[i] = err
				return
			}
			defer conn.Close(ctx)
			if setup != "" {
				if _, err := conn.Exec(ctx, setup); err != nil {
					errs[i] = err
					return
				}
			}
			for _, t := range tables {
				if _, err := conn.Exec(ctx, fmt.Sprintf(query, pgx.Identifier{t.Schema, t.Name}.Sanitize())); err != nil {
					errs[i] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

type timing struct {
	name string
	d    time.Duration
}

// hashAlternatives times candidate row hashes over pgbench_accounts.
func hashAlternatives(b *testing.B, blue *pgtest.Cluster) []timing {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, blue.DSN(db))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SET max_parallel_workers_per_gather = 0; SET jit = off"); err != nil {
		b.Fatal(err)
	}
	exprs := []string{
		"count(*)",
		"sum(length(t::text))",
		"sum(hashtext(t::text))",
		"sum(hashtextextended(t::text, 0))",
		`sum(hashtextextended((ROW(t.aid, t.bid, t.abalance, t.filler)::text) COLLATE "C", 0))`,
		"sum(('x' || substr(md5(t::text), 1, 16))::bit(64)::bigint)",
	}
	// Rounds over every expression, best of each: the machine is shared, so
	// interleaving spreads the noise evenly over the candidates.
	out := make([]timing, len(exprs))
	for round := 0; round < 3; round++ {
		for i, e := range exprs {
			t0 := time.Now()
			if _, err := conn.Exec(ctx, "SELECT "+e+" FROM pgbench_accounts t"); err != nil {
				b.Fatalf("%s: %v", e, err)
			}
			if el := time.Since(t0); round == 0 || el < out[i].d {
				out[i] = timing{e, el}
			}
		}
	}
	return out
}

// resetPeakRSS restarts the kernel's peak-RSS count of this process (Linux).
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSS is this process's peak resident set since the last reset, in
// bytes (0 when unknown).
func peakRSS() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}
