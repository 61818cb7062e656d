package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// pgBackend keeps each spec's state in a row of a table (created if
// missing) in a PostgreSQL database:
//
//	name        text PRIMARY KEY  -- the spec's name
//	spec_hash   text              -- the hash of the spec the state holds progress of
//	serial      bigint            -- the state's serial: every checkpoint is UPDATE ... WHERE serial = $old
//	state       jsonb             -- the state document (NULL until the first checkpoint)
//	updated_at  timestamptz
//	lock_holder jsonb             -- who took the lock last: pid, host, operation, since, backend_pid
//
// The lock is a session-level advisory lock on the state's database, held
// by a dedicated connection for the whole run (lock_postgres.go).
type pgBackend struct {
	dsn         string // the location without pgshift's parameters: what pgx connects with
	passwordEnv string
	table       pgx.Identifier
	tableName   string // as written, for messages
	name        string
	display     string // host:port/database, for messages
}

// stateTimeout bounds each state query: a checkpoint must not hang the run
// forever on a dead server.
const stateTimeout = 30 * time.Second

func parsePostgresLocation(loc string) (*pgBackend, error) {
	u, err := url.Parse(loc)
	if err != nil {
		return nil, errors.New("the postgres state location is not a valid URL: write postgres://user@host:5432/db?password_env=VAR")
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			return nil, fmt.Errorf("the state location %s holds a password; it must not: remove it and name an environment variable holding it with the password_env parameter (state.password_env in the spec), or use a .pgpass file", redactLocation(loc))
		}
	}
	q := u.Query()
	if q.Get("password") != "" || q.Get("sslpassword") != "" {
		return nil, errors.New("the state location holds a password parameter; it must not: name an environment variable holding it with the password_env parameter (state.password_env in the spec), or use a .pgpass file")
	}
	b := &pgBackend{passwordEnv: q.Get("password_env"), tableName: q.Get("table"), name: u.Fragment}
	q.Del("password_env")
	q.Del("table")
	if b.tableName == "" {
		b.tableName = DefaultStateTable
	}
	if !tableNameRE.MatchString(b.tableName) {
		return nil, fmt.Errorf("state table %q is not a plain name: write a name such as pgshift_state or ops.pgshift_state", b.tableName)
	}
	b.table = pgx.Identifier(strings.Split(b.tableName, "."))
	if b.name == "" {
		return nil, fmt.Errorf("the state location %s names no spec: end it with #SPEC-NAME", loc)
	}
	u.Fragment, u.RawFragment = "", ""
	u.RawQuery = q.Encode()
	b.dsn = u.String()
	cfg, err := pgx.ParseConfig(b.dsn)
	if err != nil {
		return nil, fmt.Errorf("the state location %s is not a valid connection string: write postgres://user@host:5432/db", loc)
	}
	b.display = fmt.Sprintf("%s:%d/%s", cfg.Host, cfg.Port, cfg.Database)
	return b, nil
}

func (b *pgBackend) where() string {
	return fmt.Sprintf("state %q in table %s on %s", b.name, b.tableName, b.display)
}

// connect opens a connection to the state's database, the password read
// from password_env now (never kept in the location).
func (b *pgBackend) connect(ctx context.Context, purpose string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(b.dsn)
	if err != nil {
		return nil, fmt.Errorf("%s: cannot parse the location's connection string", b.where())
	}
	if b.passwordEnv != "" {
		p := os.Getenv(b.passwordEnv)
		if p == "" {
			return nil, fmt.Errorf("%s: its password_env is %s, which is not set or empty in this environment: export it", b.where(), b.passwordEnv)
		}
		cfg.Password = p
	}
	app := "pgshift " + purpose + " " + b.name
	if len(app) > 63 {
		app = app[:63]
	}
	cfg.RuntimeParams["application_name"] = app
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: connect: %w (check the state dsn, password_env and pg_hba.conf of the state's server)", b.where(), err)
	}
	return conn, nil
}

