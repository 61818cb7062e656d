package verify

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgshift/pgshift/internal/pg"
)

// agg is one bucket's aggregate: row count and sum of row hashes.
type agg struct {
	count int64
	sum   string
}

// rowval is what one row id holds on a side: its hash and how many rows
// carry the id (1 for keyed tables; the zero value means absent).
type rowval struct {
	hash int64
	n    int64
}

// recheck settles a segment whose aggregates differed at the first read
// (in buckets bad, with rows[b] the larger of the two counts of bucket b):
// row by row, then key by key, against green once it has applied what blue
// had.
func (w *worker) recheck(ctx context.Context, s segment, bad []int64, rows map[int64]int64) ([]Difference, int, error) {
	w.opts.Log.Debug("segment differs at first read; re-checking rows", "table", s.info.String(), "segment", s.String())
	groups := [][]int64{nil}
	if !s.info.Ordered && s.info.Buckets > 1 {
		groups = groupBuckets(bad, rows, rowsPerNarrow)
	}
	var diffs []Difference
	maxRounds := 0
	for _, g := range groups {
		narrowed := s
		if g != nil {
			narrowed.buckets = g
		}
		d, rounds, err := w.narrow(ctx, narrowed)
		if err != nil {
			return nil, 0, err
		}
		maxRounds = max(maxRounds, rounds)
		if d != nil {
			diffs = append(diffs, *d)
		}
	}
	return diffs, maxRounds, nil
}

// rowsPerNarrow bounds the rows of a bucketed table read into memory at once
// (per side) to settle differing buckets; every group costs a scan per side,
// so groups are as large as that allows.
const rowsPerNarrow = 250000

// groupBuckets splits buckets into groups of at most limit rows (a bucket
// larger than limit is a group of its own).
func groupBuckets(buckets []int64, rows map[int64]int64, limit int64) [][]int64 {
	var groups [][]int64
	var cur []int64
	var n int64
	for _, b := range buckets {
		if len(cur) > 0 && n+rows[b] > limit {
			groups = append(groups, cur)
			cur, n = nil, 0
		}
		cur = append(cur, b)
		n += rows[b]
	}
	if len(cur) > 0 {
		groups = append(groups, cur)
	}
	return groups
}

// narrow reads a differing segment's rows from blue, then from green once it
// has applied what blue had, and settles the rows that differ.
func (w *worker) narrow(ctx context.Context, s segment) (*Difference, int, error) {
	b, err := readRows(ctx, w.blue, s, w.opts.Mode)
	if err != nil {
		return nil, 0, err
	}
	if err := w.waitGreen(ctx); err != nil {
		return nil, 0, err
	}
	g, err := readRows(ctx, w.green, s, w.opts.Mode)
	if err != nil {
		return nil, 0, err
	}
	ids := differingIDs(b, g)
	if len(ids) == 0 {
		return nil, 0, nil
	}
	return w.settle(ctx, s, ids)
}

// waitGreen reads blue's WAL position and waits until green has applied it.
func (w *worker) waitGreen(ctx context.Context) error {
	if w.sync == nil {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
			return nil
		}
	}
	lsn, err := currentLSN(ctx, w.blue)
	if err != nil {
		return err
	}
	return w.sync.waitApplied(ctx, w.blue, w.green, lsn)
}

// verdict of one re-read round for one row id.
type verdict int

const (
	consistent verdict = iota // green holds one of blue's values around its read
	stable                    // blue held still and green still differs
	moving                    // blue changed during the round: no conclusion
)

// judge compares green's value with blue's before (b1) and after (b2) the
// round. Green was read after applying everything blue had at b1, and it
// cannot be ahead of blue at b2: if blue held the same value at both ends,
// green should hold it too.
func judge(b1, g, b2 rowval) verdict {
	switch {
	case g == b1 || g == b2:
		return consistent
	case b1 == b2:
		return stable
	}
	return moving
}

// confirmations is how many stable rounds in a row make a real difference.
const confirmations = 2

