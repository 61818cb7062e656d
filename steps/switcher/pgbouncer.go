package switcher

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgshift/pgshift/internal/atomicfile"
	"github.com/pgshift/pgshift/spec"
)

// resumeTimeout bounds the RESUME sent after a freeze failed: the caller's
// context has expired by then, and the database must not stay paused.
const resumeTimeout = 5 * time.Second

// pgBouncer switches by editing the [databases] entry in pgbouncer.ini and
// reloading, through the admin console. It keeps one admin connection open
// between calls so that the pause does not pay for connection setup.
//
// The admin console speaks the simple query protocol only; the driver sends
// every command through pgconn's Exec, which is that protocol, and reads
// results as text.
type pgBouncer struct {
	admin    *pgx.ConnConfig
	pwEnv    string
	config   string
	database string
	blue     Endpoint
	green    Endpoint

	mu   sync.Mutex
	conn *pgconn.PgConn
}

var _ FreezeChecker = (*pgBouncer)(nil)

func newPgBouncer(s *spec.PgBouncerSwitch, blue, green Endpoint) (*pgBouncer, error) {
	if s.AdminDSN == "" || s.Config == "" || s.Database == "" {
		return nil, errors.New("cutover.switch.pgbouncer: admin_dsn, config and database are required")
	}
	cfg, err := pgx.ParseConfig(s.AdminDSN)
	if err != nil {
		return nil, errors.New("cutover.switch.pgbouncer.admin_dsn: cannot parse the connection string")
	}
	// The admin console refuses the extended protocol and knows no types.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	cfg.StatementCacheCapacity = 0
	cfg.DescriptionCacheCapacity = 0
	return &pgBouncer{
		admin: cfg, pwEnv: s.AdminPasswordEnv, config: s.Config, database: s.Database,
		blue: blue, green: green,
	}, nil
}

func (p *pgBouncer) Name() string { return "pgbouncer" }

func (p *pgBouncer) endpoint(s Side) Endpoint {
	if s == Green {
		return p.green
	}
	return p.blue
}

// conn returns the open admin connection, opening one when needed.
func (p *pgBouncer) adminConn(ctx context.Context) (*pgconn.PgConn, error) {
	if p.conn != nil && !p.conn.IsClosed() {
		return p.conn, nil
	}
	cfg := p.admin.Copy()
	if p.pwEnv != "" {
		pw, ok := os.LookupEnv(p.pwEnv)
		if !ok {
			return nil, fmt.Errorf("pgbouncer admin console: environment variable %s (cutover.switch.pgbouncer.admin_password_env) is not set", p.pwEnv)
		}
		cfg.Password = pw
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgbouncer admin console %s: %w (check cutover.switch.pgbouncer.admin_dsn and that the user is in admin_users)", p.adminAddr(), err)
	}
	p.conn = conn.PgConn()
	return p.conn, nil
}

func (p *pgBouncer) adminAddr() string {
	return fmt.Sprintf("%s@%s:%d/%s", p.admin.User, p.admin.Host, p.admin.Port, p.admin.Database)
}

// command runs one admin command and returns its result rows as maps of
// column name to text (NULL as ""). A kept connection that turns out to be
// gone (PgBouncer restarted, a network blip) is replaced once: every
// command the driver sends is safe to repeat.
func (p *pgBouncer) command(ctx context.Context, sql string) ([]map[string]string, error) {
	for attempt := 0; ; attempt++ {
		reused := p.conn != nil && !p.conn.IsClosed()
		conn, err := p.adminConn(ctx)
		if err != nil {
			return nil, err
		}
		results, err := conn.Exec(ctx, sql).ReadAll()
		if err == nil {
			return resultRows(results), nil
		}
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			return nil, err
		}
		// The connection is broken (an expired ctx also closes it): the
		// next command opens another.
		conn.Close(context.Background())
		p.conn = nil
		if !reused || attempt > 0 || ctx.Err() != nil {
			return nil, err
		}
	}
}

func resultRows(results []*pgconn.Result) []map[string]string {
	var rows []map[string]string
	for _, r := range results {
		for _, raw := range r.Rows {
			row := make(map[string]string, len(raw))
			for i, f := range r.FieldDescriptions {
				row[f.Name] = string(raw[i])
			}
			rows = append(rows, row)
		}
	}
	return rows
}

// dbArg quotes the database name for an admin command ("" doubles a quote;
// unquoted names must be lower case there).
func (p *pgBouncer) dbArg() string { return pgx.Identifier{p.database}.Sanitize() }

// running is the database entry as PgBouncer uses it now.
type runningDB struct {
	target   connTarget
	paused   bool
	poolMode string // set on the entry; "" when it inherits the global one
}

