package steps

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/words"
	"github.com/pgshift/pgshift/plans"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps/snapcopy"
	"github.com/pgshift/pgshift/steps/stepid"
	"github.com/prometheus/client_golang/prometheus"
)

// Outputs of target.copy in the state file.
const (
	CopyConsistentLSN = "consistent_lsn" // the slot's consistent point: streaming starts after it
	CopyRows          = "rows"
	CopyBytes         = "bytes"
	CopyParts         = "parts"
	CopySeconds       = "seconds"
	// CopyRestarts counts copies started over after an interruption, so
	// the state says that the data on green came from a later snapshot.
	CopyRestarts = "restarts"
)

func init() {
	register(func(spec *spec.Spec) []engine.Step {
		if spec.Replication.InitialCopy.Method != "snapshot" {
			return nil
		}
		return []engine.Step{&copyStep{spec: spec}}
	})
}

// copyStep creates blue's slot with an exported snapshot, copies every
// selected table from that snapshot with parallel workers (big tables split
// by block ranges), then restores the post-data section (indexes, keys,
// triggers) in parallel. The subscription then streams from the slot with
// copy_data = false: no row lost, none doubled.
//
// An interrupted copy cannot resume (its snapshot died with its
// connection): applying again finds the slot without a finished copy,
// empties the copied tables on green, drops the slot and starts over.
type copyStep struct{ spec *spec.Spec }

func (s *copyStep) ID() string      { return stepid.Copy }
func (s *copyStep) Needs() []string { return []string{stepid.Schema, stepid.Slot} }

func (s *copyStep) workers() int {
	if w := s.spec.Replication.InitialCopy.Workers; w > 0 {
		return w
	}
	return 1
}

func (s *copyStep) describeCreate(tables int, bytes int64) plans.Change {
	ic := s.spec.Replication.InitialCopy
	what := "the selected tables"
	if tables >= 0 {
		what = fmt.Sprintf("%s (%s)", words.Count(tables, "table"), copySize(bytes))
	}
	split := "no table split"
	if ic.SplitTablesLargerThan > 0 {
		split = "tables over " + ic.SplitTablesLargerThan.String() + " split by block ranges"
	}
	return plans.Change{
		Action: plans.ActionCreate,
		Summary: fmt.Sprintf("copy %s from an exported snapshot with %d workers (%s), then indexes and keys in parallel",
			what, s.workers(), split),
		Details: []string{
			fmt.Sprintf("CREATE_REPLICATION_SLOT %s LOGICAL pgoutput EXPORT_SNAPSHOT on blue", s.spec.SlotName()),
			"COPY ... TO STDOUT (snapshot) on blue streamed into COPY ... FROM STDIN on green, binary where every column type allows it",
			"pg_dump --section=post-data on blue, applied on green: indexes and keys, then the rest, then foreign keys",
			"if interrupted, the next apply empties the copied tables on green, drops the slot and copies again",
		},
	}
}

func (s *copyStep) Describe() plans.Change { return s.describeCreate(-1, 0) }

func (s *copyStep) DescribeRollback() string {
	return fmt.Sprintf("TRUNCATE the copied tables on green; drop slot %s on blue once no subscriber holds it", s.spec.SlotName())
}

// copyState is what Observe, Check and Apply decide from.
type copyState struct {
	tables     []pg.Table
	bytes      int64
	slotExists bool
	slotInUse  string   // why the slot must not be reset: a subscriber holds it or green has a subscription on it
	done       bool     // a finished copy is recorded and its slot exists
	slotLost   bool     // a finished copy is recorded but its slot is gone
	nonEmpty   []string // green tables holding rows
}

