// Command demo is `make demo`: it upgrades a database from PostgreSQL 13 to
// 17 with pgshift while pgbench writes through PgBouncer, typing the
// commands a user would, then reports the write pause, the failed
// transactions, the longest client latency and the verify result. Every
// server it starts lives in a temporary folder and is stopped at the end,
// also on failure or Ctrl-C.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pgshift/pgshift/internal/demo/lab"
)

const db = "app"

var keep bool

// segment is the length of each pgbench run of the load.
const segment = 6 * time.Second

// loadScript is pgbench's TPC-B-like transaction plus an order whose id
// comes from a sequence: after the switch, green's sequence must already be
// past blue's or the insert fails.
const loadScript = `\set aid random(1, 100000 * :scale)
\set bid random(1, 1 * :scale)
\set tid random(1, 10 * :scale)
\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
INSERT INTO orders (account, amount) VALUES (:aid, abs(:delta) / 100.0);
END;
`

func main() {
	pgshiftBin := flag.String("pgshift", "bin/pgshift", "the pgshift binary (make build)")
	scale := flag.Int("scale", 5, "pgbench scale of the generated database (100,000 accounts per unit)")
	blueMajor := flag.Int("blue", 13, "blue's PostgreSQL major version")
	greenMajor := flag.Int("green", 17, "green's PostgreSQL major version")
	rate := flag.Int("rate", 200, "pgbench transactions per second through PgBouncer")
	flag.BoolVar(&keep, "keep", false, "keep the work folder (spec, state file, pgbench logs) after the run")
	flag.Parse()

	start := time.Now()
	err := lab.Run(func(s *lab.Session) error { return demo(s, *pgshiftBin, *scale, *blueMajor, *greenMajor, *rate) })
	fmt.Printf("\nmake demo took %s; every server it started is stopped.\n", time.Since(start).Round(time.Second))
	if err != nil {
		fmt.Fprintf(os.Stderr, "\nDEMO FAILED: %v\n", err)
		os.Exit(1)
	}
}

