package watch

import (
	"context"
	"fmt"
	"time"

	"github.com/pgshift/pgshift/internal/pg"
)

// Querier opens (or returns the open) connection pool of one side.
type Querier func(ctx context.Context) (pg.Querier, error)

// StepStatus is one step of the state file.
type StepStatus struct {
	ID, Status string
}

// StateReading is what watch takes from the state file: each step's
// status, and when the verify step last finished.
type StateReading struct {
	Steps []StepStatus
	// Statuses lists every status a step can have, so that each step
	// exports one 0/1 series per status.
	Statuses []string
	// VerifyFinished is when the verify step last finished (zero: never).
	VerifyFinished time.Time
	VerifyPassed   bool
}

// Collector reads, read-only, what watch exports from blue, green and the
// state file. Blue and Green are required; Drift and State may be nil (their
// metrics are then absent).
type Collector struct {
	Blue, Green  Querier
	Slot         string // pgshift's slot on blue
	Subscription string // green's subscription
	// CutoverLag is the lag the cutover accepts (pg.CatchupThreshold of
	// cutover.max_lag_bytes): ready-for-cutover needs lag under it.
	CutoverLag int64
	// Drift counts the schema differences between blue and green.
	Drift func(ctx context.Context) (int, error)
	// State reads the state file; nil reading: no state file yet.
	State func() (*StateReading, error)

	// lastApplyErrors is the apply error count of the previous complete
	// collection (-1: none yet), for "no new apply errors".
	lastApplyErrors int64
	started         bool
	// sub is the subscription as green last showed it (subKnown: green was
	// read at least once). Table-sync slots on blue are named after the
	// subscription's OID, which only green knows: while green is down they
	// are found with the OID last seen.
	sub      pg.Subscription
	subKnown bool
}

// Sample is one collection. Parts that could not be read are left unset
// and their metrics absent; Err says why.
type Sample struct {
	At       time.Time
	Duration time.Duration
	// BlueErr and GreenErr say why a side could not be reached.
	BlueErr, GreenErr error
	// Err is the first error of the collection, nil when everything was
	// read (both sides reached, every query answered).
	Err error

	Replicated bool // Progress, Slots, Settings and the worker state were read
	// SlotsRead says Slots and MaxSlotWALKeepSize were read: also when
	// only green was out of reach, which is when WAL piles up on blue.
	SlotsRead bool
	// SyncSlotsUnknown says Slots holds the main slot alone because the
	// table-sync slots could not be told apart: green was out of reach and
	// has not been read since watch started, so the subscription's OID in
	// their names is unknown. Their retained WAL is unknown, not zero.
	SyncSlotsUnknown bool
	Progress         pg.Progress // subscription, tables, main slot, worker errors
	Slots            []SlotSample
	// MaxSlotWALKeepSize is blue's max_slot_wal_keep_size in bytes (-1:
	// unlimited); HasMaxSlotWALKeepSize is false before PostgreSQL 13.
	MaxSlotWALKeepSize    int64
	HasMaxSlotWALKeepSize bool
	ApplyWorkerUp         bool

	DriftMeasured bool // Drift is set (a Drift function is wired and answered)
	Drift         int
	DriftErr      error

	State    *StateReading // nil: no state file (or no State function)
	StateErr error

	// Ready lists the conditions of ready-for-cutover that could be judged,
	// in a fixed order.
	Ready []Condition
}

// SlotSample is one replication slot of the upgrade on blue (the main slot,
// and table-sync slots while tables are copied).
type SlotSample struct {
	Name      string
	Exists    bool
	Active    bool
	WALStatus string // reserved, extended, unreserved, lost; "" before PostgreSQL 13
	// RetainedBytes is WAL blue keeps for the slot: its current position
	// minus the slot's restart_lsn (-1 unknown).
	RetainedBytes int64
	// SafeWALBytes is how much more WAL may be written before the slot is
	// lost (safe_wal_size); HasSafeWAL is false when max_slot_wal_keep_size
	// is unlimited or before PostgreSQL 13.
	SafeWALBytes int64
	HasSafeWAL   bool
	// Lag by stage, bytes behind blue's current position (-1 unknown: no
	// walsender, or nothing confirmed yet).
	SentLag, FlushLag, ApplyLag, ConfirmedLag int64
}

// Condition is one condition of ready-for-cutover.
type Condition struct {
	Name string
	OK   bool
}

// Ready conditions.
const (
	CondTablesReady   = "tables_ready"
	CondLag           = "lag_under_threshold"
	CondApplyWorker   = "apply_worker_up"
	CondNoApplyErrors = "no_new_apply_errors"
	CondNoDrift       = "no_schema_drift"
)