func (s *copyStep) inspect(ctx context.Context, env *engine.Env) (copyState, error) {
	var st copyState
	blue, err := env.Source.Pool(ctx)
	if err != nil {
		return st, err
	}
	green, err := env.Target.Pool(ctx)
	if err != nil {
		return st, err
	}
	if st.tables, err = pg.SelectedTables(ctx, blue, s.spec.Tables.Include, s.spec.Tables.Exclude); err != nil {
		return st, fmt.Errorf("blue: %w", err)
	}
	for _, t := range st.tables {
		st.bytes += t.Bytes
	}
	slot, err := pg.ReadSlot(ctx, blue, s.spec.SlotName())
	if err != nil {
		return st, err
	}
	st.slotExists = slot.Exists
	if slot.Active {
		st.slotInUse = fmt.Sprintf("slot %s on blue is in use by %s", s.spec.SlotName(), pg.SlotHolder(ctx, blue, slot.ActivePID))
	}
	var sub string
	err = green.QueryRow(ctx, `SELECT subname FROM pg_subscription WHERE subslotname = $1
		AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`, s.spec.SlotName()).Scan(&sub)
	switch {
	case err == nil:
		st.slotInUse = fmt.Sprintf("subscription %s on green uses slot %s", sub, s.spec.SlotName())
	case !errors.Is(err, pgx.ErrNoRows):
		return st, fmt.Errorf("green: read subscriptions: %w", err)
	}
	_, recorded := env.Output(stepid.Copy, CopyConsistentLSN)
	st.done = recorded && slot.Exists
	st.slotLost = recorded && !slot.Exists
	for _, t := range st.tables {
		var has bool
		// to_regclass: before target.schema has run the table may be missing.
		err := green.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, t.Ident()).Scan(&has)
		if err != nil {
			return st, fmt.Errorf("green: look up %s: %w", t.QualifiedName(), err)
		}
		if !has {
			continue
		}
		if err := green.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+t.Ident()+")").Scan(&has); err != nil {
			return st, fmt.Errorf("green: read %s: %w", t.QualifiedName(), err)
		}
		if has {
			st.nonEmpty = append(st.nonEmpty, t.QualifiedName())
		}
	}
	return st, nil
}

func (s *copyStep) Observe(ctx context.Context, env *engine.Env) (plans.Change, error) {
	st, err := s.inspect(ctx, env)
	if err != nil {
		return plans.Change{}, err
	}
	switch {
	case st.done:
		rows, _ := env.Output(stepid.Copy, CopyRows)
		lsn, _ := env.Output(stepid.Copy, CopyConsistentLSN)
		return plans.Change{Action: plans.ActionNone,
			Summary: fmt.Sprintf("%s rows copied from the snapshot at %s", rows, lsn)}, nil
	case st.slotLost:
		return plans.Change{Action: plans.ActionBlocker,
			Summary:  "the copy finished, but its slot is gone from blue",
			Blockers: []string{s.slotLostMessage(env)}}, nil
	case st.slotExists && st.slotInUse != "":
		return plans.Change{Action: plans.ActionBlocker,
			Summary:  "the copy is not recorded as finished, but its slot is streaming",
			Blockers: []string{inUseMessage(st.slotInUse)}}, nil
	case st.slotExists:
		c := s.describeCreate(len(st.tables), st.bytes)
		c.Action = plans.ActionChange
		c.Warnings = []string{fmt.Sprintf("slot %s exists without a finished copy: an earlier copy was interrupted and its snapshot is gone; the copied tables on green are emptied, the slot dropped, and the copy starts over",
			s.spec.SlotName())}
		return c, nil
	case len(st.nonEmpty) > 0:
		return plans.Change{Action: plans.ActionBlocker,
			Summary:  "green's tables must be empty for the snapshot copy",
			Blockers: []string{nonEmptyMessage(st.nonEmpty)}}, nil
	}
	return s.describeCreate(len(st.tables), st.bytes), nil
}

// slotLostMessage: without the slot, blue's changes since the snapshot
// cannot reach green; the copy must start over.
func (s *copyStep) slotLostMessage(env *engine.Env) string {
	lsn, _ := env.Output(stepid.Copy, CopyConsistentLSN)
	return fmt.Sprintf("the copy finished at %s, but slot %s is gone from blue (dropped by hand, or by max_slot_wal_keep_size), so blue's changes since cannot reach green: run pgshift rollback to empty the copied tables, then apply again to copy anew",
		lsn, s.spec.SlotName())
}

// inUseMessage refuses to start the copy over under a live subscriber:
// that would empty tables a subscription is filling.
func inUseMessage(why string) string {
	return why + ": the copy seems finished but the state does not record it; use the state file of the run that copied, or drop the subscription (and let apply copy again)"
}

func nonEmptyMessage(tables []string) string {
	shown := tables
	if len(shown) > 5 {
		shown = shown[:5]
	}
	return fmt.Sprintf("%d tables on green already hold rows (%v): the snapshot copy fills empty tables only; empty them (TRUNCATE) if they are leftovers, or use replication.initial_copy.method: subscription",
		len(tables), shown)
}

