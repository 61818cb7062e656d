package cutover

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/spec"
)

// keyConfirmed records whether a write through cutover.confirm.dsn landed on
// green ("true"/"false"); absent when the spec sets no confirm.dsn.
const keyConfirmed = "confirmed_through_switch"

// confirmBudget bounds the write through the switch: it runs after the
// unfreeze, so it delays nobody, but must not hang on a stuck pooler.
const confirmBudget = 15 * time.Second

// serverIdentity is what tells one PostgreSQL server's database from another.
//
// The server is recognised by pg_control_system()'s system_identifier,
// chosen at initdb and unique per cluster: green, made by its own initdb, has
// another one than blue. On 13 and 17 the function is executable by PUBLIC
// (pg_proc holds no ACL for it and no REVOKE in the catalog scripts), so the
// application's own role can read it through the pooler. A per-cutover token
// set with ALTER DATABASE ... SET on green was the other way, but setting a
// custom placeholder that way needs a superuser, only reaches sessions opened
// afterwards (a pooler keeps its server connections), and leaves state to
// clean up after a killed run. The database name is compared too, since one
// cluster may hold both sides' databases.
type serverIdentity struct {
	System   string
	Database string
}

const identitySQL = "SELECT (SELECT system_identifier FROM pg_control_system())::text, current_database()"

func (id serverIdentity) String() string {
	return fmt.Sprintf("system identifier %s, database %s", id.System, id.Database)
}

// confirmThroughSwitch writes through cutover.confirm.dsn, as the
// application would, and checks the write landed on green. It runs after the
// unfreeze: a query through a paused PgBouncer waits for RESUME. Without
// confirm.dsn it does nothing. A failure is returned for the caller to report
// (the cutover is not undone: green is live and may already hold writes).
func (r *run) confirmThroughSwitch(ctx context.Context) error {
	c := r.spec.Cutover.Confirm
	if c == nil || c.DSN == "" {
		return nil
	}
	through := engine.NewDatabase("cutover.confirm", spec.Endpoint{DSN: c.DSN, PasswordEnv: c.PasswordEnv})
	landed, err := writeThrough(ctx, through)
	if err == nil {
		err = r.landedOnGreen(ctx, through, landed)
	}
	if err != nil {
		r.record(keyConfirmed, "false")
		r.env.Log.Error("write through the switch NOT confirmed on green", "confirmed_through_switch", false, "through", through.Redacted(), "error", err)
		return fmt.Errorf("the cutover switched to green and unfroze, but a write through %s was not confirmed on green: %w. "+
			"Traffic may be split between blue and green: check where %s sends clients (pgshift status); to go back to blue, run pgshift rollback --step cutover (replication kept, to cut over again later)",
			through.Redacted(), err, r.drv.Name())
	}
	r.record(keyConfirmed, "true")
	r.env.Log.Info("write through the switch landed on green", "confirmed_through_switch", true, "through", through.Redacted())
	return nil
}

// writeThrough makes one real write through the switch that leaves nothing
// behind (a temporary table dropped at commit), and says on which server it
// ran, in the same transaction. The simple protocol keeps it valid through
// PgBouncer's transaction pooling (no prepared statements).
func writeThrough(ctx context.Context, db *engine.Database) (serverIdentity, error) {
	var id serverIdentity
	ctx, cancel := context.WithTimeout(ctx, confirmBudget)
	defer cancel()
	cfg, err := db.ConnConfig()
	if err != nil {
		return id, err
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		hint := "check cutover.confirm.dsn"
		if db.PasswordEnv != "" && db.Password() == "" {
			hint = "cutover.confirm.password_env names " + db.PasswordEnv + ", which is not set: export it"
		}
		return id, fmt.Errorf("connect through %s: %w (%s)", db.Redacted(), err, hint)
	}
	defer conn.Close(context.Background())
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "CREATE TEMPORARY TABLE pgshift_confirm (x int) ON COMMIT DROP"); err != nil {
			return fmt.Errorf("create a temporary table: %w", err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO pgshift_confirm VALUES (1)"); err != nil {
			return fmt.Errorf("insert into it: %w", err)
		}
		if err := tx.QueryRow(ctx, identitySQL).Scan(&id.System, &id.Database); err != nil {
			return fmt.Errorf("read the server's identity (pg_control_system(), which the role must be allowed to run): %w", err)
		}
		return nil
	})
	if err != nil {
		return id, fmt.Errorf("write through %s: %w", db.Redacted(), err)
	}
	return id, nil
}

// landedOnGreen compares where the write ran with green and blue read
// directly.
func (r *run) landedOnGreen(ctx context.Context, through *engine.Database, landed serverIdentity) error {
	var green, blue serverIdentity
	if err := r.green.QueryRow(ctx, identitySQL).Scan(&green.System, &green.Database); err != nil {
		return fmt.Errorf("green: read its identity: %w", err)
	}
	blueErr := r.blue.QueryRow(ctx, identitySQL).Scan(&blue.System, &blue.Database)
	switch {
	case blueErr == nil && blue == green:
		return errors.New("blue and green report the same identity (" + green.String() + "): pgshift cannot tell them apart")
	case landed == green:
		return nil
	case blueErr == nil && landed == blue:
		return fmt.Errorf("it landed on BLUE (%s), not on green (%s)", landed, green)
	}
	return fmt.Errorf("it landed on neither side: %s, while green is %s", landed, green)
}

// finishAndConfirm finishes a cutover a killed run left after its switch,
// then confirms a write through the switch.
func (r *run) finishAndConfirm(ctx context.Context) error {
	if err := r.finish(ctx, false); err != nil {
		return err
	}
	return r.confirmThroughSwitch(ctx)
}
