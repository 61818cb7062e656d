package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps"
	"github.com/pgshift/pgshift/steps/stepid"
)

// pgbenchScale is the size of the benchmark database: scale 20 is 2 million
// pgbench_accounts rows, about 300 MB on disk.
const pgbenchScale = 20

// greenPgbenchSchema is pgbench's schema with its primary keys, as
// target.schema restores it before a native copy (indexes in place).
const greenPgbenchSchema = `
CREATE TABLE pgbench_branches (bid int NOT NULL PRIMARY KEY, bbalance int, filler char(88));
CREATE TABLE pgbench_tellers (tid int NOT NULL PRIMARY KEY, bid int, tbalance int, filler char(84));
CREATE TABLE pgbench_accounts (aid int NOT NULL PRIMARY KEY, bid int, abalance int, filler char(84));
`

// greenPgbenchBare is the same schema without any index: what the copy
// costs when keys are built after it.
const greenPgbenchBare = `
DROP TABLE IF EXISTS pgbench_branches, pgbench_tellers, pgbench_accounts;
CREATE TABLE pgbench_branches (bid int NOT NULL, bbalance int, filler char(88));
CREATE TABLE pgbench_tellers (tid int NOT NULL, bid int, tbalance int, filler char(84));
CREATE TABLE pgbench_accounts (aid int NOT NULL, bid int, abalance int, filler char(84));
`

// BenchmarkInitialCopy15To17 measures the native initial copy (copy_data)
// of a pgbench database from blue 15 to green 17, from CREATE SUBSCRIPTION
// until replication.catchup returns (every table ready, lag under the
// threshold), with green's primary keys in place and without any index.
func BenchmarkInitialCopy15To17(b *testing.B) {
	cs := pgtest.StartClusters(b, []int{15, 17})
	blue, green := cs[0], cs[1]
	blue.CreateDatabase(b, "bench")
	green.CreateDatabase(b, "bench")
	pgbench := pgtest.RequireClientBin(b, "pgbench")
	start := time.Now()
	cmd := exec.Command(pgbench, "-i", "-q", "-s", strconv.Itoa(pgbenchScale), "-h", blue.Host, "-p", strconv.Itoa(blue.Port), "-U", "postgres", "bench")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	fmt.Printf("pgbench -i -s %d on blue %s: %s\n", pgbenchScale, blue.Version, time.Since(start).Round(time.Millisecond))

	spec := &spec.Spec{
		Name:   "bench",
		Source: spec.Endpoint{DSN: blue.DSN("bench")},
		Target: spec.Endpoint{DSN: green.DSN("bench")},
		// pgbench_history has no key (and is empty after -i).
		Tables: spec.TablesSpec{Exclude: []string{"public.pgbench_history"}},
	}
	spec.SetDefaults()
	log := hclog.New(&hclog.LoggerOptions{Output: os.Stderr, Level: hclog.Info, Name: "bench"})
	env := engine.NewEnv(spec, log)
	b.Cleanup(env.Close)
	byID := map[string]engine.Step{}
	for _, s := range steps.For(spec) {
		byID[s.ID()] = s
	}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	run := func(ids ...string) {
		for _, id := range ids {
			if err := byID[id].Apply(ctx, env.ForStep(id)); err != nil {
				b.Fatalf("apply %s: %v", id, err)
			}
		}
	}

	sizes := tableSizes(b, blue)
	var total int64
	for _, s := range sizes {
		total += s.bytes
	}
	measure := func(b *testing.B, greenDDL, what string) {
		green.Exec(b, "bench", greenDDL)
		var copyTime time.Duration
		for i := 0; i < b.N; i++ {
			if i > 0 {
				green.Exec(b, "bench", "TRUNCATE pgbench_branches, pgbench_tellers, pgbench_accounts")
			}
			run(stepid.Publication, stepid.Slot)
			t0 := time.Now()
			run(stepid.Subscription, stepid.Catchup)
			copyTime += time.Since(t0)
			for _, id := range []string{stepid.Subscription, stepid.Slot, stepid.Publication} {
				if err := byID[id].Rollback(ctx, env.ForStep(id)); err != nil {
					b.Fatalf("rollback %s: %v", id, err)
				}
			}
		}
		perCopy := copyTime / time.Duration(b.N)
		mibps := float64(total) / (1 << 20) / perCopy.Seconds()
		b.ReportMetric(perCopy.Seconds(), "s/copy")
		b.ReportMetric(mibps, "MiB/s")

		greenSizes := tableSizes(b, green)
		w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(w, "table\trows\tblue size\tgreen size\t\n")
		for i, s := range sizes {
			fmt.Fprintf(w, "%s\t%d\t%s\t%s\t\n", s.name, s.rows, mib(s.bytes), mib(greenSizes[i].bytes))
			if greenSizes[i].rows != s.rows {
				b.Errorf("%s: %d rows on blue, %d on green", s.name, s.rows, greenSizes[i].rows)
			}
		}
		w.Flush()
		fmt.Printf("native initial copy, blue %s -> green %s, %s in %d tables (%s): %s until caught up, %.1f MiB/s\n\n",
			blue.Version, green.Version, mib(total), len(sizes), what, perCopy.Round(time.Millisecond), mibps)
	}
	b.Run("primary-keys-on-green", func(b *testing.B) {
		measure(b, greenPgbenchSchema, "primary keys in place on green")
	})
	b.Run("no-indexes-on-green", func(b *testing.B) {
		measure(b, greenPgbenchBare, "no index on green")
	})
}

type tableSize struct {
	name  string
	rows  int64
	bytes int64
}

// tableSizes lists the replicated pgbench tables with rows and total size
// (heap, TOAST and indexes).
func tableSizes(b *testing.B, c *pgtest.Cluster) []tableSize {
	var out []tableSize
	for _, name := range []string{"pgbench_accounts", "pgbench_branches", "pgbench_tellers"} {
		v := c.Scalar(b, "bench", fmt.Sprintf("SELECT count(*) || ' ' || pg_total_relation_size('%s') FROM %s", name, name))
		f := strings.Fields(v)
		rows, _ := strconv.ParseInt(f[0], 10, 64)
		bytes, _ := strconv.ParseInt(f[1], 10, 64)
		out = append(out, tableSize{name, rows, bytes})
	}
	return out
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