func demo(s *lab.Session, pgshiftBin string, scale, blueMajor, greenMajor, rate int) error {
	bin, err := filepath.Abs(pgshiftBin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("pgshift binary %s: %v (run `make build`)", bin, err)
	}
	work, err := os.MkdirTemp("", "pgshift-demo-")
	if err != nil {
		return err
	}
	s.Cleanup(func() {
		if keep {
			fmt.Printf("work folder kept: %s\n", work)
			return
		}
		_ = os.RemoveAll(work)
	})

	say("Starting PostgreSQL %d (blue) and %d (green) and PgBouncer on loopback ports...", blueMajor, greenMajor)
	st := lab.StartStack(s, blueMajor, greenMajor, db)
	s.Check()
	say("  blue  PostgreSQL %s  127.0.0.1:%d  %s", st.Blue.Version, st.Blue.Port, st.Blue.DataDir)
	say("  green PostgreSQL %s  127.0.0.1:%d  %s", st.Green.Version, st.Green.Port, st.Green.DataDir)
	say("  PgBouncer (transaction pooling) 127.0.0.1:%d  %s", st.Bouncer.Port, st.Bouncer.ConfigPath)

	say("Generating database %q on blue: pgbench -i -s %d, plus table orders with a sequence...", db, scale)
	st.PgbenchInit(s, scale)
	s.Check()
	st.Blue.Exec(s, db, `CREATE TABLE orders (id bigserial PRIMARY KEY, account int NOT NULL, amount numeric(10,2) NOT NULL, placed_at timestamptz NOT NULL DEFAULT now());
		INSERT INTO orders (account, amount) SELECT g, g % 97 FROM generate_series(1, 5000) g`)
	say("  %s accounts, %s orders", st.Blue.Scalar(s, db, "SELECT count(*) FROM pgbench_accounts"), st.Blue.Scalar(s, db, "SELECT count(*) FROM orders"))

	name := fmt.Sprintf("demo-pg%d", greenMajor)
	spec, err := st.WriteSpec(work, "demo.yaml", lab.SpecOptions{Name: name})
	if err != nil {
		return err
	}
	script := filepath.Join(work, "load.sql")
	if err := os.WriteFile(script, []byte(loadScript), 0o644); err != nil {
		return err
	}
	specText, _ := os.ReadFile(spec)
	fmt.Printf("\n%s    (in %s)\n%s", lab.Bold("$ cat demo.yaml"), work, specText)

	fmt.Printf("\n%s\n", lab.Bold(fmt.Sprintf("$ pgbench -n -M simple -c 4 -j 2 -R %d -l -f load.sql -h 127.0.0.1 -p %d -U postgres app &", rate, st.Bouncer.Port)))
	say("  the application: pgbench writing through PgBouncer from now until the end, in back-to-back runs of %s", segment)
	say("  (-T %d each: pgbench cannot be stopped early without losing its per-transaction log)", int(segment.Seconds()))
	load, err := lab.StartLoad(s, lab.LoadOptions{
		Host: st.Bouncer.Host, Port: st.Bouncer.Port, DB: db, Clients: 4, Threads: 2, Rate: rate,
		Script: script, Dir: work, Segment: segment, Overlap: 500 * time.Millisecond, Repeat: true,
	})
	if err != nil {
		return err
	}
	s.Sleep(2 * time.Second)

	p := &lab.Pgshift{Bin: bin, Dir: work, Show: os.Stdout, Echo: true}
	var failures []string
	run := func(args ...string) bool {
		if s.Ctx.Err() != nil {
			return false
		}
		r := p.Run(args...)
		if r.Err != nil {
			failures = append(failures, fmt.Sprintf("pgshift %s: %v", strings.Join(args, " "), r.Err))
			return false
		}
		return true
	}
	_ = run("validate", "-f", "demo.yaml") &&
		run("plan", "-f", "demo.yaml") &&
		run("apply", "-f", "demo.yaml") &&
		run("apply", "-f", "demo.yaml", "--approve-cutover") &&
		run("status", "-f", "demo.yaml")
	if s.Ctx.Err() != nil {
		return lab.ErrInterrupted
	}

	// Writes go on for a moment on green, then the load ends.
	s.Sleep(2 * time.Second)
	say("\nStopping pgbench (it finishes its current %s run)...", segment)
	res := load.Stop()

	failures = append(failures, res.Problems...)
	state, err := lab.ReadState(filepath.Join(work, name+".pgshift-state.json"))
	if err != nil {
		return errors.New(strings.Join(append(failures, err.Error()), "\n  "))
	}

	// Every committed transaction inserted one history row and one order:
	// all of them must be on green, where the application now writes.
	lost := -1
	if state.Output("cutover", "phase") == "done" {
		hist := st.Green.Scalar(s, db, "SELECT count(*) FROM pgbench_history")
		orders := st.Green.Scalar(s, db, "SELECT count(*) - 5000 FROM orders")
		lost = res.Tx.Committed - atoi(hist)
		if lost != 0 || hist != orders {
			failures = append(failures, fmt.Sprintf("green holds %s history rows and %s new orders for %d committed transactions", hist, orders, res.Tx.Committed))
		}
	}

	fmt.Printf("\n%s\n", lab.Bold("==== Result ===="))
	if pause := state.Output("cutover", "pause_ms"); pause != "" {
		fmt.Printf("  write pause (pgshift's measure, freeze to unfreeze): %s ms\n", pause)
	} else {
		fmt.Printf("  write pause: no cutover recorded (%s)\n", state.Next)
		failures = append(failures, "the cutover did not run")
	}
	confirmed := state.Output("cutover", "confirmed_through_switch")
	fmt.Printf("  a write through PgBouncer after the switch landed on green: %s\n", orNone(confirmed))
	if confirmed != "true" {
		failures = append(failures, "the write through PgBouncer was not confirmed on green")
	}
	fmt.Printf("  pgbench: %d transactions committed through PgBouncer, %d failed\n", res.Tx.Committed, res.Failed)
	fmt.Printf("  longest client latency: %s (a transaction ending at %s), from its scheduled start\n", res.Tx.MaxLatency.Round(time.Millisecond), res.Tx.MaxLatencyAt.UTC().Format("15:04:05.000"))
	if from, to := state.Span("cutover"); !to.IsZero() {
		fmt.Printf("    of the transactions in flight during the cutover step (%s to %s): %s\n", from.UTC().Format("15:04:05.000"), to.UTC().Format("15:04:05.000"),
			res.Tx.MaxLatencyDuring(from, to).Round(time.Millisecond))
	}
	if lost >= 0 {
		fmt.Printf("  rows: every committed transaction's rows are on green (%d lost)\n", max(lost, 0))
	}
	fmt.Printf("  verify: %s (%s of %s tables, %s rows, %s mismatches)\n", orNone(state.Output("verify", "result")),
		state.Output("verify", "mode"), state.Output("verify", "tables"), state.Output("verify", "rows"), state.Output("verify", "mismatches"))
	if state.Output("verify", "result") != "passed" {
		failures = append(failures, "verify did not pass")
	}
	if res.Failed > 0 {
		failures = append(failures, fmt.Sprintf("%d failed transactions", res.Failed))
	}
	if len(failures) > 0 {
		return errors.New(strings.Join(failures, "\n  "))
	}
	fmt.Printf("  OK: 0 failed transactions, 0 lost rows.\n")
	return nil
}

func say(format string, args ...any) { fmt.Printf(format+"\n", args...) }

func atoi(s string) int {
	var n int
	fmt.Sscan(s, &n)
	return n
}

func orNone(s string) string {
	if s == "" {
		return "not run"
	}
	return s
}