func (p *pgBouncer) showDatabase(ctx context.Context) (runningDB, error) {
	rows, err := p.command(ctx, "SHOW DATABASES")
	if err != nil {
		return runningDB{}, fmt.Errorf("pgbouncer: SHOW DATABASES: %w", err)
	}
	for _, r := range rows {
		if r["name"] != p.database {
			continue
		}
		port, _ := strconv.Atoi(r["port"])
		return runningDB{
			target:   connTarget{Host: r["host"], Port: port, DBName: r["database"]},
			paused:   r["paused"] == "1",
			poolMode: r["pool_mode"],
		}, nil
	}
	return runningDB{}, fmt.Errorf("pgbouncer has no database %q (SHOW DATABASES): add it under [databases] in %s and RELOAD", p.database, p.config)
}

func (p *pgBouncer) sideOf(t connTarget) (Side, error) {
	switch {
	case t.is(p.blue):
		return Blue, nil
	case t.is(p.green):
		return Green, nil
	}
	return "", fmt.Errorf("pgbouncer database %q points at %s, which is neither blue (%s) nor green (%s)", p.database, t, p.blue, p.green)
}

func (p *pgBouncer) Current(ctx context.Context) (Side, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	db, err := p.showDatabase(ctx)
	if err != nil {
		return "", err
	}
	return p.sideOf(db.target)
}

// Check verifies, without changing anything: the admin console answers, the
// database exists and points at blue or green, the running PgBouncer reads
// the file the spec names and has no pending edit of the entry, the entry can
// be edited in that file, and the file can be replaced with its owner kept.
func (p *pgBouncer) Check(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	db, err := p.showDatabase(ctx)
	if err != nil {
		return err
	}
	if _, err := p.sideOf(db.target); err != nil {
		return err
	}
	if err := p.checkConffile(ctx); err != nil {
		return err
	}
	mode := db.poolMode
	if mode == "" {
		if mode, err = p.configValue(ctx, "pool_mode"); err != nil {
			return fmt.Errorf("pgbouncer: SHOW CONFIG: %w", err)
		}
	}
	if mode == "session" {
		return fmt.Errorf("pgbouncer pool_mode is session for %s: PAUSE would wait for every client to disconnect; set pool_mode = transaction (globally or on the [databases] entry)", p.database)
	}
	edit, err := p.planEdit(Green)
	if err != nil {
		return err
	}
	if !sameTarget(edit.before, db.target) {
		return fmt.Errorf("%s says [databases] %s: %s but the running PgBouncer uses %s: a RELOAD would apply that pending edit too; reload or revert it first", p.config, p.database, edit.before, db.target)
	}
	return atomicfile.CheckReplaceable(p.config)
}

func sameTarget(a, b connTarget) bool {
	return a.Host == b.Host && a.Port == b.Port && a.DBName == b.DBName
}

// checkConffile compares the file the running PgBouncer loaded with the one
// the spec names, when both are visible here (PgBouncer may run in another
// mount namespace; the check after RELOAD still catches a mismatch then).
func (p *pgBouncer) checkConffile(ctx context.Context) error {
	rows, err := p.command(ctx, "SHOW CONFIG")
	if err != nil {
		return fmt.Errorf("pgbouncer: SHOW CONFIG: %w", err)
	}
	for _, r := range rows {
		if r["key"] != "conffile" || r["value"] == "" {
			continue
		}
		theirs, err := os.Stat(r["value"])
		if err != nil {
			return nil
		}
		ours, err := os.Stat(p.config)
		if err != nil {
			return fmt.Errorf("cutover.switch.pgbouncer.config: %w", err)
		}
		if !os.SameFile(theirs, ours) && !includes(r["value"], ours, 0) {
			return fmt.Errorf("the running PgBouncer reads %s, which neither is nor includes cutover.switch.pgbouncer.config %s: name the file PgBouncer reads", r["value"], p.config)
		}
	}
	return nil
}

// includes says whether the file at path includes (%include, recursively)
// the file target.
func includes(path string, target os.FileInfo, depth int) bool {
	if depth >= 10 {
		return false
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	doc, err := parseINI(data)
	if err != nil {
		return false
	}
	for _, inc := range doc.includes {
		child := inc.path
		if !filepath.IsAbs(child) {
			child = filepath.Join(filepath.Dir(path), child)
		}
		if fi, err := os.Stat(child); err == nil && os.SameFile(fi, target) {
			return true
		}
		if includes(child, target, depth+1) {
			return true
		}
	}
	return false
}

// planEdit reads the file and computes the edit, refusing an entry that is
// not in this file or that an included file overrides.
func (p *pgBouncer) planEdit(to Side) (*databaseEdit, error) {
	data, err := os.ReadFile(p.config)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p.config, err)
	}
	edit, doc, err := planDatabaseEdit(data, p.database, p.endpoint(to))
	var notHere *errEntryNotHere
	if errors.As(err, &notHere) {
		if where := p.findInIncludes(doc, 0); where != "" {
			return nil, fmt.Errorf("%s: the [databases] entry %q is in the included file %s: set cutover.switch.pgbouncer.config to that file", p.config, p.database, where)
		}
		return nil, fmt.Errorf("%s: %v", p.config, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %v", p.config, err)
	}
	// An entry defined again in an included file wins over ours.
	if where := p.findInIncludes(doc, 0); where != "" {
		return nil, fmt.Errorf("%s: the [databases] entry %q is also in the included file %s, whose definition PgBouncer may use instead: keep one definition", p.config, p.database, where)
	}
	return edit, nil
}

