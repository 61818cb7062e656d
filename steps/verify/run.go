package verify

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pgshift/pgshift/internal/pg"
)

// Options tune a verification. Zero values take the defaults.
type Options struct {
	Mode    Mode // default checksum
	Workers int  // connection pairs hashing in parallel; default 2
	// ChunkBytes is the target segment size (heap bytes on blue); default 8 MiB.
	ChunkBytes int64
	// Subscription is green's subscription from blue. Re-checks wait until it
	// has applied past the point blue was read; "" makes them wait a fixed
	// pause instead (for a pair that is not replicating).
	Subscription string
	// WaitTimeout bounds each wait for green to catch up; default 2 minutes.
	WaitTimeout time.Duration
	// Rounds bounds the re-reads of rows that differ; default 20.
	Rounds int
	// MaxKeys is how many differing keys a difference names; default 10.
	MaxKeys  int
	Log      hclog.Logger
	Progress func(Progress) // called after each segment, from one goroutine at a time
	// Ride, when set, decides what an error cutting the verification
	// short becomes: nil (after waiting for the lost server to come back,
	// as steps' outage rider does) has the tables not finished yet
	// compared again from the start, the finished ones kept; an error ends
	// the run with it. It is called with nil once both sides answer again.
	// An attempt whose connections do not open (the server still away) is
	// handed to Ride too and tried again as long as Ride says nil: Ride
	// bounds an outage; the cap of 10 redos counts only comparisons that
	// started and were cut.
	Ride func(ctx context.Context, err error) error
}

// Progress is how far a verification has come.
type Progress struct {
	Tables, Segments, SegmentsDone int
	Rows                           int64
	Bytes, BytesTotal              int64
}

func (o *Options) defaults() {
	if o.Mode == "" {
		o.Mode = ModeChecksum
	}
	if o.Workers <= 0 {
		o.Workers = 2
	}
	if o.ChunkBytes <= 0 {
		o.ChunkBytes = 8 << 20
	}
	if o.WaitTimeout <= 0 {
		o.WaitTimeout = 2 * time.Minute
	}
	if o.Rounds <= 0 {
		o.Rounds = 20
	}
	if o.MaxKeys <= 0 {
		o.MaxKeys = 10
	}
	if o.Log == nil {
		o.Log = hclog.NewNullLogger()
	}
}

// worker is one connection pair.
type worker struct {
	blue, green *side
	opts        *Options
	sync        *replSync
}

func (w *worker) close() {
	w.blue.close()
	w.green.close()
}

// Run compares tables on blue and green and returns the report. An error
// means verification could not run (connection, missing table or column,
// green not catching up); differences are in the report, not the error.
func Run(ctx context.Context, blue, green Connector, tables []Table, opts Options) (*Report, error) {
	opts.defaults()
	if opts.Mode != ModeCount && opts.Mode != ModeChecksum {
		return nil, fmt.Errorf("verify mode %q is not count or checksum", opts.Mode)
	}
	start := time.Now()
	var kept []TableReport
	// A pass after a restart compares only the tables left: progress adds
	// the kept ones, so that the total stays the whole verification's and
	// only the cut tables' part is counted again.
	var base Progress
	if report := opts.Progress; report != nil {
		opts.Progress = func(p Progress) {
			p.Tables += base.Tables
			p.Segments += base.Segments
			p.SegmentsDone += base.Segments
			p.Rows += base.Rows
			p.Bytes += base.Bytes
			p.BytesTotal += base.Bytes
			report(p)
		}
	}
	workersUsed, redos := 0, 0
	remaining := tables
	for {
		finished, left, started, err := runOnce(ctx, blue, green, remaining, &opts)
		kept = append(kept, finished...)
		for _, r := range finished {
			base.Tables++
			base.Segments += r.Segments
			base.Rows += r.Rows
			base.Bytes += r.Bytes
		}
		if err == nil {
			workersUsed = opts.Workers
			break
		}
		if opts.Ride == nil {
			return nil, err
		}
		if err := opts.Ride(ctx, err); err != nil {
			return nil, err
		}
		if !started {
			// The connections did not open: the server is still away, and
			// how long that may last is Ride's to bound, not the redo cap's.
			remaining = left
			continue
		}
		if redos++; redos > maxRedos {
			// A server that crashes on the comparison itself, or keeps
			// restarting, would have it start over forever.
			return nil, fmt.Errorf("verify cut short by a lost connection %d times, giving up: %w (blue's and green's server logs say why the connections ended; verify again once they stay up)", redos, err)
		}
		opts.Log.Info("verify cut short by a lost connection: comparing again the tables it had not finished",
			"again", len(left), "kept", len(kept))
		remaining = left
	}
	rep := &Report{Mode: opts.Mode, Workers: workersUsed, Tables: kept}
	sort.SliceStable(rep.Tables, func(i, j int) bool { return rep.Tables[i].Table < rep.Tables[j].Table })
	rep.Duration = time.Since(start)
	return rep, nil
}

