// Command cutover is `make bench-cutover`: pgbench at a fixed rate through
// PgBouncer across pgshift's cutover and its rollback, several runs each,
// beside the same load with no cutover. It prints the write pause pgshift
// measured, the longest client latency (pgbench's per-transaction log, from
// each transaction's scheduled start), failed transactions and lost rows
// (every transaction inserts a row tagged with its run and client: the rows
// on the side that takes the traffic must match the transactions pgbench
// committed). It fails on a failed transaction or a lost row, never on a
// time.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pgshift/pgshift/internal/demo/lab"
	"github.com/pgshift/pgshift/internal/pgtest"
)

const db = "app"

const script = `\set aid random(1, 100000 * :scale)
\set delta random(-5000, 5000)
BEGIN;
INSERT INTO bench_log (run, seg, client) VALUES (:run, :seg, :client_id);
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
END;
`

type sample struct {
	pause     time.Duration // pgshift's measure; 0 for the baseline
	latency   time.Duration
	failed    int
	lost      int
	txs       int
	took      time.Duration // the pgshift command
	perClient map[int]int   // committed transactions by client
	inCmd     time.Duration // longest latency of the transactions in flight while the command ran
}

func main() {
	pgshiftBin := flag.String("pgshift", "bin/pgshift", "the pgshift binary (make build)")
	runs := flag.Int("runs", 5, "cutovers and rollbacks to measure")
	rate := flag.Int("rate", 500, "pgbench transactions per second through PgBouncer")
	clients := flag.Int("clients", 8, "pgbench clients")
	seconds := flag.Int("seconds", 10, "length of each measured load; the command starts after a third of it")
	flag.Parse()

	start := time.Now()
	err := lab.Run(func(s *lab.Session) error {
		return bench(s, *pgshiftBin, *runs, *rate, *clients, time.Duration(*seconds)*time.Second)
	})
	fmt.Printf("\nbench-cutover took %s\n", time.Since(start).Round(time.Second))
	if err != nil {
		fmt.Fprintf(os.Stderr, "\nBENCH FAILED: %v\n", err)
		os.Exit(1)
	}
}

func bench(s *lab.Session, pgshiftBin string, runs, rate, clients int, span time.Duration) error {
	bin, err := filepath.Abs(pgshiftBin)
	if err != nil {
		return err
	}
	work := s.TempDir()
	st := lab.StartStack(s, 13, 17, db)
	st.PgbenchInit(s, 1)
	st.Blue.Exec(s, db, `CREATE TABLE bench_log (id bigserial PRIMARY KEY, run int NOT NULL, seg int NOT NULL, client int NOT NULL,
		at timestamptz NOT NULL DEFAULT clock_timestamp())`)
	if _, err := st.WriteSpec(work, "bench.yaml", lab.SpecOptions{Name: "bench-cutover"}); err != nil {
		return err
	}
	scriptPath := filepath.Join(work, "bench.sql")
	if err := os.WriteFile(scriptPath, []byte(script), 0o644); err != nil {
		return err
	}
	p := &lab.Pgshift{Bin: bin, Dir: work}
	pgshift := func(args ...string) (lab.CmdResult, error) {
		r := p.Run(args...)
		if r.Err != nil {
			return r, fmt.Errorf("pgshift %s: %v\n%s", strings.Join(args, " "), r.Err, tailLines(r.Output, 30))
		}
		return r, nil
	}
	fmt.Printf("blue PostgreSQL %s, green %s, PgBouncer (transaction pooling); pgbench -M simple -R %d -c %d for %s per run, the command after %s\n",
		st.Blue.Version, st.Green.Version, rate, clients, span, (span / 3).Round(100*time.Millisecond))
	fmt.Printf("%-10s %3s %10s %12s %12s %7s %6s %8s %9s\n", "what", "run", "pause", "max latency", "during cmd", "failed", "lost", "txs", "command")

	// measure runs the load, starts cmd (if any) after a third of it, and
	// checks the rows on side.
	measure := func(what string, i, tag int, side *pgtest.Cluster, cmd []string, earlier *sample) (sample, error) {
		var sm sample
		load, err := lab.StartLoad(s, lab.LoadOptions{
			Host: st.Bouncer.Host, Port: st.Bouncer.Port, DB: db, Clients: clients, Threads: 2, Rate: rate,
			Script: scriptPath, Dir: work, Segment: span, Defines: map[string]string{"run": strconv.Itoa(tag)},
		})
		if err != nil {
			return sm, err
		}
		time.Sleep(span / 3)
		var out lab.CmdResult
		var cmdErr error
		var cmdStart, cmdEnd time.Time
		if cmd != nil {
			cmdStart = time.Now()
			out, cmdErr = pgshift(cmd...)
			cmdEnd = time.Now()
			sm.took = out.Duration
		}
		res := load.Stop()
		if s.Ctx.Err() != nil {
			return sm, lab.ErrInterrupted
		}
		if cmdErr != nil {
			return sm, cmdErr
		}
		if res.EndedEarly {
			return sm, fmt.Errorf("%s run %d: the load ended before the command did (%s): raise -seconds", what, i, sm.took.Round(time.Millisecond))
		}
		sm.latency, sm.failed, sm.txs, sm.perClient = res.Tx.MaxLatency, res.Failed, res.Tx.Committed, res.Tx.PerClient
		sm.inCmd = res.Tx.MaxLatencyDuring(cmdStart, cmdEnd)
		for _, pr := range res.Problems {
			fmt.Printf("  pgbench: %s\n", pr)
		}
		sm.lost = lostRows(s, side, tag, res.Tx.PerClient)
		if earlier != nil {
			// The previous run's rows reached the side that now takes the
			// traffic too: by replication before the cutover, by reverse
			// replication before the rollback.
			sm.lost += lostRows(s, side, tag-100, earlier.perClient)
		}
		if cmd != nil {
			if sm.pause, err = pauseOf(out.Output); err != nil {
				return sm, err
			}
		}
		pause := "-"
		if cmd != nil {
			pause = ms(sm.pause)
		}
		took, inCmd := "-", "-"
		if cmd != nil {
			took, inCmd = ms(sm.took), ms(sm.inCmd)
		}
		fmt.Printf("%-10s %3d %10s %12s %12s %7d %6d %8d %9s\n", what, i, pause, ms(sm.latency), inCmd, sm.failed, sm.lost, sm.txs, took)
		return sm, nil
	}

	var base, cut, back []sample
	for i := 1; i <= runs; i++ {
		// Replication set up again from scratch after each full rollback.
		if _, err := pgshift("apply", "-f", "bench.yaml"); err != nil {
			return err
		}
		b, err := measure("baseline", i, 100+i, st.Blue, nil, nil)
		if err != nil {
			return err
		}
		c, err := measure("cutover", i, 200+i, st.Green, []string{"apply", "-f", "bench.yaml", "--approve-cutover"}, &b)
		if err != nil {
			return err
		}
		r, err := measure("rollback", i, 300+i, st.Blue, []string{"rollback", "-f", "bench.yaml", "--yes"}, &c)
		if err != nil {
			return err
		}
		base, cut, back = append(base, b), append(cut, c), append(back, r)
	}

	fmt.Printf("\n%d runs each, pgbench -M simple -R %d -c %d through PgBouncer, blue %s -> green %s\n", runs, rate, clients, st.Blue.Version, st.Green.Version)
	fmt.Printf("%-10s | %-17s | %-21s | %-21s | %-6s | %-5s\n", "", "pause (pgshift)", "longest client latency", "same, during command", "failed", "lost")
	fmt.Printf("%-10s | %8s %8s | %10s %10s | %10s %10s | %6s | %5s\n", "", "median", "max", "median", "max", "median", "max", "total", "total")
	var failures []string
	for _, row := range []struct {
		name string
		s    []sample
	}{{"baseline", base}, {"cutover", cut}, {"rollback", back}} {
		pauses, lats := pick(row.s, func(x sample) time.Duration { return x.pause }), pick(row.s, func(x sample) time.Duration { return x.latency })
		inCmd := pick(row.s, func(x sample) time.Duration { return x.inCmd })
		failed, lost := 0, 0
		for _, x := range row.s {
			failed += x.failed
			lost += x.lost
		}
		pm, px, cm, cx := "-", "-", "-", "-"
		if row.name != "baseline" {
			pm, px = ms(median(pauses)), ms(slices.Max(pauses))
			cm, cx = ms(median(inCmd)), ms(slices.Max(inCmd))
		}
		fmt.Printf("%-10s | %8s %8s | %10s %10s | %10s %10s | %6d | %5d\n", row.name, pm, px, ms(median(lats)), ms(slices.Max(lats)), cm, cx, failed, lost)
		if failed > 0 || lost > 0 {
			failures = append(failures, fmt.Sprintf("%s: %d failed transactions, %d lost rows", row.name, failed, lost))
		}
	}
	fmt.Println("Target: longest client stall under 150 ms, 0 failed, 0 lost (times are reported, never judged).")
	if len(failures) > 0 {
		return errors.New(strings.Join(failures, "; "))
	}
	return nil
}

