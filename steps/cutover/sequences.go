package cutover

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/pgshift/pgshift/internal/pg"
)

// Sequences are not carried by logical replication: at cutover every
// sequence's value is copied from the side that took writes to the other
// one, inside the write freeze. Every sequence counts (serial, identity and
// sequences no column owns), by its own value, never max(column).

// SequenceState is one sequence as read from a side.
type SequenceState struct {
	Schema, Name string
	Increment    int64
	Min, Max     int64
	Cycle        bool
	Readable     bool  // the user may read its value
	Called       bool  // nextval has run since creation or the last RESTART
	Last         int64 // last value handed out when Called; the next one otherwise (read only on request)
}

func (s SequenceState) qualified() string { return s.Schema + "." + s.Name }

// next is the value nextval would hand out, saturating at the bound.
func (s SequenceState) next() int64 {
	if !s.Called {
		return s.Last
	}
	v, _ := addClamp(s.Last, s.Increment, s.Min, s.Max)
	return v
}

// listSequencesSQL reads every sequence in one query. pg_sequence_last_value
// is NULL for a sequence never called (or restarted); its pending value is
// read separately then. The privilege test guards the call, which errors
// without SELECT or USAGE.
const listSequencesSQL = `
SELECT n.nspname, c.relname, s.seqincrement, s.seqmin, s.seqmax, s.seqcycle,
       has_sequence_privilege(c.oid, 'SELECT, USAGE'),
       CASE WHEN has_sequence_privilege(c.oid, 'SELECT, USAGE')
            THEN pg_sequence_last_value(c.oid) END
  FROM pg_sequence s
  JOIN pg_class c ON c.oid = s.seqrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relpersistence <> 't'
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\_temp%'
   AND n.nspname NOT LIKE 'pg\_toast%'
 ORDER BY 1, 2`

// ListSequences reads every sequence of a database with its value: one
// query. With pending, the value a never-called sequence will hand out
// first is read too, in a second query over those sequences only (it costs
// a plan per sequence: SyncSequences asks it of the source alone, where few
// sequences are uncalled; on the target an uncalled sequence has handed out
// nothing, whatever its pending value).
func ListSequences(ctx context.Context, db pg.Querier, pending bool) ([]SequenceState, error) {
	rows, err := db.Query(ctx, listSequencesSQL)
	if err != nil {
		return nil, fmt.Errorf("list sequences: %w", err)
	}
	var out []SequenceState
	var uncalled []int
	for rows.Next() {
		var s SequenceState
		var last *int64
		if err := rows.Scan(&s.Schema, &s.Name, &s.Increment, &s.Min, &s.Max, &s.Cycle, &s.Readable, &last); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list sequences: %w", err)
		}
		if last != nil {
			s.Called, s.Last = true, *last
		} else if s.Readable {
			uncalled = append(uncalled, len(out))
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list sequences: %w", err)
	}
	if len(uncalled) == 0 || !pending {
		return out, nil
	}
	// The pending value of uncalled sequences (start, or a RESTART WITH
	// value) sits in the sequence relation itself.
	parts := make([]string, len(uncalled))
	for i, idx := range uncalled {
		parts[i] = fmt.Sprintf("SELECT %d, last_value, is_called FROM %s", idx, pgx.Identifier{out[idx].Schema, out[idx].Name}.Sanitize())
	}
	rows, err = db.Query(ctx, strings.Join(parts, " UNION ALL "))
	if err != nil {
		return nil, fmt.Errorf("read sequences never called: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var idx int
		var last int64
		var called bool
		if err := rows.Scan(&idx, &last, &called); err != nil {
			return nil, fmt.Errorf("read sequences never called: %w", err)
		}
		// Called may have turned true since the first query; take it as read.
		out[idx].Last, out[idx].Called = last, called
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read sequences never called: %w", err)
	}
	return out, nil
}

// SequenceSync is what happened to one sequence.
type SequenceSync struct {
	Sequence   string // schema.name
	SourceLast *int64 // nil: never called on the source
	Value      int64  // setval's value on the target
	IsCalled   bool   // setval's is_called
	Clamped    bool   // last ± margin passed the target's bound and was held at it
	Cycles     bool   // CYCLE on the target: past its bound it starts over, it never runs out
	Kept       bool   // the target was already ahead: left as it was
}

// SequenceReport says what SyncSequences did and what it could not do.
type SequenceReport struct {
	Synced       []SequenceSync
	OnlyOnSource []string // not copied: create them on the target
	OnlyOnTarget []string // nothing to copy from
	Unreadable   []string // no SELECT or USAGE privilege on one side
	Mismatched   []string // the increment's sign differs between the sides
}

// Problems lists, in words, what needs a look: sequences not copied and
// sequences held at their bound.
func (r SequenceReport) Problems() []string {
	var out []string
	for _, s := range r.OnlyOnSource {
		out = append(out, fmt.Sprintf("sequence %s exists on the source only: its value was not copied", s))
	}
	for _, s := range r.Unreadable {
		out = append(out, fmt.Sprintf("sequence %s: no SELECT or USAGE privilege, value not copied: GRANT SELECT ON SEQUENCE %s to the connecting user", s, s))
	}
	for _, s := range r.Mismatched {
		out = append(out, fmt.Sprintf("sequence %s counts up on one side and down on the other: value not copied", s))
	}
	for _, s := range r.Synced {
		if s.Clamped && !s.Cycles {
			out = append(out, fmt.Sprintf("sequence %s: last value + margin passes its bound; set to the bound %d: it will soon run out", s.Sequence, s.Value))
		}
	}
	return out
}

// SyncSequences copies every sequence's value from one side to the other:
// the target is set to the source's last value moved by margin in the
// sequence's own direction, clamped to the target's bounds, with
// setval(seq, v, true). A sequence never called on the source is left
// uncalled on the target at the source's pending value (no value was handed
// out, so none can collide; user-visible numbering starts where it would
// have). A target already ahead of that (it took writes) is kept: a
// sequence never moves back, except a cycling one, which is set as is.
//
// It reads both sides concurrently and sets every value in one statement,
// because it runs inside the write freeze.
func SyncSequences(ctx context.Context, from, to pg.Querier, margin int64) (SequenceReport, error) {
	if margin < 0 {
		return SequenceReport{}, fmt.Errorf("sequences.margin must not be negative (got %d)", margin)
	}
	var src, dst []SequenceState
	var srcErr, dstErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		dst, dstErr = ListSequences(ctx, to, false)
	}()
	src, srcErr = ListSequences(ctx, from, true)
	wg.Wait()
	if srcErr != nil {
		return SequenceReport{}, fmt.Errorf("source: %w", srcErr)
	}
	if dstErr != nil {
		return SequenceReport{}, fmt.Errorf("target: %w", dstErr)
	}

	report, plan := planSequenceSync(src, dst, margin)
	if len(plan.schemas) == 0 {
		return report, nil
	}
	n, err := pg.Scalar[int64](ctx, to, setSequencesSQL, plan.schemas, plan.names, plan.values, plan.called)
	if err != nil {
		return report, fmt.Errorf("target: set %d sequences: %w", len(plan.schemas), err)
	}
	if int(n) != len(plan.schemas) {
		return report, fmt.Errorf("target: set %d sequences of %d", n, len(plan.schemas))
	}
	return report, nil
}