// settle re-reads differing rows in rounds (blue, wait, green, blue) until
// each is consistent or a confirmed difference, or rounds run out.
// It also returns the rounds it took.
func (w *worker) settle(ctx context.Context, s segment, ids []string) (*Difference, int, error) {
	streak := map[string]int{}
	type finding struct {
		id     string
		blue   rowval
		green  rowval
		moving bool
	}
	var found []finding
	pending := ids
	round := 0
	for ; round < w.opts.Rounds && len(pending) > 0; round++ {
		if round > 0 {
			pause := time.Duration(round) * 20 * time.Millisecond
			if pause > 500*time.Millisecond {
				pause = 500 * time.Millisecond
			}
			select {
			case <-ctx.Done():
				return nil, 0, ctx.Err()
			case <-time.After(pause):
			}
		}
		b1, err := lookupRows(ctx, w.blue, s, w.opts.Mode, pending)
		if err != nil {
			return nil, 0, err
		}
		if err := w.waitGreen(ctx); err != nil {
			return nil, 0, err
		}
		g, err := lookupRows(ctx, w.green, s, w.opts.Mode, pending)
		if err != nil {
			return nil, 0, err
		}
		b2, err := lookupRows(ctx, w.blue, s, w.opts.Mode, pending)
		if err != nil {
			return nil, 0, err
		}
		var next []string
		for _, id := range pending {
			switch judge(b1[id], g[id], b2[id]) {
			case consistent:
				continue
			case stable:
				streak[id]++
				if streak[id] >= confirmations {
					found = append(found, finding{id: id, blue: b2[id], green: g[id]})
					continue
				}
			case moving:
				streak[id] = 0
			}
			next = append(next, id)
		}
		pending = next
	}
	for _, id := range pending {
		found = append(found, finding{id: id, moving: true})
	}
	if len(found) == 0 {
		return nil, round, nil
	}
	sort.Slice(found, func(i, j int) bool { return lessID(found[i].id, found[j].id) })
	t := s.info
	d := &Difference{Table: t.String(), Segment: s.String()}
	for _, f := range found {
		var what string
		switch {
		case f.moving:
			d.Unsettled++
			what = "kept changing on blue"
		case len(t.KeyCols) == 0:
			// Unkeyed: the id is the row's contents; counts differ.
			if f.blue.n > f.green.n {
				d.OnlyBlue += int(f.blue.n - f.green.n)
				what = fmt.Sprintf("%d on blue, %d on green", f.blue.n, f.green.n)
			} else {
				d.OnlyGreen += int(f.green.n - f.blue.n)
				what = fmt.Sprintf("%d on blue, %d on green", f.blue.n, f.green.n)
			}
		case f.green.n == 0:
			d.OnlyBlue++
			what = "missing on green"
		case f.blue.n == 0:
			d.OnlyGreen++
			what = "only on green"
		default:
			d.Changed++
			what = "differs"
		}
		if len(d.Keys) < w.opts.MaxKeys {
			sep := " "
			if len(t.KeyCols) == 0 {
				sep = ": "
			}
			d.Keys = append(d.Keys, t.describeKey(f.id)+sep+what)
		}
	}
	if len(t.KeyCols) > 0 && len(found) > 1 {
		d.KeyRange = t.describeKey(found[0].id) + " .. " + t.describeKey(found[len(found)-1].id)
	}
	return d, round, nil
}

// aggregate runs a segment's aggregate on one side.
func aggregate(ctx context.Context, s *side, seg segment, mode Mode) (map[int64]agg, error) {
	q, args := seg.aggregateSQL(mode)
	rows, err := s.conn.Query(ctx, q, args...)
	if err != nil {
		return nil, pg.OnSide(s.name, fmt.Errorf("%s: hash %s: %w", s.name, seg.info, err))
	}
	out := map[int64]agg{}
	var b int64
	var a agg
	_, err = pgx.ForEachRow(rows, []any{&b, &a.count, &a.sum}, func() error {
		out[b] = a
		return nil
	})
	if err != nil {
		return nil, pg.OnSide(s.name, fmt.Errorf("%s: hash %s: %w", s.name, seg.info, err))
	}
	return out, nil
}

// mismatchedBuckets lists buckets whose aggregates differ (a bucket with no
// rows is absent on that side), in ascending order.
func mismatchedBuckets(blue, green map[int64]agg) []int64 {
	var out []int64
	for b, a := range blue {
		if green[b] != a && !(a.count == 0 && green[b].count == 0) {
			out = append(out, b)
		}
	}
	for b, a := range green {
		if _, ok := blue[b]; !ok && a.count != 0 {
			out = append(out, b)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// readRows lists a segment's rows by id on one side.
func readRows(ctx context.Context, s *side, seg segment, mode Mode) (map[string]rowval, error) {
	q, args := seg.rowsSQL(mode)
	return collectRows(ctx, s, seg, q, args)
}

// lookupBatch bounds the ids re-read by one statement.
const lookupBatch = 10000

// lookupRows re-reads given row ids on one side.
func lookupRows(ctx context.Context, s *side, seg segment, mode Mode, ids []string) (map[string]rowval, error) {
	out := map[string]rowval{}
	for start := 0; start < len(ids); start += lookupBatch {
		end := min(start+lookupBatch, len(ids))
		q, args, err := seg.lookupSQL(mode, ids[start:end])
		if err != nil {
			return nil, err
		}
		part, err := collectRows(ctx, s, seg, q, args)
		if err != nil {
			return nil, err
		}
		for k, v := range part {
			out[k] = v
		}
	}
	return out, nil
}

func collectRows(ctx context.Context, s *side, seg segment, q string, args []any) (map[string]rowval, error) {
	rows, err := s.conn.Query(ctx, q, args...)
	if err != nil {
		return nil, pg.OnSide(s.name, fmt.Errorf("%s: read rows of %s: %w", s.name, seg.info, err))
	}
	defer rows.Close()
	out := map[string]rowval{}
	keyed := len(seg.info.KeyCols) > 0
	nk := len(seg.info.KeyCols)
	keys := make([]string, nk)
	var hash, n int64
	dest := make([]any, 0, nk+1)
	if keyed {
		for i := range keys {
			dest = append(dest, &keys[i])
		}
		dest = append(dest, &hash)
	} else {
		dest = append(dest, &hash, &n)
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, pg.OnSide(s.name, fmt.Errorf("%s: read rows of %s: %w", s.name, seg.info, err))
		}
		if keyed {
			out[joinID(keys)] = rowval{hash: hash, n: 1}
		} else {
			out[fmt.Sprint(hash)] = rowval{hash: hash, n: n}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, pg.OnSide(s.name, fmt.Errorf("%s: read rows of %s: %w", s.name, seg.info, err))
	}
	return out, nil
}

// differingIDs lists ids whose values differ between the sides.
func differingIDs(blue, green map[string]rowval) []string {
	var out []string
	for id, v := range blue {
		if green[id] != v {
			out = append(out, id)
		}
	}
	for id := range green {
		if _, ok := blue[id]; !ok {
			out = append(out, id)
		}
	}
	sort.Slice(out, func(i, j int) bool { return lessID(out[i], out[j]) })
	return out
}