// lostRows compares, client by client, the transactions pgbench committed
// with the rows of that run on a cluster; a row more than committed counts
// too (a transaction applied twice).
func lostRows(s *lab.Session, c *pgtest.Cluster, tag int, committed map[int]int) int {
	got := map[int]int{}
	rows := c.Scalar(s, db, fmt.Sprintf(`SELECT coalesce(string_agg(client || ':' || n, ',' ORDER BY client), '')
		FROM (SELECT client, count(*) AS n FROM bench_log WHERE run = %d GROUP BY client) x`, tag))
	for _, kv := range strings.Split(rows, ",") {
		if k, v, ok := strings.Cut(kv, ":"); ok {
			ki, _ := strconv.Atoi(k)
			vi, _ := strconv.Atoi(v)
			got[ki] = vi
		}
	}
	lost := 0
	for _, client := range slices.Sorted(func(yield func(int) bool) {
		seen := map[int]bool{}
		for k := range committed {
			seen[k] = true
			if !yield(k) {
				return
			}
		}
		for k := range got {
			if !seen[k] && !yield(k) {
				return
			}
		}
	}) {
		if d := committed[client] - got[client]; d != 0 {
			fmt.Printf("  run %d client %d: %d committed, %d rows on PostgreSQL %d\n", tag, client, committed[client], got[client], c.Major)
			lost += max(d, -d)
		}
	}
	return lost
}

var pauseRe = regexp.MustCompile(`(?:cutover done|cutover rolled back)[^\n]*pause_ms=(\d+)`)

// pauseOf reads the pause pgshift measured from its log.
func pauseOf(out string) (time.Duration, error) {
	m := pauseRe.FindAllStringSubmatch(out, -1)
	if m == nil {
		return 0, fmt.Errorf("pgshift printed no write pause:\n%s", tailLines(out, 20))
	}
	n, _ := strconv.Atoi(m[len(m)-1][1])
	return time.Duration(n) * time.Millisecond, nil
}

func pick(s []sample, f func(sample) time.Duration) []time.Duration {
	out := make([]time.Duration, len(s))
	for i, x := range s {
		out[i] = f(x)
	}
	return out
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