func (s *copyStep) Check(ctx context.Context, env *engine.Env) ([]plans.Precondition, error) {
	st, err := s.inspect(ctx, env)
	if err != nil {
		return nil, err
	}
	empty := plans.Precondition{Name: "green's copied tables are empty (or hold an interrupted copy)", OK: true}
	if !st.slotExists && len(st.nonEmpty) > 0 {
		empty.OK, empty.Detail = false, nonEmptyMessage(st.nonEmpty)
	}
	free := plans.Precondition{Name: "no subscriber holds the slot of an unfinished copy", OK: true}
	if st.slotExists && !st.done && st.slotInUse != "" {
		free.OK, free.Detail = false, inUseMessage(st.slotInUse)
	}
	return []plans.Precondition{empty, free}, nil
}

func (s *copyStep) Apply(ctx context.Context, env *engine.Env) error {
	st, err := s.inspect(ctx, env)
	if err != nil {
		return err
	}
	if st.done {
		return nil
	}
	blue, err := env.Source.Pool(ctx)
	if err != nil {
		return err
	}
	green, err := env.Target.Pool(ctx)
	if err != nil {
		return err
	}
	rels := make([]snapcopy.Relation, len(st.tables))
	for i, t := range st.tables {
		rels[i] = snapcopy.Relation{Schema: t.Schema, Name: t.Name}
	}
	slot := s.spec.SlotName()
	switch {
	case st.slotLost:
		return fmt.Errorf("%s: %s", stepid.Copy, s.slotLostMessage(env))
	case st.slotExists && st.slotInUse != "":
		return errors.New(inUseMessage(st.slotInUse))
	case st.slotExists:
		env.Log.Warn("an earlier copy was interrupted and its snapshot is gone: emptying the copied tables on green, dropping the slot, copying again", "slot", slot)
		if err := snapcopy.Reset(ctx, blue, green, slot, rels); err != nil {
			return fmt.Errorf("%s: start over after an interrupted copy: %w", stepid.Copy, err)
		}
		restarts, _ := strconv.Atoi(outputOr(env, stepid.Copy, CopyRestarts, "0"))
		env.Record(CopyRestarts, strconv.Itoa(restarts+1))
	case len(st.nonEmpty) > 0:
		return errors.New(nonEmptyMessage(st.nonEmpty))
	}

	blueCfg, err := env.Source.ConnConfig()
	if err != nil {
		return err
	}
	greenCfg, err := env.Target.ConnConfig()
	if err != nil {
		return err
	}
	bv, err := pg.ServerVersionOf(ctx, blue)
	if err != nil {
		return fmt.Errorf("blue: %w", err)
	}
	// Inventory before the slot: listing partitions and sizes needs no
	// snapshot, and the slot's creation waits for running transactions.
	tables, err := snapcopy.Inventory(ctx, blue, green, rels)
	if err != nil {
		return err
	}
	parts := snapcopy.PlanParts(tables, snapcopy.PlanOptions{
		SplitBytes:  int64(s.spec.Replication.InitialCopy.SplitTablesLargerThan),
		Workers:     s.workers(),
		SourceMajor: bv.Major,
	})

	env.Log.Info("creating the replication slot with an exported snapshot (waits for transactions running on blue)", "slot", slot)
	snap, err := snapcopy.ExportSnapshot(ctx, blueCfg, slot)
	if err != nil {
		return err
	}
	defer snap.Close(context.Background())
	env.Log.Info("slot created", "slot", slot, "consistent_lsn", snap.ConsistentLSN.String(),
		"tables", len(st.tables), "parts", len(parts), "workers", s.workers())

	progress := newCopyProgress(env, parts)
	stopProgress := progress.start(10 * time.Second)
	copier := &snapcopy.Copier{
		Source: blueCfg, Target: greenCfg, Snapshot: snap.Name, Workers: s.workers(),
		Observer: snapcopy.Observers{progress.counters, copyMetrics(env)},
		Log:      env.Log,
	}
	res, err := copier.Run(ctx, parts)
	stopProgress()
	if err != nil {
		return fmt.Errorf("%s: %w (apply again: the copy starts over from a new snapshot)", stepid.Copy, err)
	}
	if err := snap.Close(ctx); err != nil {
		env.Log.Debug("closing the snapshot connection", "error", err)
	}
	env.Log.Info("rows copied", "rows", res.Rows, "bytes", res.Bytes, "parts", res.Parts,
		"elapsed", res.Elapsed.Round(time.Millisecond), "MB/s", copyRate(res.Bytes, res.Elapsed))
	if !res.ReplicaRole {
		env.Log.Warn("green's copy sessions could not set session_replication_role = replica (needs a superuser): triggers present on green fired during the copy")
	}

	if err := s.applyPostData(ctx, env, greenCfg); err != nil {
		return err
	}
	// Rows arrived by COPY, so green has no planner statistics yet; without
	// them the first queries after the cutover could plan badly.
	// A failure here loses nothing (autovacuum analyzes later), so it
	// warns rather than throwing the finished copy away.
	if err := analyzeTables(ctx, env, st.tables); err != nil {
		env.Log.Warn("the copy is complete, but gathering statistics on green failed: run ANALYZE on green before the cutover", "error", err)
	}
	env.Record(CopyRows, strconv.FormatInt(res.Rows, 10))
	env.Record(CopyBytes, strconv.FormatInt(res.Bytes, 10))
	env.Record(CopyParts, strconv.Itoa(res.Parts))
	env.Record(CopySeconds, strconv.FormatFloat(res.Elapsed.Seconds(), 'f', 1, 64))
	env.Record(CopyConsistentLSN, snap.ConsistentLSN.String())
	return nil
}