// ReadyForCutover says whether every judged condition holds and the
// collection was complete.
func (s *Sample) ReadyForCutover() bool {
	if s.Err != nil || !s.Replicated || len(s.Ready) == 0 {
		return false
	}
	for _, c := range s.Ready {
		if !c.OK {
			return false
		}
	}
	return true
}

// MainSlot is the upgrade's own slot in s.Slots (nil when not read).
func (s *Sample) MainSlot(name string) *SlotSample {
	for i := range s.Slots {
		if s.Slots[i].Name == name {
			return &s.Slots[i]
		}
	}
	return nil
}

// Collect reads one sample. It never fails: what could not be read is
// missing from the sample, and Err says why.
func (c *Collector) Collect(ctx context.Context) *Sample {
	if !c.started {
		c.started, c.lastApplyErrors = true, -1
	}
	s := &Sample{At: time.Now()}
	defer func() { s.Duration = time.Since(s.At) }()
	fail := func(err error) {
		if s.Err == nil {
			s.Err = err
		}
	}

	if c.State != nil {
		s.State, s.StateErr = c.State()
	}
	blue, berr := c.Blue(ctx)
	green, gerr := c.Green(ctx)
	s.BlueErr, s.GreenErr = berr, gerr
	if berr != nil {
		fail(berr)
	}
	if gerr != nil {
		fail(gerr)
	}
	if berr == nil && gerr != nil {
		c.readBlueSlotsGreenDown(ctx, s, blue, fail)
		return s
	}
	if berr != nil || gerr != nil {
		return s
	}

	var err error
	if s.Progress, err = pg.MeasureReplication(ctx, blue, green, c.Slot, c.Subscription); err != nil {
		fail(err)
		// A pool opened while green was up still hands out connections
		// when green is down, and they fail: ask green itself (unless the
		// collection ran out of time, which says nothing about green).
		if _, perr := green.Exec(ctx, "SELECT 1"); perr != nil && ctx.Err() == nil {
			s.GreenErr = fmt.Errorf("green: %w", perr)
			c.readBlueSlotsGreenDown(ctx, s, blue, fail)
		}
		return s
	}
	c.sub, c.subKnown = s.Progress.Subscription, true
	if !c.readBlueSlots(ctx, s, blue, s.Progress.Subscription, fail) {
		return s
	}
	if s.Progress.Subscription.Exists {
		if s.ApplyWorkerUp, err = applyWorkerUp(ctx, green, s.Progress.Subscription.OID); err != nil {
			fail(fmt.Errorf("green: %w", err))
			return s
		}
	}
	s.Replicated = true

	if c.Drift != nil {
		n, err := c.Drift(ctx)
		if err != nil {
			s.DriftErr = fmt.Errorf("compare schemas: %w", err)
			fail(s.DriftErr)
		} else {
			s.Drift, s.DriftMeasured = n, true
		}
	}
	s.Ready = c.judge(s)
	if s.Err == nil && s.Progress.ApplyErrors >= 0 {
		c.lastApplyErrors = s.Progress.ApplyErrors
	}
	return s
}

// judge evaluates the ready-for-cutover conditions that can be judged.
// Apply errors count from the subscription's creation: one error long
// fixed would block forever, so the condition is that the count did not
// grow since the previous collection (the first collection: that it is 0).
// Green before 15 has no error counts, and a watch without a drift
// function measures no drift: those conditions are left out.
func (c *Collector) judge(s *Sample) []Condition {
	p := s.Progress
	conds := []Condition{
		{CondTablesReady, p.Subscription.Exists && len(p.Tables) > 0 && p.Ready == len(p.Tables)},
		{CondLag, p.Slot.Exists && !p.Slot.Lost && p.Slot.LagBytes >= 0 && p.Slot.LagBytes <= c.CutoverLag},
		{CondApplyWorker, s.ApplyWorkerUp},
	}
	if p.ApplyErrors >= 0 {
		ok := p.ApplyErrors == 0
		if c.lastApplyErrors >= 0 {
			ok = p.ApplyErrors == c.lastApplyErrors
		}
		conds = append(conds, Condition{CondNoApplyErrors, ok})
	}
	if c.Drift != nil {
		conds = append(conds, Condition{CondNoDrift, s.DriftMeasured && s.Drift == 0})
	}
	return conds
}