// maxRedos bounds how many times in a run the tables a lost connection cut
// are compared again. Only comparisons that started count: attempts whose
// connections did not open (a server still restarting) are bounded by Ride
// (replication.outage_timeout), however many there are.
const maxRedos = 10

// runOnce compares tables over one set of connections. It returns the
// reports of the tables it finished and, on an error, the tables left to
// compare (all of them when the error came before any was finished).
// started says whether the connections opened, so that a comparison began.
func runOnce(ctx context.Context, blue, green Connector, tables []Table, opts *Options) (finished []TableReport, left []Table, started bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	workers, err := openWorkers(ctx, blue, green, opts)
	if err != nil {
		return nil, tables, false, err
	}
	started = true
	if opts.Ride != nil {
		_ = opts.Ride(ctx, nil) // both sides answer
	}
	defer func() {
		for _, w := range workers {
			w.close()
		}
	}()
	if opts.Mode == ModeChecksum {
		var num int
		if err := workers[0].blue.conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&num); err != nil {
			return nil, tables, started, fmt.Errorf("blue: read server version: %w", pg.OnSide("blue", err))
		}
		if num < 110000 {
			return nil, tables, started, fmt.Errorf("blue runs PostgreSQL %d.%d: checksum mode needs 11 or later (hashtextextended); set verify.mode: count", num/10000, num%10000)
		}
	}
	if opts.Subscription != "" {
		s, err := lookupSync(ctx, workers[0].green, opts.Subscription, opts.WaitTimeout)
		if err != nil {
			return nil, tables, started, err
		}
		for _, w := range workers {
			c := *s
			w.sync = &c
		}
	}

	infos, err := planAll(ctx, workers, tables, opts)
	if err != nil {
		return nil, tables, started, err
	}
	reports, done, err := checkAll(ctx, workers, infos, opts)
	for i, t := range infos {
		if done[t] {
			finished = append(finished, *reports[t])
		} else {
			left = append(left, tables[i])
		}
	}
	return finished, left, started, err
}

func openWorkers(ctx context.Context, blue, green Connector, opts *Options) ([]*worker, error) {
	workers := make([]*worker, opts.Workers)
	errs := make([]error, 2*opts.Workers)
	var wg sync.WaitGroup
	for i := range workers {
		workers[i] = &worker{opts: opts}
		w := workers[i]
		wg.Add(2)
		go func() { defer wg.Done(); w.blue, errs[2*i] = openSide(ctx, "blue", blue) }()
		go func() { defer wg.Done(); w.green, errs[2*i+1] = openSide(ctx, "green", green) }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			for _, w := range workers {
				w.close()
			}
			return nil, err
		}
	}
	return workers, nil
}

// planAll describes and splits every table, the workers sharing the tables.
func planAll(ctx context.Context, workers []*worker, tables []Table, opts *Options) ([]*tableInfo, error) {
	infos := make([]*tableInfo, len(tables))
	next := make(chan int)
	errs := make([]error, len(workers))
	var wg sync.WaitGroup
	for wi, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if errs[wi] != nil {
					continue
				}
				info, err := describe(ctx, w.blue, w.green, tables[i])
				if err == nil {
					err = planSegments(ctx, w.blue, info, opts.Mode, opts.ChunkBytes)
				}
				infos[i], errs[wi] = info, err
			}
		}()
	}
	for i := range tables {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return infos, nil
}

