package cutover

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/steps/switcher"
)

// The write freeze (cutover.freeze) holds the side that takes writes:
//
//	pooler     PgBouncer PAUSE: running transactions finish, new queries
//	           queue in PgBouncer; clients see a delay, never an error.
//	read-only  ALTER DATABASE ... SET default_transaction_read_only = on,
//	           then every other session is ended so that none keeps
//	           writing; clients see their connection drop and, until the
//	           switch, read-only errors. For a switch that cannot hold
//	           queries (HAProxy, exec).
//	both       the two: a second lock for clients that bypass the pooler.

func freezeModes(mode string) (pooler, readOnly bool) {
	switch mode {
	case "read-only":
		return false, true
	case "both":
		return true, true
	}
	return true, false
}

// beforeFreeze runs the driver's preparation for a pooler freeze, before
// the pause is timed.
func (r *run) beforeFreeze(ctx context.Context) {
	if pooler, _ := freezeModes(r.spec.Cutover.Freeze); pooler {
		if bf, ok := r.drv.(switcher.BeforeFreezer); ok {
			bf.BeforeFreeze(ctx)
		}
	}
}

// freeze freezes one side. wasReadOnly says whether its owner had made it
// read-only already (then unfreeze leaves it so).
func (r *run) freeze(ctx context.Context, db *pgxpool.Pool, dbname string) error {
	pooler, readOnly := freezeModes(r.spec.Cutover.Freeze)
	if pooler {
		if err := r.drv.Freeze(ctx); err != nil {
			err = fmt.Errorf("freeze writes with %s: %w", r.drv.Name(), err)
			if errors.Is(err, switcher.ErrFreezeTimeout) {
				err = r.nameOpenTransactions(ctx, db, dbname, err)
			}
			return err
		}
	}
	if readOnly {
		if err := pg.FreezeReadOnly(ctx, db, dbname); err != nil {
			return err
		}
		n, err := pg.TerminateSessions(ctx, db, dbname, cutoverApplication)
		if err != nil {
			return err
		}
		r.env.Log.Debug("read-only freeze: ended sessions", "database", dbname, "sessions", n)
	}
	return nil
}

// unfreeze lifts what freeze did; owner-made read-only stays. Both halves
// are tried even when one fails.
func (r *run) unfreeze(ctx context.Context, db *pgxpool.Pool, dbname string, wasReadOnly bool) error {
	pooler, readOnly := freezeModes(r.spec.Cutover.Freeze)
	var errs []error
	if readOnly && !wasReadOnly {
		if db == nil {
			errs = append(errs, fmt.Errorf("database %s is unreachable: run ALTER DATABASE %s RESET default_transaction_read_only on it", dbname, pg.QuoteIdent(dbname)))
		} else if err := pg.UnfreezeReadOnly(ctx, db, dbname); err != nil {
			errs = append(errs, err)
		}
	}
	if pooler {
		if err := r.drv.Unfreeze(ctx); err != nil {
			errs = append(errs, fmt.Errorf("unfreeze with %s: %w", r.drv.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// readOnlyBefore reads, before the first freeze, whether the database is
// read-only by its owner's choice; the recorded answer wins on a re-run.
func (r *run) readOnlyBefore(ctx context.Context, key string, db *pgxpool.Pool, dbname string) (bool, error) {
	if v := r.out(key); v != "" {
		return v == "true", nil
	}
	st, err := pg.ReadOnlyFrozen(ctx, db, dbname)
	if err != nil {
		return false, err
	}
	r.record(key, strconv.FormatBool(st.ReadOnly))
	return st.ReadOnly, nil
}

// howToUnfreeze says, for messages, what to run by hand when an unfreeze
// failed.
func (r *run) howToUnfreeze(side switcher.Side) string {
	pooler, readOnly := freezeModes(r.spec.Cutover.Freeze)
	dbname := r.blueDB
	if side == switcher.Green {
		dbname = r.greenDB
	}
	var how []string
	if pooler && r.spec.Cutover.Switch.PgBouncer != nil {
		how = append(how, fmt.Sprintf("RESUME %s on PgBouncer's admin console", pg.QuoteIdent(r.spec.Cutover.Switch.PgBouncer.Database)))
	}
	if readOnly {
		how = append(how, fmt.Sprintf("ALTER DATABASE %s RESET default_transaction_read_only on %s", pg.QuoteIdent(dbname), side))
	}
	if len(how) == 0 {
		return "nothing to undo by hand"
	}
	s := how[0]
	if len(how) > 1 {
		s += ", and " + how[1]
	}
	return s
}

// nameOpenTransactions adds to a pooler freeze that timed out the sessions
// whose open transactions it waited for, and how to end them. ctx has
// expired by then: the lookup gets a few seconds of its own.
func (r *run) nameOpenTransactions(ctx context.Context, db *pgxpool.Pool, dbname string, cause error) error {
	if db == nil {
		return cause
	}
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	began := r.frozen
	if began.IsZero() {
		began = time.Now()
	}
	open, err := pg.OpenTransactions(lctx, db, dbname, cutoverApplication, began)
	if err != nil || len(open) == 0 {
		return cause
	}
	return fmt.Errorf("%w; still open in database %s: %s; PAUSE waits for every running transaction to end: have them commit, or end them with SELECT pg_terminate_backend(<pid>) (idle_in_transaction_session_timeout ends idle ones for you)",
		cause, dbname, strings.Join(open, ", "))
}

// freezeHolds checks, just before the switch, that a pooler freeze is still
// in place: a PgBouncer restarted inside the pause has forgotten its PAUSE
// and let writes reach the frozen side, which the drain did not carry over,
// so the switch must not happen. The read-only freeze survives restarts;
// with both, it still holds the writes.
func (r *run) freezeHolds(ctx context.Context, dbname string) error {
	pooler, readOnly := freezeModes(r.spec.Cutover.Freeze)
	fc, ok := r.drv.(switcher.FreezeChecker)
	if !pooler || readOnly || !ok {
		return nil
	}
	frozen, err := fc.Frozen(ctx)
	if err != nil {
		return fmt.Errorf("cannot tell whether %s still holds database %s paused, so not switching: %w", r.drv.Name(), dbname, err)
	}
	if !frozen {
		return fmt.Errorf("%s no longer holds database %s paused (restarted, or someone ran RESUME, inside the freeze): writes may have gone through since the drain, so not switching", r.drv.Name(), dbname)
	}
	return nil
}