// slotsSQL reads the upgrade's slots with what pg.ReadSlot leaves out: the
// WAL each retains, its wal_status and safe_wal_size (both 13+, read
// through to_jsonb so that older servers answer too), and the lag at each
// stage as the walsender reports it (sent; flushed and applied on green).
const slotsSQL = `
SELECT s.slot_name::text, s.active,
       coalesce(to_jsonb(s) ->> 'wal_status', ''),
       coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint, -1),
       (to_jsonb(s) ->> 'safe_wal_size')::bigint,
       coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), r.sent_lsn)::bigint, -1),
       coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), r.flush_lsn)::bigint, -1),
       coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn)::bigint, -1),
       coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint, -1)
  FROM pg_replication_slots s
  LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
 WHERE s.slot_name = $1 OR ($2 <> '' AND s.slot_name LIKE $2)
 ORDER BY s.slot_name <> $1, 1`

// readSlots reads the main slot (reported as not existing when it does
// not) and the table-sync slots of the subscription.
func readSlots(ctx context.Context, blue pg.Querier, slot string, sub pg.Subscription) ([]SlotSample, error) {
	syncLike := ""
	if sub.Exists {
		syncLike = fmt.Sprintf(`pg\_%d\_sync\_%%`, sub.OID)
	}
	rows, err := blue.Query(ctx, slotsSQL, slot, syncLike)
	if err != nil {
		return nil, fmt.Errorf("read replication slots: %w", err)
	}
	defer rows.Close()
	var out []SlotSample
	for rows.Next() {
		s := SlotSample{Exists: true}
		var safe *int64
		if err := rows.Scan(&s.Name, &s.Active, &s.WALStatus, &s.RetainedBytes, &safe,
			&s.SentLag, &s.FlushLag, &s.ApplyLag, &s.ConfirmedLag); err != nil {
			return nil, fmt.Errorf("read replication slots: %w", err)
		}
		if safe != nil {
			s.SafeWALBytes, s.HasSafeWAL = *safe, true
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read replication slots: %w", err)
	}
	if len(out) == 0 || out[0].Name != slot {
		out = append([]SlotSample{{Name: slot, RetainedBytes: -1, SentLag: -1, FlushLag: -1, ApplyLag: -1, ConfirmedLag: -1}}, out...)
	}
	return out, nil
}

// readMaxSlotWALKeepSize reads max_slot_wal_keep_size in bytes (-1:
// unlimited); ok is false where the setting does not exist (before 13).
func readMaxSlotWALKeepSize(ctx context.Context, blue pg.Querier) (bytes int64, ok bool, err error) {
	v, err := pg.Scalar[*int64](ctx, blue, "SELECT pg_size_bytes(current_setting('max_slot_wal_keep_size', true))")
	if err != nil {
		return 0, false, fmt.Errorf("read max_slot_wal_keep_size: %w", err)
	}
	if v == nil {
		return 0, false, nil
	}
	return *v, true, nil
}

// applyWorkerUp says whether the subscription's apply worker runs on green
// (pg_stat_subscription: the row without a table is the apply worker).
func applyWorkerUp(ctx context.Context, green pg.Querier, subOID uint32) (bool, error) {
	n, err := pg.Scalar[int64](ctx, green, "SELECT count(*) FROM pg_stat_subscription WHERE subid = $1 AND relid IS NULL AND pid IS NOT NULL", subOID)
	if err != nil {
		return false, fmt.Errorf("read the apply worker of the subscription: %w", err)
	}
	return n > 0, nil
}

// readBlueSlotsGreenDown reads blue's slots while green is down: blue keeps
// WAL for it, and that is the watch's first reason to exist. The table-sync
// slots are those of the subscription as green last showed it; when green
// was never read they are unknown.
func (c *Collector) readBlueSlotsGreenDown(ctx context.Context, s *Sample, blue pg.Querier, fail func(error)) {
	s.SyncSlotsUnknown = !c.subKnown
	c.readBlueSlots(ctx, s, blue, c.sub, fail)
}

// readBlueSlots reads blue's slots and max_slot_wal_keep_size into s; false
// when it could not.
func (c *Collector) readBlueSlots(ctx context.Context, s *Sample, blue pg.Querier, sub pg.Subscription, fail func(error)) bool {
	var err error
	if s.Slots, err = readSlots(ctx, blue, c.Slot, sub); err != nil {
		fail(fmt.Errorf("blue: %w", err))
		return false
	}
	if s.MaxSlotWALKeepSize, s.HasMaxSlotWALKeepSize, err = readMaxSlotWALKeepSize(ctx, blue); err != nil {
		fail(fmt.Errorf("blue: %w", err))
		return false
	}
	s.SlotsRead = true
	return true
}
