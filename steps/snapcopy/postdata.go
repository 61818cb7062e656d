package snapcopy

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// PostData applies the post-data section of a schema on green once the rows
// are in: indexes and primary/unique keys are built in parallel (building them
// after the load is much faster than maintaining them row by row), then the
// other statements (index attachments, triggers, rules, replica identity...)
// in script order on one connection, then foreign keys in parallel (each
// checks its rows against a now-indexed parent).
type PostData struct {
	Target  *pgx.ConnConfig // green; never changed
	Workers int             // parallel connections; at least 1
	// SkipExisting treats "already exists" errors as done, so that applying
	// again after an interruption finishes the job. Plain CREATE INDEX and
	// ADD CONSTRAINT are transactional: an interrupted one left nothing.
	SkipExisting bool
	Log          hclog.Logger
	// Done, if set, hears about every statement applied (or skipped).
	Done func(st Statement, elapsed time.Duration, skipped bool)
}

// Apply runs the statements in the three phases described on PostData.
func (pd *PostData) Apply(ctx context.Context, stmts []Statement) error {
	var phases [4][]Statement
	for _, st := range stmts {
		phases[st.Kind] = append(phases[st.Kind], st)
	}
	if err := pd.parallel(ctx, phases[KindIndex]); err != nil {
		return err
	}
	if err := pd.run(ctx, 1, phases[KindOther]); err != nil {
		return err
	}
	return pd.parallel(ctx, phases[KindForeignKey])
}

func (pd *PostData) parallel(ctx context.Context, stmts []Statement) error {
	n := pd.Workers
	if n < 1 {
		n = 1
	}
	return pd.run(ctx, n, stmts)
}

// run executes stmts over n connections, in order of the slice (each
// connection takes the next statement when it is free), stopping at the
// first error.
func (pd *PostData) run(ctx context.Context, n int, stmts []Statement) error {
	if len(stmts) == 0 {
		return nil
	}
	if n > len(stmts) {
		n = len(stmts)
	}
	log := pd.Log
	if log == nil {
		log = hclog.NewNullLogger()
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	queue := make(chan *Statement)
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	fail := func(err error) {
		once.Do(func() { firstErr = err; cancel(err) })
	}
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := pgx.ConnectConfig(ctx, pd.Target)
			if err != nil {
				fail(fmt.Errorf("green: post-data: connect: %w", err))
				return
			}
			defer conn.Close(context.Background())
			applied := map[string]string{} // setting name -> statement in effect
			for st := range queue {
				if err := pd.exec(ctx, conn, applied, st, log); err != nil {
					fail(err)
					return
				}
			}
		}()
	}
feed:
	for i := range stmts {
		select {
		case queue <- &stmts[i]:
		case <-ctx.Done():
			break feed
		}
	}
	close(queue)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return context.Cause(ctx)
}

// Codes that mean a post-data object is already in place.
var existsCodes = map[string]bool{
	"42P07": true, // duplicate_table: relation (index) already exists
	"42710": true, // duplicate_object: constraint, trigger, rule already exists
	"42P16": true, // invalid_table_definition: multiple primary keys
}

func (pd *PostData) exec(ctx context.Context, conn *pgx.Conn, applied map[string]string, st *Statement, log hclog.Logger) error {
	// Replay the session settings in effect at this point of the script.
	for _, set := range st.Settings {
		key := settingKey(set)
		if applied[key] == set {
			continue
		}
		if _, err := conn.PgConn().Exec(ctx, set).ReadAll(); err != nil {
			return fmt.Errorf("green: post-data line %d: session setting %q: %w", st.Line, set, err)
		}
		applied[key] = set
	}
	started := time.Now()
	for attempt := 1; ; attempt++ {
		_, err := conn.PgConn().Exec(ctx, st.SQL).ReadAll()
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
			log.Debug("post-data applied", "kind", st.Kind.String(), "line", st.Line, "elapsed", time.Since(started))
			if pd.Done != nil {
				pd.Done(*st, time.Since(started), false)
			}
			return nil
		case errors.As(err, &pgErr) && pgErr.Code == "40P01" && attempt < 5:
			// Foreign keys between the same tables, built at once, can
			// deadlock; the server aborts one, which simply goes again.
			continue
		case pd.SkipExisting && errors.As(err, &pgErr) && existsCodes[pgErr.Code]:
			log.Debug("post-data already in place", "line", st.Line, "detail", pgErr.Message)
			if pd.Done != nil {
				pd.Done(*st, time.Since(started), true)
			}
			return nil
		default:
			return fmt.Errorf("green: post-data statement at line %d (%s): %w\n%s", st.Line, st.Kind, err, shorten(st.SQL, 300))
		}
	}
}

func shorten(s string, max int) string {
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