// setSequencesSQL sets every sequence in one round trip.
const setSequencesSQL = `
SELECT count(pg_catalog.setval(pg_catalog.format('%I.%I', u.s, u.n)::regclass, u.v, u.c))
  FROM unnest($1::text[], $2::text[], $3::int8[], $4::bool[]) AS u(s, n, v, c)`

type setvalPlan struct {
	schemas, names []string
	values         []int64
	called         []bool
}

// planSequenceSync is the pure part of SyncSequences: what to set where.
func planSequenceSync(src, dst []SequenceState, margin int64) (SequenceReport, setvalPlan) {
	var report SequenceReport
	var plan setvalPlan
	targets := make(map[string]SequenceState, len(dst))
	for _, d := range dst {
		targets[d.qualified()] = d
	}
	seen := map[string]bool{}
	for _, s := range src {
		name := s.qualified()
		seen[name] = true
		d, ok := targets[name]
		switch {
		case !ok:
			report.OnlyOnSource = append(report.OnlyOnSource, name)
			continue
		case !s.Readable || !d.Readable:
			report.Unreadable = append(report.Unreadable, name)
			continue
		case (s.Increment > 0) != (d.Increment > 0):
			report.Mismatched = append(report.Mismatched, name)
			continue
		}
		r := SequenceSync{Sequence: name, Cycles: d.Cycle}
		if s.Called {
			last := s.Last
			r.SourceLast = &last
			step := margin
			if s.Increment < 0 {
				step = -margin
			}
			r.Value, r.Clamped = addClamp(s.Last, step, d.Min, d.Max)
			r.IsCalled = true
		} else {
			r.Value, r.Clamped = clamp(s.Last, d.Min, d.Max)
		}
		// Never move the target back past values it handed out (an
		// uncalled target has handed out none).
		newNext := SequenceState{Increment: d.Increment, Min: d.Min, Max: d.Max, Called: r.IsCalled, Last: r.Value}.next()
		if d.Called && !d.Cycle && ahead(d.next(), newNext, d.Increment) {
			r.Kept = true
			r.Value, r.IsCalled, r.Clamped = d.Last, d.Called, false
			report.Synced = append(report.Synced, r)
			continue
		}
		report.Synced = append(report.Synced, r)
		plan.schemas = append(plan.schemas, s.Schema)
		plan.names = append(plan.names, s.Name)
		plan.values = append(plan.values, r.Value)
		plan.called = append(plan.called, r.IsCalled)
	}
	for _, d := range dst {
		if !seen[d.qualified()] {
			report.OnlyOnTarget = append(report.OnlyOnTarget, d.qualified())
		}
	}
	sort.Strings(report.OnlyOnTarget)
	return report, plan
}

// ahead says whether a is past b in the direction of inc.
func ahead(a, b, inc int64) bool {
	if inc > 0 {
		return a > b
	}
	return a < b
}

// addClamp is a+b held within [lo, hi], without int64 overflow.
func addClamp(a, b, lo, hi int64) (int64, bool) {
	switch {
	case b > 0 && a > math.MaxInt64-b:
		return hi, true
	case b < 0 && a < math.MinInt64-b:
		return lo, true
	}
	return clamp(a+b, lo, hi)
}

func clamp(v, lo, hi int64) (int64, bool) {
	switch {
	case v > hi:
		return hi, true
	case v < lo:
		return lo, true
	}
	return v, false
}