// findInIncludes returns the first included file (searched recursively, as
// far as PgBouncer nests them) that defines the entry, or "".
func (p *pgBouncer) findInIncludes(doc *iniDoc, depth int) string {
	if doc == nil || depth >= 10 {
		return ""
	}
	for _, inc := range doc.includes {
		path := inc.path
		if !filepath.IsAbs(path) {
			// PgBouncer opens it relative to its working folder; the
			// config's folder is the usual one.
			path = filepath.Join(filepath.Dir(p.config), path)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		sub, err := parseINI(data)
		if err != nil {
			continue
		}
		for _, e := range sub.entries {
			if e.key == p.database && (strings.EqualFold(e.section, "databases") || e.section == "") {
				return inc.path
			}
		}
		if where := p.findInIncludes(sub, depth+1); where != "" {
			return where
		}
	}
	return ""
}

// Freeze pauses the database: PgBouncer stops handing out server
// connections and waits for running transactions to end; new queries queue.
// When ctx expires first, the database is resumed before returning.
//
// PAUSE closes every server connection of the database, including one still
// logging in; PgBouncer counts that as a failed login and then waits
// server_login_retry (15 s by default) before connecting again, and turns
// away clients that log in meanwhile. So BeforeFreeze waits (up to 1 s,
// outside the pause) for no server login to be in flight, Freeze checks
// again briefly for one begun since, and Unfreeze lifts the retry delay
// while the pool reconnects.
func (p *pgBouncer) Freeze(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.waitNoServerLogin(ctx, loginRecheckBudget)
	_, err := p.command(ctx, "PAUSE "+p.dbArg())
	if err == nil {
		return nil
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), resumeTimeout)
	defer cancel()
	rerr := p.unfreeze(rctx)
	if ctx.Err() != nil {
		err = fmt.Errorf("%w: PAUSE %s still waited for running transactions when the pause timeout expired", ErrFreezeTimeout, p.database)
	} else {
		err = fmt.Errorf("pgbouncer: PAUSE %s: %w", p.database, err)
	}
	if rerr != nil {
		return fmt.Errorf("%v; and RESUME failed too, run RESUME %s on the admin console: %w", err, p.dbArg(), rerr)
	}
	return err
}

// Frozen says whether PgBouncer still holds the database paused. A
// PgBouncer restarted since Freeze has forgotten the PAUSE and passes
// writes to whichever side its file names.
func (p *pgBouncer) Frozen(ctx context.Context) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	db, err := p.showDatabase(ctx)
	if err != nil {
		return false, err
	}
	return db.paused, nil
}

// Unfreeze resumes the database with server_login_retry at 0 until the
// pool has a server connection again (see Freeze), then restores it.
func (p *pgBouncer) Unfreeze(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.unfreeze(ctx)
}

func (p *pgBouncer) unfreeze(ctx context.Context) error {
	retry, err := p.configValue(ctx, "server_login_retry")
	if err != nil || retry == "" || retry == "0" {
		return p.resume(ctx)
	}
	if _, err := p.command(ctx, "SET server_login_retry = '0'"); err != nil {
		return p.resume(ctx)
	}
	rerr := p.resume(ctx)
	if rerr == nil {
		p.waitReconnected(ctx, reconnectBudget)
	}
	restore := fmt.Sprintf("SET server_login_retry = %s", quoteString(retry))
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), resumeTimeout)
	defer cancel()
	if _, err := p.command(rctx, restore); err != nil {
		return errors.Join(rerr, fmt.Errorf("pgbouncer: server_login_retry was lowered to 0 during the switch and could not be restored (%v): run %s on the admin console, or RELOAD", err, restore))
	}
	return rerr
}

// BeforeFreeze waits for server logins in flight to finish (see Freeze).
func (p *pgBouncer) BeforeFreeze(ctx context.Context) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.waitNoServerLogin(ctx, loginQuietBudget)
}

