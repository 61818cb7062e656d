package verify

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
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
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	workers, err := openWorkers(ctx, blue, green, &opts)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, w := range workers {
			w.close()
		}
	}()
	if opts.Mode == ModeChecksum {
		var num int
		if err := workers[0].blue.conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&num); err != nil {
			return nil, fmt.Errorf("blue: read server version: %w", err)
		}
		if num < 110000 {
			return nil, fmt.Errorf("blue runs PostgreSQL %d.%d: checksum mode needs 11 or later (hashtextextended); set verify.mode: count", num/10000, num%10000)
		}
	}
	if opts.Subscription != "" {
		s, err := lookupSync(ctx, workers[0].green, opts.Subscription, opts.WaitTimeout)
		if err != nil {
			return nil, err
		}
		for _, w := range workers {
			c := *s
			w.sync = &c
		}
	}

	infos, err := planAll(ctx, workers, tables, &opts)
	if err != nil {
		return nil, err
	}
	report, err := checkAll(ctx, workers, infos, &opts)
	if err != nil {
		return nil, err
	}
	report.Duration = time.Since(start)
	return report, nil
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

// checkAll hashes every segment, largest tables first, and gathers the report.
func checkAll(ctx context.Context, workers []*worker, infos []*tableInfo, opts *Options) (*Report, error) {
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
	for _, t := range infos {
		method := "primary-key ranges"
		if !t.Ordered {
			method = "hash buckets"
		}
		segments := len(t.Segments)
		if !t.Ordered {
			segments = int(t.Buckets) // one scan per side, grouped by bucket
		}
		reports[t] = &TableReport{Table: t.String(), Method: method, Segments: segments, Bytes: t.Bytes}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	var firstErr error
	next := make(chan segment)
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range next {
				out, err := w.check(ctx, s)
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = fmt.Errorf("verify %s (%s): %w", s.info, s, err)
						cancel()
					}
					mu.Unlock()
					continue
				}
				r := reports[s.info]
				r.Rows += out.rows
				if out.rechecked {
					r.Rechecked++
				}
				r.Differences = append(r.Differences, out.diffs...)
				prog.SegmentsDone++
				prog.Rows += out.rows
				prog.Bytes += s.info.Bytes / int64(len(s.info.Segments))
				if opts.Progress != nil {
					opts.Progress(prog)
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for _, s := range segs {
		select {
		case next <- s:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rep := &Report{Mode: opts.Mode, Workers: len(workers)}
	for _, t := range infos {
		rep.Tables = append(rep.Tables, *reports[t])
	}
	sort.SliceStable(rep.Tables, func(i, j int) bool { return rep.Tables[i].Table < rep.Tables[j].Table })
	return rep, nil
}