// applyPostData restores blue's post-data section on green: the indexes,
// keys and triggers target.schema left out so that the copy ran without them.
func (s *copyStep) applyPostData(ctx context.Context, env *engine.Env, greenCfg *pgx.ConnConfig) error {
	dir, err := os.MkdirTemp("", "pgshift-postdata-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path, err := DumpSchema(ctx, env, dir, SectionPostData)
	if err != nil {
		return fmt.Errorf("%s: dump post-data: %w", stepid.Copy, err)
	}
	script, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	stmts, err := snapcopy.SplitStatements(string(script))
	if err != nil {
		return fmt.Errorf("%s: post-data from pg_dump: %w", stepid.Copy, err)
	}
	started := time.Now()
	env.Log.Info("building indexes and keys on green", "statements", len(stmts), "workers", s.workers())
	pd := &snapcopy.PostData{Target: greenCfg, Workers: s.workers(), SkipExisting: true, Log: env.Log}
	if err := pd.Apply(ctx, stmts); err != nil {
		return fmt.Errorf("%s: %w", stepid.Copy, err)
	}
	env.Log.Info("post-data restored", "elapsed", time.Since(started).Round(time.Millisecond))
	return nil
}

func (s *copyStep) Rollback(ctx context.Context, env *engine.Env) error {
	blue, err := env.Source.Pool(ctx)
	if err != nil {
		return err
	}
	green, err := env.Target.Pool(ctx)
	if err != nil {
		return err
	}
	tables, err := pg.SelectedTables(ctx, blue, s.spec.Tables.Include, s.spec.Tables.Exclude)
	if err != nil {
		return fmt.Errorf("blue: %w", err)
	}
	var present []snapcopy.Relation
	for _, t := range tables {
		var has bool
		if err := green.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, t.Ident()).Scan(&has); err != nil {
			return fmt.Errorf("green: look up %s: %w", t.QualifiedName(), err)
		}
		if has {
			present = append(present, snapcopy.Relation{Schema: t.Schema, Name: t.Name})
		}
	}
	if err := snapcopy.TruncateTargets(ctx, green, present); err != nil {
		return err
	}
	return pg.DropSlot(ctx, env.Log, blue, s.spec.SlotName(), pg.SlotReleaseWait)
}

// copyProgress logs how far the copy is: parts, bytes, rate and an ETA
// from the planned parts' sizes.
type copyProgress struct {
	env      *engine.Env
	counters *snapcopy.Counters
	total    int64 // planned bytes (on-disk sizes)
	parts    int
	started  time.Time
}

func newCopyProgress(env *engine.Env, parts []snapcopy.Part) *copyProgress {
	p := &copyProgress{env: env, counters: &snapcopy.Counters{}, parts: len(parts), started: time.Now()}
	for _, x := range parts {
		p.total += x.Bytes
	}
	return p
}

