package bench

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgshift/pgshift/internal/pgtest"
)

// verifyResult is one row of the verify table.
type verifyResult struct {
	name    string
	wall    time.Duration
	peakRSS int64
	note    string
	err     error
}

// pgshiftVerify continues the snapshot run's state with pgshift apply
// --until verify (subscription on the copy's slot, catch-up, verify in
// checksum mode). Its time is the verify step's, from the state file; the
// peak RSS is the whole process's (the subscription steps hold little).
func (r *rig) pgshiftVerify(ctx context.Context, spec string) verifyResult {
	res := verifyResult{name: "pgshift verify, checksum, 2 workers (real binary)"}
	run, err := runProcess(ctx, nil, r.pgshift, "apply", "-f", spec, "--until", "verify", "--log-level", "info")
	writeLog(filepath.Join(filepath.Dir(spec), "apply-verify.log"), run.output)
	res.peakRSS = run.peakRSS
	if err != nil {
		res.err = err
		return res
	}
	name := filepath.Base(filepath.Dir(spec))
	st, err := readStep(filepath.Join(filepath.Dir(spec), name+".pgshift-state.json"), "verify")
	if err != nil {
		res.err = err
		return res
	}
	res.wall = st.duration()
	res.note = fmt.Sprintf("verify step; %s: %s rows, its own figure %s MB/s; pgshift CPU %.1f s (whole apply)",
		st.Outputs["result"], st.Outputs["rows"], st.Outputs["mb_per_sec"], run.cpu.Seconds())
	if st.Outputs["result"] != "passed" {
		res.err = fmt.Errorf("verify result %q, %s mismatches", st.Outputs["result"], st.Outputs["mismatches"])
	}
	return res
}

// scanBoth runs query (%s: the table) over every table on blue and green at
// the same time, the tables one after the other on each side, each side in
// one session (PostgreSQL's parallel query may add its own workers).
func (r *rig) scanBoth(ctx context.Context, name, setup, query string) verifyResult {
	res := verifyResult{name: name}
	t0 := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, c := range []*pgtest.Cluster{r.blue, r.green} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := pgx.Connect(ctx, c.DSN(benchDB))
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
			for _, t := range benchTables {
				if _, err := conn.Exec(ctx, fmt.Sprintf(query, pgx.Identifier{"public", t}.Sanitize())); err != nil {
					errs[i] = fmt.Errorf("PostgreSQL %d, %s: %w", c.Major, t, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	res.wall = time.Since(t0)
	res.err = errors.Join(errs...)
	return res
}

// pinned are the settings verify pins before hashing text forms.
const pinned = "SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; SET TimeZone = 'UTC'; SET extra_float_digits = 3"