// stateTableDDL is the state table's definition (docs/state.md gives it
// for a DBA to run beforehand).
const stateTableDDL = ` (
	name        text PRIMARY KEY,
	spec_hash   text NOT NULL DEFAULT '',
	serial      bigint NOT NULL DEFAULT 0,
	state       jsonb,
	updated_at  timestamptz NOT NULL DEFAULT now(),
	lock_holder jsonb
)`

// ensureTable creates the state table if missing. A table that exists is
// left alone: CREATE TABLE IF NOT EXISTS needs CREATE on the schema even
// then, and a DBA may have created the table and granted the state's role
// SELECT, INSERT and UPDATE only. Concurrent runs that find it missing
// each try; a transaction-level advisory lock serializes them, since two
// CREATE TABLE IF NOT EXISTS racing may both go on to create it.
func (b *pgBackend) ensureTable(ctx context.Context, conn *pgx.Conn) error {
	var exists bool
	// The quoted name is a parameter: to_regclass parses it as a name.
	err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", b.table.Sanitize()).Scan(&exists)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" && len(b.table) == 2 {
		role := b.currentRole(ctx, conn)
		return fmt.Errorf("look up the state table %s on %s: %w: role %s has no USAGE on schema %q: GRANT USAGE ON SCHEMA %s TO %s; (docs/state.md)",
			b.tableName, b.display, err, role, b.table[0], pgx.Identifier{b.table[0]}.Sanitize(), role)
	}
	if err != nil {
		return fmt.Errorf("look up the state table %s on %s: %w", b.tableName, b.display, err)
	}
	if exists {
		return nil
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	k1, _ := b.lockKeys()
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, -1)", k1); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+b.table.Sanitize()+stateTableDDL)
	if errors.As(err, &pgErr) && pgErr.Code == "42501" {
		_ = tx.Rollback(ctx)
		return b.createRefused(ctx, conn, err)
	}
	if err != nil {
		return fmt.Errorf("create the state table %s on %s: %w (docs/state.md gives the table to create beforehand)", b.tableName, b.display, err)
	}
	return tx.Commit(ctx)
}

// createRefused explains a CREATE of the state table refused for want of
// privilege: the table, its schema, and the two ways out (grant CREATE on
// the schema, or create the table beforehand and grant the DML).
func (b *pgBackend) createRefused(ctx context.Context, conn *pgx.Conn, cause error) error {
	schema := ""
	if len(b.table) == 2 {
		schema = b.table[0]
	} else {
		// An unqualified table is created in the first schema of the
		// search_path.
		_ = conn.QueryRow(ctx, "SELECT coalesce(current_schema(), '')").Scan(&schema)
	}
	if schema == "" {
		schema = "public"
	}
	table := pgx.Identifier{schema, b.table[len(b.table)-1]}.Sanitize()
	grantee := b.currentRole(ctx, conn)
	return fmt.Errorf("create the state table %s on %s: %w: the table does not exist and role %s may not create it in schema %q. "+
		"Either grant it that: GRANT CREATE ON SCHEMA %s TO %s; or create the table beforehand as its owner and grant the state's role what it needs: "+
		"CREATE TABLE %s%s; GRANT SELECT, INSERT, UPDATE ON %s TO %s; (docs/state.md)",
		b.tableName, b.display, cause, grantee, schema,
		pgx.Identifier{schema}.Sanitize(), grantee,
		table, " "+strings.Join(strings.Fields(stateTableDDL), " "), table, grantee)
}

// currentRole is the connection's role, quoted, for the GRANTs messages
// give ("the state's role" if it cannot tell).
func (b *pgBackend) currentRole(ctx context.Context, conn *pgx.Conn) string {
	var role string
	if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&role); err != nil || role == "" {
		return "<the state's role>"
	}
	return pgx.Identifier{role}.Sanitize()
}

// lockKeys are the advisory lock's two keys: one for the table, one for
// the spec's name, both non-negative (pg_locks shows them as oids).
func (b *pgBackend) lockKeys() (int32, int32) {
	h := func(s string) int32 {
		f := fnv.New32a()
		f.Write([]byte(s))
		return int32(f.Sum32() & 0x7fffffff)
	}
	return h(b.tableName), h(b.name)
}