// start logs progress every interval and, on a terminal, keeps a live bar
// (bytes, rate, ETA, parts and rows) up to date every second.
func (p *copyProgress) start(every time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	bar := p.env.StartProgress("copy", p.total, true)
	go func() {
		defer wg.Done()
		logTick := time.NewTicker(every)
		defer logTick.Stop()
		barTick := time.NewTicker(time.Second)
		defer barTick.Stop()
		for {
			select {
			case <-done:
				p.draw(bar)
				bar.Finish()
				return
			case <-logTick.C:
				p.log()
			case <-barTick.C:
				p.draw(bar)
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func (p *copyProgress) draw(bar engine.ProgressBar) {
	bar.Set(p.counters.TotalBytes(), fmt.Sprintf("%d/%d parts, %d rows", p.counters.PartsDone(), p.parts, p.counters.TotalRows()))
}

func (p *copyProgress) log() {
	elapsed := time.Since(p.started)
	bytes := p.counters.TotalBytes()
	fraction := 0.0
	if p.total > 0 {
		// Streamed COPY bytes against on-disk bytes is only an estimate.
		fraction = float64(bytes) / float64(p.total)
	}
	eta := "unknown"
	if fraction > 0.01 && fraction < 1 {
		eta = (time.Duration(float64(elapsed) * (1 - fraction) / fraction)).Round(time.Second).String()
	}
	p.env.Log.Info("copy progress", "parts_done", fmt.Sprintf("%d/%d", p.counters.PartsDone(), p.parts),
		"copied", copySize(bytes), "rows", p.counters.TotalRows(), "MB/s", copyRate(bytes, elapsed), "eta", eta)
}

// copyMetrics registers pgshift_copy_bytes_total and pgshift_copy_rows_total
// on the run's registry (once per registry) and feeds them.
func copyMetrics(env *engine.Env) snapcopy.Observer {
	if env.Metrics == nil || env.Metrics.Registry == nil {
		return snapcopy.Funcs{}
	}
	bytes := copyRegisterCounter(env.Metrics.Registry, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pgshift_copy_bytes_total", Help: "COPY data streamed from blue to green by the snapshot copy, by target table.",
	}, []string{"table"}))
	rows := copyRegisterCounter(env.Metrics.Registry, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pgshift_copy_rows_total", Help: "Rows committed on green by the snapshot copy, by target table.",
	}, []string{"table"}))
	return snapcopy.Funcs{
		OnBytes: func(table string, n int64) { bytes.WithLabelValues(table).Add(float64(n)) },
		OnRows:  func(table string, n int64) { rows.WithLabelValues(table).Add(float64(n)) },
	}
}

// copyRegisterCounter registers c, or returns the counter registered before
// under the same name (Apply may run more than once in a process).
func copyRegisterCounter(reg *prometheus.Registry, c *prometheus.CounterVec) *prometheus.CounterVec {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing
			}
		}
	}
	return c
}

// copySize writes a byte count with one decimal in binary units.
func copySize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

func copyRate(bytes int64, d time.Duration) string {
	if d <= 0 {
		return "0"
	}
	return strconv.FormatFloat(float64(bytes)/(1<<20)/d.Seconds(), 'f', 1, 64)
}

// Fingerprint leaves the moving table sizes out of a saved plan's check:
// writes on blue change them between plan and apply.
func (s *copyStep) Fingerprint(c plans.Change) string {
	return string(c.Action) + "\n" + strings.Join(c.Blockers, "\n") + "\n" + strings.Join(c.Warnings, "\n")
}

// outputOr is a recorded output of a step, or def when none was recorded.
func outputOr(env *engine.Env, step, key, def string) string {
	if v, ok := env.Output(step, key); ok {
		return v
	}
	return def
}

// analyzeTables runs ANALYZE on green for the copied tables, in one
// statement (a partitioned root covers its partitions).
func analyzeTables(ctx context.Context, env *engine.Env, tables []pg.Table) error {
	if len(tables) == 0 {
		return nil
	}
	green, err := env.Target.Pool(ctx)
	if err != nil {
		return err
	}
	idents := make([]string, len(tables))
	for i, t := range tables {
		idents[i] = t.Ident()
	}
	start := time.Now()
	if _, err := green.Exec(ctx, "ANALYZE "+strings.Join(idents, ", ")); err != nil {
		return fmt.Errorf("ANALYZE the copied tables on green: %w", err)
	}
	env.Log.Info("statistics gathered on green", "tables", len(tables), "elapsed", time.Since(start).Round(time.Millisecond))
	return nil
}