// checkAll hashes every segment, largest tables first, and gathers the
// report. First pass: each side runs its own workers over the segments, so
// that neither waits for the other chunk by chunk (a side may run at most
// maxSkew segments ahead, so both read each segment at about the same time).
// Second pass: the worker pairs re-check the segments that differed.
//
// It returns every table's report and which tables were finished: all of
// them without an error; with one, those whose segments were all compared
// and settled before it (their reports are whole).
func checkAll(ctx context.Context, workers []*worker, infos []*tableInfo, opts *Options) (map[*tableInfo]*TableReport, map[*tableInfo]bool, error) {
	order := append([]*tableInfo(nil), infos...)
	sort.SliceStable(order, func(i, j int) bool { return order[i].Bytes > order[j].Bytes })
	var segs []segment
	var prog Progress
	prog.Tables = len(infos)
	for _, t := range order {
		segs = append(segs, t.Segments...)
		prog.BytesTotal += t.Bytes
	}
	prog.Segments = len(segs)

	reports := map[*tableInfo]*TableReport{}
	// Per table, first-pass segments and re-checks not done yet.
	segsLeft, rechecksLeft := map[*tableInfo]int{}, map[*tableInfo]int{}
	finished := func() map[*tableInfo]bool {
		done := map[*tableInfo]bool{}
		for _, t := range infos {
			done[t] = segsLeft[t] == 0 && rechecksLeft[t] == 0
		}
		return done
	}
	for _, t := range infos {
		segsLeft[t] = len(t.Segments)
		method := "primary-key ranges"
		segments := len(t.Segments)
		if !t.Ordered {
			method = "hash buckets"
			segments = int(t.Buckets) // one scan per side, grouped by bucket
		}
		if t.NoColumns {
			method = "row count (no columns)"
		}
		reports[t] = &TableReport{Table: t.String(), Method: method, Segments: segments, Bytes: t.Bytes}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fp := &firstPass{segs: segs, maxSkew: 2 * len(workers), results: make([][2]map[int64]agg, len(segs))}
	fp.cond = sync.NewCond(&fp.mu)
	fp.done = func(i int, blue, green map[int64]agg) {
		// Called with fp.mu held.
		s := segs[i]
		var rows int64
		for _, a := range blue {
			rows += a.count
		}
		reports[s.info].Rows += rows
		if bad := mismatchedBuckets(blue, green); len(bad) > 0 {
			rows := map[int64]int64{}
			for _, b := range bad {
				rows[b] = max(blue[b].count, green[b].count)
			}
			fp.rechecks = append(fp.rechecks, recheckTask{seg: s, bad: bad, rows: rows})
			reports[s.info].Rechecked++
			rechecksLeft[s.info]++
		}
		segsLeft[s.info]--
		prog.SegmentsDone++
		prog.Rows += rows
		prog.Bytes += s.info.Bytes / int64(len(s.info.Segments))
		if opts.Progress != nil {
			opts.Progress(prog)
		}
	}
	var wg sync.WaitGroup
	for _, w := range workers {
		for sideIdx, sd := range []*side{w.blue, w.green} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				fp.run(ctx, cancel, sideIdx, sd, opts.Mode)
			}()
		}
	}
	wg.Wait()
	if fp.err != nil {
		return reports, finished(), fp.err
	}
	if err := ctx.Err(); err != nil {
		return reports, finished(), err
	}

	// Second pass: re-check, worker pairs sharing the differing segments.
	var mu sync.Mutex
	var firstErr error
	next := make(chan recheckTask)
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for task := range next {
				diffs, rounds, err := w.recheck(ctx, task.seg, task.bad, task.rows)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("verify %s (%s): %w", task.seg.info, task.seg, err)
					cancel()
				}
				if err == nil {
					r := reports[task.seg.info]
					r.Differences = append(r.Differences, diffs...)
					r.Rounds = max(r.Rounds, rounds)
					rechecksLeft[task.seg.info]--
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for _, task := range fp.rechecks {
		select {
		case next <- task:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	for _, t := range infos {
		r := reports[t]
		sort.SliceStable(r.Differences, func(i, j int) bool { return r.Differences[i].Segment < r.Differences[j].Segment })
	}
	if firstErr != nil {
		return reports, finished(), firstErr
	}
	if err := ctx.Err(); err != nil {
		return reports, finished(), err
	}
	return reports, finished(), nil
}

type recheckTask struct {
	seg  segment
	bad  []int64
	rows map[int64]int64 // per differing bucket, the larger count of the two sides
}

// firstPass hands segments to each side's workers in the same order and
// pairs up the two aggregates of each segment.
type firstPass struct {
	segs    []segment
	maxSkew int

	mu       sync.Mutex
	cond     *sync.Cond
	started  [2]int // next segment to start, per side (0 blue, 1 green)
	results  [][2]map[int64]agg
	rechecks []recheckTask
	err      error
	done     func(i int, blue, green map[int64]agg) // with mu held, once both sides are in
}

func (fp *firstPass) run(ctx context.Context, cancel context.CancelFunc, me int, sd *side, mode Mode) {
	other := 1 - me
	for {
		fp.mu.Lock()
		for fp.err == nil && fp.started[me] < len(fp.segs) && fp.started[me]-fp.started[other] >= fp.maxSkew {
			fp.cond.Wait()
		}
		if fp.err != nil || fp.started[me] >= len(fp.segs) {
			fp.mu.Unlock()
			return
		}
		i := fp.started[me]
		fp.started[me]++
		fp.cond.Broadcast()
		fp.mu.Unlock()

		a, err := aggregate(ctx, sd, fp.segs[i], mode)

		fp.mu.Lock()
		if err != nil {
			if fp.err == nil {
				fp.err = fmt.Errorf("verify %s (%s): %w", fp.segs[i].info, fp.segs[i], err)
				cancel()
			}
			fp.cond.Broadcast()
			fp.mu.Unlock()
			return
		}
		fp.results[i][me] = a
		if fp.results[i][other] != nil {
			fp.done(i, fp.results[i][0], fp.results[i][1])
			fp.results[i] = [2]map[int64]agg{} // free
		}
		fp.mu.Unlock()
	}
}