func (b *pgBackend) read() (*State, error) {
	ctx, cancel := context.WithTimeout(context.Background(), stateTimeout)
	defer cancel()
	conn, err := b.connect(ctx, "read")
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	st, _, err := b.readOn(ctx, conn, false)
	return st, err
}

// readOn reads the row on conn (inside a transaction, FOR UPDATE when
// forUpdate); none, or one without a state yet, is os.ErrNotExist.
func (b *pgBackend) readOn(ctx context.Context, conn interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, forUpdate bool) (*State, int64, error) {
	q := "SELECT serial, state FROM " + b.table.Sanitize() + " WHERE name = $1"
	if forUpdate {
		q += " FOR UPDATE"
	}
	var serial int64
	var data []byte
	err := conn.QueryRow(ctx, q, b.name).Scan(&serial, &data)
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows), errors.As(err, &pgErr) && pgErr.Code == "42P01":
		return nil, 0, fmt.Errorf("%s: %w", b.where(), os.ErrNotExist)
	case err != nil:
		return nil, 0, fmt.Errorf("read %s: %w", b.where(), err)
	case data == nil:
		return nil, serial, fmt.Errorf("%s: %w", b.where(), os.ErrNotExist)
	}
	st, err := decodeState(b.where(), data)
	if err != nil {
		return nil, 0, err
	}
	if st.Serial != serial {
		return nil, 0, fmt.Errorf("%s has serial %d in its column but %d in its document: pgshift writes both in one statement, so the row was edited by hand; restore it from a copy", b.where(), serial, st.Serial)
	}
	return st, serial, nil
}

// writeOn checkpoints st, whose serial was old before this write, on conn:
// one UPDATE guarded by the old serial, a statement being one transaction
// (a crash leaves the old row or the new one).
func (b *pgBackend) writeOn(ctx context.Context, conn interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
}, st *State, old int64) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tag, err := conn.Exec(ctx, "UPDATE "+b.table.Sanitize()+
		" SET spec_hash = $2, serial = $3, state = $4, updated_at = now() WHERE name = $1 AND serial = $5",
		b.name, st.Spec.Hash, st.Serial, string(data), old)
	if err != nil {
		return fmt.Errorf("write %s: %w", b.where(), err)
	}
	if tag.RowsAffected() == 0 {
		return &LostRaceError{Where: b.where(), Serial: old}
	}
	return nil
}

// LostRaceError: the stored state is no longer the one this run read and
// wrote last, so another writer got in (a force-unlock while this run
// went on, an edit by hand). Nothing was written.
type LostRaceError struct {
	Where  string
	Serial int64
}

func (e *LostRaceError) Error() string {
	return fmt.Sprintf("%s is no longer at serial %d: another process wrote it while this run held the lock (after a force-unlock, or by hand), so this run stopped without writing; "+
		"see where it stands with pgshift status, then run the command again", e.Where, e.Serial)
}

func (b *pgBackend) modify(fn func(*State)) error {
	ctx, cancel := context.WithTimeout(context.Background(), stateTimeout)
	defer cancel()
	conn, err := b.connect(ctx, "write")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("write %s: %w", b.where(), err)
	}
	defer tx.Rollback(ctx)
	st, old, err := b.readOn(ctx, tx, true)
	if err != nil {
		return err
	}
	fn(st)
	st.Serial++
	if err := b.writeOn(ctx, tx, st, old); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("write %s: %w", b.where(), err)
	}
	return nil
}

// decodeState parses a state document and refuses what pgshift never
// writes, naming where it came from.
func decodeState(where string, data []byte) (*State, error) {
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%s is not valid JSON (%v): it is written atomically, so it was edited or damaged by hand; restore it from a copy", where, err)
	}
	if s.FormatVersion != StateFormatVersion {
		return nil, fmt.Errorf("%s has format_version %d; this pgshift reads version %d: use the pgshift that wrote it", where, s.FormatVersion, StateFormatVersion)
	}
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("%s %v: pgshift never writes that, so it was edited or damaged by hand; restore it from a copy", where, err)
	}
	return &s, nil
}