// loginQuietBudget, loginRecheckBudget and reconnectBudget bound the waits
// before PAUSE and after RESUME, while traffic flows; past them the driver
// goes on (they only make a stall less likely). The first runs before the
// pause is timed, so it can wait out a slow login on a loaded server; the
// recheck inside the pause stays short.
const (
	loginQuietBudget   = time.Second
	loginRecheckBudget = 100 * time.Millisecond
	reconnectBudget    = 2 * time.Second
)

// pools reads SHOW POOLS rows of the database.
func (p *pgBouncer) pools(ctx context.Context) ([]map[string]string, error) {
	rows, err := p.command(ctx, "SHOW POOLS")
	if err != nil {
		return nil, err
	}
	var out []map[string]string
	for _, r := range rows {
		if r["database"] == p.database {
			out = append(out, r)
		}
	}
	return out, nil
}

func sumColumns(rows []map[string]string, cols ...string) int {
	n := 0
	for _, r := range rows {
		for _, c := range cols {
			v, _ := strconv.Atoi(r[c])
			n += v
		}
	}
	return n
}

// waitNoServerLogin waits until no server connection of the database is
// logging in, at most budget (and never past ctx).
func (p *pgBouncer) waitNoServerLogin(ctx context.Context, budget time.Duration) {
	deadline := time.Now().Add(budget)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		rows, err := p.pools(ctx)
		if err != nil || sumColumns(rows, "sv_login") == 0 {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitReconnected waits until no client of the database waits for a server
// or a server connection is up, at most budget.
func (p *pgBouncer) waitReconnected(ctx context.Context, budget time.Duration) {
	deadline := time.Now().Add(budget)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		rows, err := p.pools(ctx)
		if err != nil {
			return
		}
		if sumColumns(rows, "cl_waiting") == 0 || sumColumns(rows, "sv_active", "sv_idle", "sv_used", "sv_tested") > 0 {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// configValue reads one setting from SHOW CONFIG.
func (p *pgBouncer) configValue(ctx context.Context, key string) (string, error) {
	rows, err := p.command(ctx, "SHOW CONFIG")
	if err != nil {
		return "", err
	}
	for _, r := range rows {
		if r["key"] == key {
			return r["value"], nil
		}
	}
	return "", nil
}

// quoteString quotes a value for the admin console's SET.
func quoteString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// resume sends RESUME; a database that is not paused is fine.
func (p *pgBouncer) resume(ctx context.Context) error {
	_, err := p.command(ctx, "RESUME "+p.dbArg())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && strings.Contains(pgErr.Message, "not paused") {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pgbouncer: RESUME %s: %w", p.database, err)
	}
	return nil
}

// Switch rewrites the entry (when it does not already point at the side),
// reloads PgBouncer (when it does not already use the side) and confirms
// with SHOW DATABASES. Server connections to the old side are closed by
// PgBouncer as they are released; while paused none is in use.
func (p *pgBouncer) Switch(ctx context.Context, to Side) error {
	if !to.valid() {
		return fmt.Errorf("switch: unknown side %q", to)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	edit, err := p.planEdit(to)
	if err != nil {
		return err
	}
	if edit.changed {
		if err := atomicfile.Replace(p.config, edit.content); err != nil {
			return fmt.Errorf("pgbouncer: rewrite [databases] %s: %w", p.database, err)
		}
	}
	want := p.endpoint(to)
	db, err := p.showDatabase(ctx)
	if err != nil {
		return err
	}
	if sameTarget(db.target, edit.after) {
		return nil
	}
	if _, err := p.command(ctx, "RELOAD"); err != nil {
		return fmt.Errorf("pgbouncer: RELOAD after repointing %s to %s: %w (see PgBouncer's log)", p.database, to, err)
	}
	db, err = p.showDatabase(ctx)
	if err != nil {
		return err
	}
	if !sameTarget(db.target, edit.after) {
		return fmt.Errorf("pgbouncer: after RELOAD, database %q still points at %s, not %s (%s): PgBouncer did not take the edit of %s; see its log", p.database, db.target, to, want, p.config)
	}
	return nil
}

func (p *pgBouncer) Describe(to Side) []string {
	edit, err := p.planEdit(to)
	if err != nil {
		return []string{fmt.Sprintf("pgbouncer: cannot plan the edit: %v", err)}
	}
	if !edit.changed {
		return []string{fmt.Sprintf("[databases] %s already points at %s (%s); RELOAD if PgBouncer still uses another target", p.database, to, edit.after)}
	}
	return []string{
		fmt.Sprintf("[databases] %s: %s -> %s", p.database, edit.before, edit.after),
		fmt.Sprintf("PAUSE %s, rewrite %s, RELOAD, confirm with SHOW DATABASES, RESUME %s", p.database, p.config, p.database),
	}
}

func (p *pgBouncer) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		p.conn.Close(ctx)
		p.conn = nil
	}
	return nil
}
