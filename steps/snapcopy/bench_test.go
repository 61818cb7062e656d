package snapcopy

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/pgtest"
)

// BenchmarkCopy measures the snapshot copy of pgbench data from blue 15 to a
// pre-data-only green 17 with 1, 2 and 4 workers in text and binary COPY,
// and the native subscription (copy_data = true) on the same data. Run with
//
//	go test ./steps/snapcopy -run '^$' -bench Copy -benchtime 1x
//
// PGSHIFT_BENCH_SCALE sets the pgbench scale (default 20), and
// PGSHIFT_BENCH_BLUE blue's major (default 15).
func BenchmarkCopy(b *testing.B) {
	scale := envInt("PGSHIFT_BENCH_SCALE", 20)
	blueMajor := envInt("PGSHIFT_BENCH_BLUE", 15)
	p := startPair(b, blueMajor, 17, scale)
	ctx := context.Background()
	blue, green := connect(b, p.blue), connect(b, p.green)
	blueCfg, greenCfg := connConfig(b, p.blue), connConfig(b, p.green)
	tables, err := Inventory(ctx, blue, green, copiedRelations)
	if err != nil {
		b.Fatal(err)
	}
	var total int64
	for _, t := range tables {
		total += t.Bytes
	}
	b.Logf("blue %d -> green 17, pgbench scale %d: %d MB on disk in %d heaps", blueMajor, scale, total>>20, len(tables))

	type config struct {
		workers int
		format  Format
		split   int64
		nocap   bool // plan as many parts as the split asks for, even on 13
	}
	var configs []config
	for _, workers := range []int{1, 2, 4} {
		for _, format := range []Format{FormatText, FormatBinary} {
			configs = append(configs, config{workers, format, 64 << 20, false})
		}
	}
	// Splitting against not splitting, where it matters most: on 13 every
	// part scans the whole heap.
	configs = append(configs, config{2, FormatBinary, 0, false})
	if blueMajor < 14 {
		configs = append(configs, config{2, FormatBinary, 64 << 20, true})
	}
	for _, c := range configs {
		{
			workers, format := c.workers, c.format
			name := fmt.Sprintf("workers=%d/format=%s/split=%dMB", workers, format, c.split>>20)
			planWorkers := workers
			if c.nocap {
				name += "/uncapped"
				planWorkers = 0
			}
			b.Run(name, func(b *testing.B) {
				b.StopTimer()
				for i := 0; i < b.N; i++ {
					if err := TruncateTargets(ctx, green, Targets(tables)); err != nil {
						b.Fatal(err)
					}
					parts := PlanParts(tables, PlanOptions{SplitBytes: c.split, Workers: planWorkers, SourceMajor: blueMajor})
					b.StartTimer()
					snap, err := ExportSnapshot(ctx, blueCfg, "bench")
					if err != nil {
						b.Fatal(err)
					}
					mem := watchMemory()
					res, err := (&Copier{Source: blueCfg, Target: greenCfg, Snapshot: snap.Name, Workers: workers, Format: format}).Run(ctx, parts)
					heap, rss := mem.Stop()
					b.StopTimer()
					snap.Close(ctx)
					if err != nil {
						b.Fatal(err)
					}
					if err := pg.DropSlot(ctx, nil, blue, "bench", 10*time.Second); err != nil {
						b.Fatal(err)
					}
					b.ReportMetric(res.Elapsed.Seconds(), "s/copy")
					b.ReportMetric(float64(res.Bytes)/(1<<20)/res.Elapsed.Seconds(), "MB/s")
					b.ReportMetric(float64(heap)/(1<<20), "peak-heap-MB")
					b.ReportMetric(float64(rss)/(1<<20), "peak-rss-MB")
					b.ReportMetric(float64(len(parts)), "parts")
				}
			})
		}
	}

	// pgshift's own cost: one table, one stream, against psql piped into
	// psql running the very same COPY statements.
	var accounts []Table
	for _, t := range tables {
		if t.Source.Name == "pgbench_accounts" {
			accounts = append(accounts, t)
		}
	}
	one := PlanParts(accounts, PlanOptions{})
	b.Run("accounts/pgshift-binary", func(b *testing.B) {
		b.StopTimer()
		for i := 0; i < b.N; i++ {
			if err := TruncateTargets(ctx, green, Targets(accounts)); err != nil {
				b.Fatal(err)
			}
			snap, err := ExportSnapshot(ctx, blueCfg, "bench")
			if err != nil {
				b.Fatal(err)
			}
			cpu0 := cpuTime()
			b.StartTimer()
			res, err := (&Copier{Source: blueCfg, Target: greenCfg, Snapshot: snap.Name, Workers: 1}).Run(ctx, one)
			b.StopTimer()
			b.ReportMetric((cpuTime() - cpu0).Seconds(), "pgshift-cpu-s")
			b.ReportMetric(float64(res.Bytes)/(1<<20), "MB")
			snap.Close(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if err := pg.DropSlot(ctx, nil, blue, "bench", 10*time.Second); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(res.Elapsed.Seconds(), "s/copy")
		}
	})
	b.Run("accounts/psql-pipe-binary", func(b *testing.B) {
		b.StopTimer()
		psql := pgtest.RequireClientBin(b, "psql")
		for i := 0; i < b.N; i++ {
			if err := TruncateTargets(ctx, green, Targets(accounts)); err != nil {
				b.Fatal(err)
			}
			script := fmt.Sprintf("%s -X -q -d %s -c %s | %s -X -q -d %s -c %s", psql, shellQuote(p.blue.DSN("app")),
				shellQuote(one[0].copyOutSQL(true)), psql, shellQuote(p.green.DSN("app")), shellQuote(one[0].copyInSQL(true)))
			b.StartTimer()
			start := time.Now()
			out, err := exec.Command("bash", "-o", "pipefail", "-c", script).CombinedOutput()
			elapsed := time.Since(start)
			b.StopTimer()
			if err != nil {
				b.Fatalf("%v\n%s", err, out)
			}
			b.ReportMetric(elapsed.Seconds(), "s/copy")
		}
	})

	b.Run("native-subscription", func(b *testing.B) {
		b.StopTimer()
		p.blue.Exec(b, "app", `DROP PUBLICATION IF EXISTS bench_pub; CREATE PUBLICATION bench_pub FOR TABLE pgbench_accounts, pgbench_branches, pgbench_tellers,
			pgbench_history, typed, typed_notes, events WITH (publish_via_partition_root = true)`)
		for i := 0; i < b.N; i++ {
			if err := TruncateTargets(ctx, green, Targets(tables)); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			start := time.Now()
			p.green.Exec(b, "app", fmt.Sprintf(`CREATE SUBSCRIPTION bench_sub CONNECTION %s PUBLICATION bench_pub WITH (copy_data = true)`,
				sqlLiteral(p.blue.DSN("app"))))
			for p.green.Scalar(b, "app", "SELECT count(*) FILTER (WHERE srsubstate <> 'r') || '/' || count(*) FROM pg_subscription_rel") != "0/"+strconv.Itoa(len(copiedRelations)) {
				if time.Since(start) > 30*time.Minute {
					b.Fatal("native initial sync did not finish in 30 minutes")
				}
				time.Sleep(100 * time.Millisecond)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			p.green.Exec(b, "app", "DROP SUBSCRIPTION bench_sub")
			b.ReportMetric(elapsed.Seconds(), "s/copy")
		}
	})
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
