package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgshift/pgshift/internal/pgtest"
)

const benchDB = "bench"

// benchTables are pgbench's four tables; pgbench_history is empty after
// pgbench -i and has no key (REPLICA IDENTITY FULL on blue).
var benchTables = []string{"pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history"}

// rig is the fixed part of a comparison run: one blue with the data, one
// green cluster whose database is recreated for every method.
type rig struct {
	blue, green *pgtest.Cluster
	dir         string // scratch folder: specs, states, logs, pgcopydb's work folder
	pgshift     string
	psql        string
	pgDump      string
	pgRestore   string
	pgcopydb    string // "" when not installed
	split       string // split threshold in pgshift's notation, e.g. 128MiB
	splitMB     int
	round       int // names pgshift's spec, state and logs apart per round
}

// result is one row of the table.
type result struct {
	name    string
	wall    time.Duration
	peakRSS int64  // of pgshift, 0 when not measured
	note    string // what the wall time covers beyond the obvious
	err     error
}

func conn(c *pgtest.Cluster) string {
	return fmt.Sprintf("-h %s -p %d -U postgres", c.Host, c.Port)
}

// freshGreen drops green's database (and any subscription in it) and
// creates it empty; on blue it drops the slots and publications a method
// left behind. Then both sides checkpoint, so that no method pays for the
// previous one's dirty pages.
func (r *rig) freshGreen(ctx context.Context) error {
	g, err := pgx.Connect(ctx, r.green.DSN("postgres"))
	if err != nil {
		return err
	}
	defer g.Close(ctx)
	var exists bool
	if err := g.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", benchDB).Scan(&exists); err != nil {
		return err
	}
	if exists {
		gd, err := pgx.Connect(ctx, r.green.DSN(benchDB))
		if err != nil {
			return err
		}
		rows, err := gd.Query(ctx, "SELECT subname FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())")
		var subs []string
		if err == nil {
			subs, err = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		for _, s := range subs {
			id := pgx.Identifier{s}.Sanitize()
			for _, q := range []string{"ALTER SUBSCRIPTION " + id + " DISABLE", "ALTER SUBSCRIPTION " + id + " SET (slot_name = NONE)", "DROP SUBSCRIPTION " + id} {
				if _, err := gd.Exec(ctx, q); err != nil {
					gd.Close(ctx)
					return fmt.Errorf("green: %s: %w", q, err)
				}
			}
		}
		gd.Close(ctx)
		if err != nil {
			return err
		}
	}
	for _, q := range []string{"DROP DATABASE IF EXISTS " + benchDB + " WITH (FORCE)", "CREATE DATABASE " + benchDB, "CHECKPOINT"} {
		if _, err := g.Exec(ctx, q); err != nil {
			return fmt.Errorf("green: %s: %w", q, err)
		}
	}

	b, err := pgx.Connect(ctx, r.blue.DSN(benchDB))
	if err != nil {
		return err
	}
	defer b.Close(ctx)
	// A walsender of a dropped subscription may take a moment to go.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := b.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE active_pid IS NOT NULL;
			SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE NOT active`)
		var left int
		if err == nil {
			err = b.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots").Scan(&left)
		}
		if err == nil && left == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("blue: replication slots still there after 30s: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	rows, err := b.Query(ctx, "SELECT pubname FROM pg_publication")
	if err != nil {
		return err
	}
	pubs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, p := range pubs {
		if _, err := b.Exec(ctx, "DROP PUBLICATION "+pgx.Identifier{p}.Sanitize()); err != nil {
			return err
		}
	}
	_, err = b.Exec(ctx, "CHECKPOINT")
	return err
}

// checkGreen says whether green holds every row of blue and every index:
// what "done" means for every method.
func (r *rig) checkGreen(ctx context.Context) error {
	b, err := pgx.Connect(ctx, r.blue.DSN(benchDB))
	if err != nil {
		return err
	}
	defer b.Close(ctx)
	g, err := pgx.Connect(ctx, r.green.DSN(benchDB))
	if err != nil {
		return err
	}
	defer g.Close(ctx)
	var problems []string
	for _, t := range benchTables {
		q := "SELECT count(*) FROM " + pgx.Identifier{"public", t}.Sanitize()
		var nb, ng int64
		if err := b.QueryRow(ctx, q).Scan(&nb); err != nil {
			return fmt.Errorf("blue %s: %w", t, err)
		}
		if err := g.QueryRow(ctx, q).Scan(&ng); err != nil {
			return fmt.Errorf("green %s: %w", t, err)
		}
		if nb != ng {
			problems = append(problems, fmt.Sprintf("%s: %d rows on green, %d on blue", t, ng, nb))
		}
	}
	const indexes = `SELECT string_agg(indexrelid::regclass::text, ',' ORDER BY indexrelid::regclass::text)
		FROM pg_index WHERE indrelid::regclass::text LIKE 'pgbench\_%'`
	var ib, ig *string
	if err := b.QueryRow(ctx, indexes).Scan(&ib); err != nil {
		return err
	}
	if err := g.QueryRow(ctx, indexes).Scan(&ig); err != nil {
		return err
	}
	if ib == nil || ig == nil || *ib != *ig {
		problems = append(problems, fmt.Sprintf("indexes on green %v, on blue %v", deref(ig), deref(ib)))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return "none"
	}
	return *s
}

// native: the whole schema (pre-data and post-data: keys in place) restored
// on green, then CREATE SUBSCRIPTION with copy_data = true, until every table
// is ready.
func (r *rig) native(ctx context.Context) result {
	res := result{name: "native subscription (copy_data = true)", note: "schema with keys restored first (timed)"}
	t0 := time.Now()
	if _, err := shell(ctx, nil, fmt.Sprintf("%s %s --schema-only %s | %s -q -v ON_ERROR_STOP=1 %s -d %s",
		r.pgDump, conn(r.blue), benchDB, r.psql, conn(r.green), benchDB)); err != nil {
		res.err = err
		return res
	}
	b, err := pgx.Connect(ctx, r.blue.DSN(benchDB))
	if err != nil {
		res.err = err
		return res
	}
	defer b.Close(ctx)
	g, err := pgx.Connect(ctx, r.green.DSN(benchDB))
	if err != nil {
		res.err = err
		return res
	}
	defer g.Close(ctx)
	if _, err := b.Exec(ctx, "CREATE PUBLICATION bench_native FOR ALL TABLES"); err != nil {
		res.err = err
		return res
	}
	if _, err := g.Exec(ctx, fmt.Sprintf(`CREATE SUBSCRIPTION bench_native CONNECTION 'host=%s port=%d user=postgres dbname=%s'
		PUBLICATION bench_native WITH (copy_data = true)`, r.blue.Host, r.blue.Port, benchDB)); err != nil {
		res.err = err
		return res
	}
	for {
		var notReady, total int
		if err := g.QueryRow(ctx, "SELECT count(*) FILTER (WHERE srsubstate <> 'r'), count(*) FROM pg_subscription_rel").Scan(&notReady, &total); err != nil {
			res.err = err
			return res
		}
		if total == len(benchTables) && notReady == 0 {
			break
		}
		select {
		case <-ctx.Done():
			res.err = fmt.Errorf("initial sync unfinished: %d of %d tables not ready: %w", notReady, total, ctx.Err())
			return res
		case <-time.After(100 * time.Millisecond):
		}
	}
	res.wall = time.Since(t0)
	return res
}

// pgshiftSpec writes a spec for the snapshot method with w workers.
func (r *rig) pgshiftSpec(name string, workers int) (string, error) {
	dir := filepath.Join(r.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "spec.yaml")
	spec := fmt.Sprintf(`version: 1
name: %s
source:
  dsn: %s
target:
  dsn: %s
replication:
  initial_copy:
    method: snapshot
    workers: %d
    split_tables_larger_than: %s
verify:
  mode: checksum
  workers: 2
cutover:
  switch:
    exec:
      switch: ["true"]
      back: ["true"]
`, name, r.blue.DSN(benchDB), r.green.DSN(benchDB), workers, r.split)
	return path, os.WriteFile(path, []byte(spec), 0o600)
}

// snapshot runs the real binary: pgshift apply --until target.copy
// (preflights, audit, roles, pre-data schema, publication, slot, the copy
// and the post-data section with its index builds).
func (r *rig) snapshot(ctx context.Context, workers int) (result, string) {
	res := result{name: fmt.Sprintf("pgshift snapshot, %d workers", workers)}
	name := fmt.Sprintf("bench-snap-%d-r%d", workers, r.round)
	spec, err := r.pgshiftSpec(name, workers)
	if err != nil {
		res.err = err
		return res, ""
	}
	run, err := runProcess(ctx, nil, r.pgshift, "apply", "-f", spec, "--until", "target.copy", "--log-level", "info")
	_ = os.WriteFile(filepath.Join(filepath.Dir(spec), "apply-copy.log"), []byte(run.output), 0o644)
	res.wall, res.peakRSS = run.wall, run.peakRSS
	if err != nil {
		res.err = err
		return res, spec
	}
	state := filepath.Join(filepath.Dir(spec), name+".pgshift-state.json")
	if st, err := readStep(state, "target.copy"); err == nil {
		res.note = fmt.Sprintf("whole apply; target.copy %.1f s: rows %.1f s, post-data %s; pgshift CPU %.1f s",
			st.duration().Seconds(), atof(st.Outputs["seconds"]), logValue(run.output, "post-data restored", "elapsed"), run.cpu.Seconds())
	}
	return res, spec
}

// logValue finds key=value on the first log line holding msg.
func logValue(log, msg, key string) string {
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, msg) {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, key+"="); ok {
				return v
			}
		}
	}
	return "?"
}

func atof(s string) float64 { f, _ := strconv.ParseFloat(s, 64); return f }

// pgcopydbClone runs pgcopydb clone with our job counts and split size.
func (r *rig) pgcopydbClone(ctx context.Context, jobs int) result {
	res := result{name: fmt.Sprintf("pgcopydb clone, %d table + %d index jobs", jobs, jobs),
		note: "includes its VACUUM ANALYZE of every table"}
	if r.pgcopydb == "" {
		res.err = errors.New("pgcopydb not installed (Debian package pgcopydb; run `make deps`)")
		return res
	}
	work := filepath.Join(r.dir, fmt.Sprintf("pgcopydb-r%d", r.round))
	_ = os.RemoveAll(work)
	env := []string{
		"PGCOPYDB_SOURCE_PGURI=" + r.blue.DSN(benchDB),
		"PGCOPYDB_TARGET_PGURI=" + r.green.DSN(benchDB),
		// pgcopydb runs pg_dump and pg_restore from the PATH: the 15 client.
		"PATH=" + filepath.Dir(r.pgDump) + ":" + os.Getenv("PATH"),
	}
	run, err := runProcess(ctx, env, r.pgcopydb, "clone", "--dir", work,
		"--table-jobs", strconv.Itoa(jobs), "--index-jobs", strconv.Itoa(jobs),
		"--split-tables-larger-than", fmt.Sprintf("%dMB", r.splitMB), "--no-owner", "--skip-large-objects")
	writeLog(filepath.Join(r.dir, fmt.Sprintf("pgcopydb-r%d.log", r.round)), run.output)
	res.wall, res.err = run.wall, err
	return res
}

// dumpRestore pipes pg_dump -Fc into pg_restore: pg_restore -j needs a
// seekable archive, so the pipe restores with one job.
func (r *rig) dumpRestore(ctx context.Context) result {
	res := result{name: "pg_dump -Fc | pg_restore", note: "one job: -j cannot read a pipe"}
	run, err := shell(ctx, nil, fmt.Sprintf("%s %s -Fc %s | %s %s -d %s --no-owner",
		r.pgDump, conn(r.blue), benchDB, r.pgRestore, conn(r.green), benchDB))
	res.wall, res.err = run.wall, err
	return res
}

// raw is the practical limit: pre-data schema, then two binary COPY
// streams from blue to green, pgbench_accounts split in two by ctid (the
// small tables ride on the second stream), then the post-data section
// (the primary keys) built.
func (r *rig) raw(ctx context.Context) result {
	res := result{name: "raw: 2 binary COPY streams by ctid, then keys", note: "pre-data and post-data by psql (timed)"}
	t0 := time.Now()
	if _, err := shell(ctx, nil, fmt.Sprintf("%s %s --section=pre-data %s | %s -q -v ON_ERROR_STOP=1 %s -d %s",
		r.pgDump, conn(r.blue), benchDB, r.psql, conn(r.green), benchDB)); err != nil {
		res.err = err
		return res
	}
	var pages int64
	b, err := pgx.Connect(ctx, r.blue.DSN(benchDB))
	if err != nil {
		res.err = err
		return res
	}
	err = b.QueryRow(ctx, "SELECT pg_relation_size('pgbench_accounts') / current_setting('block_size')::int").Scan(&pages)
	b.Close(ctx)
	if err != nil {
		res.err = err
		return res
	}
	half := pages / 2
	streams := [][]string{
		{fmt.Sprintf("SELECT * FROM pgbench_accounts WHERE ctid < '(%d,0)'::tid", half)},
		{fmt.Sprintf("SELECT * FROM pgbench_accounts WHERE ctid >= '(%d,0)'::tid", half),
			"pgbench_branches", "pgbench_tellers", "pgbench_history"},
	}
	tCopy := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(streams))
	for i, parts := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = r.rawStream(ctx, parts)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		res.err = err
		return res
	}
	tKeys := time.Now()
	if _, err := shell(ctx, nil, fmt.Sprintf("%s %s --section=post-data %s | %s -q -v ON_ERROR_STOP=1 %s -d %s",
		r.pgDump, conn(r.blue), benchDB, r.psql, conn(r.green), benchDB)); err != nil {
		res.err = err
		return res
	}
	res.wall = time.Since(t0)
	res.note = fmt.Sprintf("pre-data %.1f s, rows %.1f s, keys (psql) %.1f s", tCopy.Sub(t0).Seconds(), tKeys.Sub(tCopy).Seconds(), time.Since(tKeys).Seconds())
	return res
}

// rawStream copies each part (a table name, or a SELECT on
// pgbench_accounts) with one blue and one green connection.
func (r *rig) rawStream(ctx context.Context, parts []string) error {
	b, err := pgx.Connect(ctx, r.blue.DSN(benchDB))
	if err != nil {
		return err
	}
	defer b.Close(ctx)
	g, err := pgx.Connect(ctx, r.green.DSN(benchDB))
	if err != nil {
		return err
	}
	defer g.Close(ctx)
	for _, p := range parts {
		src, dst := "("+p+")", "pgbench_accounts"
		if !strings.HasPrefix(p, "SELECT") {
			src, dst = p, p
		}
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() {
			// One CopyData message per row: batch them, or each row is a
			// pipe hand-off and a send of its own to green.
			bw := bufio.NewWriterSize(pw, 64<<10)
			_, err := b.PgConn().CopyTo(ctx, bw, "COPY "+src+" TO STDOUT (FORMAT binary)")
			if err == nil {
				err = bw.Flush()
			}
			pw.CloseWithError(err)
			done <- err
		}()
		_, err := g.PgConn().CopyFrom(ctx, pr, "COPY "+dst+" FROM STDIN (FORMAT binary)")
		pr.CloseWithError(err)
		if errOut := <-done; errOut != nil && err == nil {
			err = errOut
		}
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}
