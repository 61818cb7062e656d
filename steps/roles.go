package steps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/words"
	"github.com/pgshift/pgshift/plans"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps/stepid"
)

// RolesGranted is the output key listing memberships pgshift granted
// between roles that already existed on green (JSON [[role, member], ...]);
// roles it created carry a comment instead, which survives a crash.
const RolesGranted = "granted"

// managedRoles are the roles managed services create on each instance and
// manage themselves, never copied; by exact name, since their users' roles
// may start alike (rds_reader_app is an ordinary role). The value is the
// service, for the plan.
var managedRoles = map[string]string{
	// Amazon RDS and Aurora.
	"rdsadmin": "Amazon RDS", "rdsrepladmin": "Amazon RDS", "rdstopmgr": "Amazon RDS",
	"rds_superuser": "Amazon RDS", "rds_replication": "Amazon RDS", "rds_password": "Amazon RDS",
	"rds_iam": "Amazon RDS", "rds_ad": "Amazon RDS", "rds_extension": "Amazon RDS",
	// Google Cloud SQL.
	"cloudsqladmin": "Google Cloud SQL", "cloudsqlsuperuser": "Google Cloud SQL", "cloudsqlagent": "Google Cloud SQL",
	"cloudsqliamserviceaccount": "Google Cloud SQL", "cloudsqliamuser": "Google Cloud SQL",
	"cloudsqlimportexport": "Google Cloud SQL", "cloudsqllogical": "Google Cloud SQL",
	"cloudsqlreplica": "Google Cloud SQL", "cloudsqlinactiveuser": "Google Cloud SQL",
	// Azure Database for PostgreSQL.
	"azure_pg_admin": "Azure Database for PostgreSQL", "azuresu": "Azure Database for PostgreSQL",
	"azure_superuser": "Azure Database for PostgreSQL",
	// AlloyDB.
	"alloydbadmin": "AlloyDB", "alloydbsuperuser": "AlloyDB", "alloydbreplica": "AlloyDB", "alloydbiamuser": "AlloyDB",
}

// skipReason says why a role of blue is never copied, "" when it is copied:
// predefined roles (pg_ is reserved: every server has its own) and the
// managed services' roles.
func skipReason(name string) string {
	if strings.HasPrefix(name, "pg_") {
		return "a predefined role of PostgreSQL: green has its own"
	}
	if svc, ok := managedRoles[name]; ok {
		return "a role " + svc + " creates and manages on each instance"
	}
	return ""
}

func skippedRole(name string) bool { return skipReason(name) != "" }

// roles copies blue's roles and memberships to green where missing, so that
// the schema restore finds every owner and grantee. A role of the same name
// on green (its bootstrap superuser, say) is left as it is. Passwords travel only
// when the source role may read them (pg_authid), and never appear in the
// plan, the log or the state.
type roles struct {
	enabled bool // schema.roles
}

func init() {
	register(func(spec *spec.Spec) []engine.Step { return []engine.Step{roles{enabled: spec.Schema.Roles}} })
}

func (roles) ID() string      { return stepid.Roles }
func (roles) Needs() []string { return []string{stepid.Audit} }

// Converges: roles and memberships created on blue since are created on
// green by the next apply.
func (roles) Converges() {}

// role is one role of blue as pg_roles (and pg_authid, when readable) show it.
type role struct {
	Name        string
	Super       bool
	Inherit     bool
	CreateRole  bool
	CreateDB    bool
	Login       bool
	Replication bool
	BypassRLS   bool
	ConnLimit   int
	ValidUntil  *string
	password    *string // a hash as stored by blue; never printed
}

type membership struct{ Role, Member string }

// rolesPlan is what applying would do on green.
type rolesPlan struct {
	create        []role
	grant         []membership
	existing      int
	passwords     bool // blue's pg_authid is readable: a role without a hash has no password
	greenSuper    bool
	greenCanRoles bool
	skipped       []skipped
	// blockers: skipped roles green lacks that blue's schema names (as
	// owner or grantee), on which the restore would fail.
	blockers []string
}

// skipped is a role of blue that is never copied, and why.
type skipped struct {
	name, why string
	onGreen   bool
}

// marker is the comment pgshift leaves on each role it creates, so that a
// rollback drops those and no other, even after a crash.
func roleMarker(spec *spec.Spec) string { return "created by pgshift for " + spec.Name }

func (roles) plan(ctx context.Context, env *engine.Env) (*rolesPlan, error) {
	blue, green, err := env.Pools(ctx)
	if err != nil {
		return nil, err
	}
	p := &rolesPlan{}
	blueRoles, err := readRoles(ctx, blue)
	if err != nil {
		return nil, fmt.Errorf("blue: %w", err)
	}
	p.passwords, err = pg.Scalar[bool](ctx, blue, "SELECT has_table_privilege('pg_catalog.pg_authid', 'SELECT')")
	if err != nil {
		return nil, fmt.Errorf("blue: %w", err)
	}
	if p.passwords {
		if err := readPasswords(ctx, blue, blueRoles); err != nil {
			return nil, fmt.Errorf("blue: %w", err)
		}
	}
	greenRoles, err := readRoles(ctx, green)
	if err != nil {
		return nil, fmt.Errorf("green: %w", err)
	}
	err = green.QueryRow(ctx, `SELECT rolsuper, rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user`).
		Scan(&p.greenSuper, &p.greenCanRoles)
	if err != nil {
		return nil, fmt.Errorf("green: read privileges of the connecting role: %w", err)
	}
	onGreen := map[string]bool{}
	for _, r := range greenRoles {
		onGreen[r.Name] = true
	}
	will := map[string]bool{}
	for _, r := range blueRoles {
		if why := skipReason(r.Name); why != "" {
			p.skipped = append(p.skipped, skipped{name: r.Name, why: why, onGreen: onGreen[r.Name]})
			continue
		}
		if onGreen[r.Name] {
			p.existing++
			continue
		}
		p.create = append(p.create, r)
		will[r.Name] = true
	}

	for _, sk := range p.skipped {
		if sk.onGreen {
			continue
		}
		uses, err := roleUses(ctx, blue, sk.name)
		if err != nil {
			return nil, fmt.Errorf("blue: %w", err)
		}
		if len(uses) > 0 {
			p.blockers = append(p.blockers, fmt.Sprintf("role %s (%s) is not copied, and green has no such role, but blue's schema names it: %s; the schema restore would fail on it: on blue give these to another role (ALTER ... OWNER TO <role>; REVOKE ... FROM %s), or create the role on green yourself (CREATE ROLE %s NOLOGIN;), then plan again",
				sk.name, sk.why, words.List(uses), pg.QuoteIdent(sk.name), pg.QuoteIdent(sk.name)))
		}
	}

	blueMembers, err := readMemberships(ctx, blue)
	if err != nil {
		return nil, fmt.Errorf("blue: %w", err)
	}
	greenMembers, err := readMemberships(ctx, green)
	if err != nil {
		return nil, fmt.Errorf("green: %w", err)
	}
	held := map[membership]bool{}
	for _, m := range greenMembers {
		held[m] = true
	}
	for _, m := range blueMembers {
		if held[m] || strings.HasPrefix(m.Member, "pg_") {
			continue
		}
		// Predefined roles (pg_read_all_data) may be granted when green has them.
		roleOK := will[m.Role] || (onGreen[m.Role] && (!skippedRole(m.Role) || strings.HasPrefix(m.Role, "pg_")))
		memberOK := will[m.Member] || (onGreen[m.Member] && !skippedRole(m.Member))
		if roleOK && memberOK {
			p.grant = append(p.grant, m)
		}
	}
	return p, nil
}

// validUntilSQL writes VALID UNTIL in ISO 8601 UTC: plain ::text follows
// blue's DateStyle, which green may read with day and month swapped.
const validUntilSQL = `CASE WHEN isfinite(rolvaliduntil)
            THEN to_char(rolvaliduntil AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
            ELSE rolvaliduntil::text END`

func readRoles(ctx context.Context, db *pgxpool.Pool) ([]role, error) {
	rows, err := db.Query(ctx, `
SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication,
       rolbypassrls, rolconnlimit, `+validUntilSQL+`
  FROM pg_roles ORDER BY rolname`)
	if err != nil {
		return nil, fmt.Errorf("list roles: %w", err)
	}
	defer rows.Close()
	var out []role
	for rows.Next() {
		var r role
		if err := rows.Scan(&r.Name, &r.Super, &r.Inherit, &r.CreateRole, &r.CreateDB, &r.Login, &r.Replication,
			&r.BypassRLS, &r.ConnLimit, &r.ValidUntil); err != nil {
			return nil, fmt.Errorf("list roles: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// roleUsesSQL lists what of the current database names a role, as the
// schema dump would: objects it owns, privileges granted to it (or by it),
// policies naming it, default privileges, each with its qualified name
// (pg_identify_object). Extension members are left out:
// the dump recreates them with CREATE EXTENSION.
const roleUsesSQL = `
SELECT CASE s.deptype WHEN 'o' THEN 'owns ' WHEN 'a' THEN 'has privileges on ' WHEN 'r' THEN 'is named by '
                      ELSE 'depends on ' END
       || o.type || ' ' || o.identity
  FROM pg_catalog.pg_shdepend s,
       LATERAL pg_catalog.pg_identify_object(s.classid, s.objid, s.objsubid) o
 WHERE s.dbid = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())
   AND s.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass
   AND s.refobjid = (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = $1)
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e
                    WHERE e.classid = s.classid AND e.objid = s.objid AND e.deptype = 'e')
 ORDER BY 1`

func roleUses(ctx context.Context, db *pgxpool.Pool, name string) ([]string, error) {
	rows, err := db.Query(ctx, roleUsesSQL, name)
	if err != nil {
		return nil, fmt.Errorf("list what role %s owns or is granted: %w", name, err)
	}
	uses, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list what role %s owns or is granted: %w", name, err)
	}
	return uses, nil
}

func readPasswords(ctx context.Context, db *pgxpool.Pool, rs []role) error {
	rows, err := db.Query(ctx, `SELECT rolname, rolpassword FROM pg_catalog.pg_authid WHERE rolpassword IS NOT NULL`)
	if err != nil {
		return fmt.Errorf("read role passwords: %w", err)
	}
	defer rows.Close()
	hashes := map[string]string{}
	for rows.Next() {
		var name, hash string
		if err := rows.Scan(&name, &hash); err != nil {
			return fmt.Errorf("read role passwords: %w", err)
		}
		hashes[name] = hash
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read role passwords: %w", err)
	}
	for i := range rs {
		if h, ok := hashes[rs[i].Name]; ok {
			rs[i].password = &h
		}
	}
	return nil
}

func readMemberships(ctx context.Context, db *pgxpool.Pool) ([]membership, error) {
	rows, err := db.Query(ctx, `
SELECT DISTINCT r.rolname, m.rolname
  FROM pg_auth_members am
  JOIN pg_roles r ON r.oid = am.roleid
  JOIN pg_roles m ON m.oid = am.member
 ORDER BY 1, 2`)
	if err != nil {
		return nil, fmt.Errorf("list role memberships: %w", err)
	}
	defer rows.Close()
	var out []membership
	for rows.Next() {
		var m membership
		if err := rows.Scan(&m.Role, &m.Member); err != nil {
			return nil, fmt.Errorf("list role memberships: %w", err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// createSQL is the CREATE ROLE statement. Attributes only a superuser may
// give are left out when green's role is not one. With withPassword false
// the hash is left out: that form is the one shown and logged.
func (r role) createSQL(greenSuper, withPassword bool) string {
	attr := func(on bool, yes, no string) string {
		if on {
			return yes
		}
		return no
	}
	parts := []string{"CREATE ROLE", pg.QuoteIdent(r.Name), "WITH",
		attr(r.Login, "LOGIN", "NOLOGIN"),
		attr(r.Inherit, "INHERIT", "NOINHERIT"),
		attr(r.CreateRole, "CREATEROLE", "NOCREATEROLE"),
		attr(r.CreateDB, "CREATEDB", "NOCREATEDB"),
	}
	if greenSuper {
		parts = append(parts,
			attr(r.Super, "SUPERUSER", "NOSUPERUSER"),
			attr(r.Replication, "REPLICATION", "NOREPLICATION"),
			attr(r.BypassRLS, "BYPASSRLS", "NOBYPASSRLS"))
	}
	if r.ConnLimit >= 0 {
		parts = append(parts, "CONNECTION LIMIT", strconv.Itoa(r.ConnLimit))
	}
	if r.ValidUntil != nil {
		parts = append(parts, "VALID UNTIL", pg.QuoteLiteral(*r.ValidUntil))
	}
	if r.password != nil && withPassword {
		parts = append(parts, "PASSWORD", pg.QuoteLiteral(*r.password))
	}
	return strings.Join(parts, " ")
}

// shown is the statement as the plan shows it, with a note in place of the
// password.
func (r role) shown(p *rolesPlan) string {
	s := r.createSQL(p.greenSuper, false)
	switch {
	case r.password != nil:
		s += " -- password hash copied from blue"
	case p.passwords:
		s += " -- no password on blue"
	case r.Login:
		s += " -- no password: blue's pg_authid is not readable"
	}
	if !p.greenSuper && (r.Super || r.Replication || r.BypassRLS) {
		s += " -- without SUPERUSER/REPLICATION/BYPASSRLS: green's role is not a superuser"
	}
	return s
}

// skippedLines name, in the plan, each role of blue that is not copied and
// why: the predefined roles on one line, each managed service's role on
// its own.
func (p *rolesPlan) skippedLines() []string {
	var predefined, lines []string
	for _, sk := range p.skipped {
		if strings.HasPrefix(sk.name, "pg_") {
			predefined = append(predefined, sk.name)
			continue
		}
		where := "green has no such role"
		if sk.onGreen {
			where = "green has its own"
		}
		lines = append(lines, fmt.Sprintf("-- not copied: role %s, %s (%s)", sk.name, sk.why, where))
	}
	if len(predefined) > 0 {
		lines = append([]string{fmt.Sprintf("-- not copied: %s of PostgreSQL (%s): green has its own",
			words.Plural(len(predefined), "predefined role", "predefined roles"), strings.Join(predefined, ", "))}, lines...)
	}
	return lines
}

func grantSQL(m membership) string {
	return "GRANT " + pg.QuoteIdent(m.Role) + " TO " + pg.QuoteIdent(m.Member)
}

func (s roles) Observe(ctx context.Context, env *engine.Env) (plans.Change, error) {
	if !env.Spec.Schema.Roles {
		return plans.Change{Action: plans.ActionNone, Summary: "schema.roles is false: roles are not copied"}, nil
	}
	p, err := s.plan(ctx, env)
	if err != nil {
		return plans.Change{}, err
	}
	c := plans.Change{Action: plans.ActionCreate,
		Summary: fmt.Sprintf("create %s, grant %s", words.Plural(len(p.create), "role", "roles"), words.Plural(len(p.grant), "membership", "memberships"))}
	if len(p.create) == 0 && len(p.grant) == 0 {
		c = plans.Change{Action: plans.ActionNone,
			Summary: fmt.Sprintf("green has blue's %s and their memberships", words.Plural(p.existing, "role", "roles"))}
	}
	var noPassword []string
	for _, r := range p.create {
		c.Details = append(c.Details, r.shown(p))
		if r.Login && r.password == nil {
			noPassword = append(noPassword, r.Name)
		}
	}
	for _, m := range p.grant {
		c.Details = append(c.Details, grantSQL(m))
	}
	c.Details = append(c.Details, p.skippedLines()...)
	switch {
	case len(noPassword) == 0:
	case p.passwords:
		// Blue's hashes were readable: these roles have none there either,
		// and log in as blue's pg_hba.conf lets them (trust, peer, cert...).
		c.Details = append(c.Details, fmt.Sprintf("note: login %s %s %s no password on blue and %s created without one, as on blue",
			words.Pick(len(noPassword), "role", "roles"), words.List(noPassword), words.Pick(len(noPassword), "has", "have"),
			words.Pick(len(noPassword), "is", "are")))
	default:
		c.Warnings = append(c.Warnings, fmt.Sprintf("login %s %s created without a password (blue's pg_authid is not readable by the source role): set %s on green (ALTER ROLE ... PASSWORD) before the cutover",
			words.Pick(len(noPassword), "role", "roles"), words.List(noPassword), words.Pick(len(noPassword), "it", "them")))
	}
	if len(p.blockers) > 0 {
		c.Action = plans.ActionBlocker
		c.Blockers = append(c.Blockers, p.blockers...)
	}
	if !p.greenCanRoles && len(p.create) > 0 {
		c.Action = plans.ActionBlocker
		c.Blockers = append(c.Blockers, "green's role has neither SUPERUSER nor CREATEROLE: connect to green as a superuser, or create these roles on green yourself, or set schema.roles: false")
	}
	return c, nil
}

func (s roles) Check(ctx context.Context, env *engine.Env) ([]plans.Precondition, error) {
	if !env.Spec.Schema.Roles {
		return nil, nil
	}
	p, err := s.plan(ctx, env)
	if err != nil {
		return nil, err
	}
	// A failure is the plan's blocker already, and Apply refuses on it.
	return passingOnly([]plans.Precondition{{Name: "green may create roles", OK: p.greenCanRoles || len(p.create) == 0,
		Detail: fmt.Sprintf("%d to create", len(p.create))}}), nil
}

// Apply creates the missing roles and memberships in one transaction, each
// created role marked with a comment.
func (s roles) Apply(ctx context.Context, env *engine.Env) error {
	if !env.Spec.Schema.Roles {
		return nil
	}
	p, err := s.plan(ctx, env)
	if err != nil {
		return err
	}
	if len(p.blockers) > 0 {
		return fmt.Errorf("%s: %s", stepid.Roles, strings.Join(p.blockers, "; "))
	}
	if len(p.create) == 0 && len(p.grant) == 0 {
		return nil
	}
	if !p.greenCanRoles && len(p.create) > 0 {
		return fmt.Errorf("%s: green's role has neither SUPERUSER nor CREATEROLE: connect to green as a superuser, or create the roles yourself, or set schema.roles: false", stepid.Roles)
	}
	green, err := env.Target.Pool(ctx)
	if err != nil {
		return err
	}
	// Grants between roles that already exist leave no mark on green, so
	// they are recorded before the transaction: a run killed after its
	// commit would otherwise find them held, record nothing, and rollback
	// would never revoke them. A grant to or from a created role goes with
	// the role.
	willCreate := map[string]bool{}
	for _, r := range p.create {
		willCreate[r.Name] = true
	}
	prev, _ := env.Output(stepid.Roles, RolesGranted)
	var granted [][2]string
	if prev != "" {
		_ = json.Unmarshal([]byte(prev), &granted)
	}
	added := false
	for _, m := range p.grant {
		if !willCreate[m.Member] && !willCreate[m.Role] {
			granted = append(granted, [2]string{m.Role, m.Member})
			added = true
		}
	}
	if added {
		b, _ := json.Marshal(granted)
		env.Record(RolesGranted, string(b))
	}
	var hashed []string
	for _, r := range p.create {
		if r.password != nil {
			hashed = append(hashed, r.Name)
		}
	}
	err = pgx.BeginFunc(ctx, green, func(tx pgx.Tx) error {
		if len(hashed) > 0 {
			notSet, err := keepStatementsOutOfLog(ctx, tx, quietLogSettings)
			if err != nil {
				return err
			}
			if len(notSet) > 0 {
				env.Log.Warn(fmt.Sprintf("green's role may not set %s (superuser settings), so green's server log may record the password %s of %s %s copied from blue: with the statement if it fails (log_min_error_statement), and anyway when log_statement is all or ddl or log_min_duration_statement catches it. Connect to green as a superuser to keep the hashes out of its log, or look at green's log after this step",
					words.List(notSet), words.Pick(len(hashed), "hash", "hashes"), words.Pick(len(hashed), "role", "roles"), words.List(hashed)),
					"settings", strings.Join(notSet, ","))
			}
		}
		for _, r := range p.create {
			if _, err := tx.Exec(ctx, r.createSQL(p.greenSuper, true)); err != nil {
				// The error never quotes the statement, so no hash leaks.
				return fmt.Errorf("create role %s on green: %w", r.Name, err)
			}
			if _, err := tx.Exec(ctx, "COMMENT ON ROLE "+pg.QuoteIdent(r.Name)+" IS "+pg.QuoteLiteral(roleMarker(env.Spec))); err != nil {
				return fmt.Errorf("mark role %s on green: %w", r.Name, err)
			}
			env.Log.Info("role created", "role", r.Name, "password_copied", r.password != nil)
		}
		for _, m := range p.grant {
			if _, err := tx.Exec(ctx, grantSQL(m)); err != nil {
				return fmt.Errorf("grant %s to %s on green: %w", m.Role, m.Member, err)
			}
		}
		return nil
	})
	if err != nil {
		if added {
			// Nothing was granted: a rollback must not revoke what the
			// owner may grant later.
			env.Record(RolesGranted, prev)
		}
		return fmt.Errorf("%s: %w", stepid.Roles, err)
	}
	return nil
}

// quietSetting is one setting set for the transaction that creates roles.
type quietSetting struct{ name, value string }

// quietLogSettings keep the statements of a transaction out of green's
// server log, for CREATE ROLE ... PASSWORD '<hash>': log_statement logs
// statements as they arrive, log_min_error_statement the one that fails,
// and the duration settings those that run long enough; pg_stat_statements
// (when loaded: a placeholder otherwise, gone with the transaction) keeps
// utility statements' text where pg_read_all_stats members read it.
var quietLogSettings = []quietSetting{
	{"log_statement", "none"},
	{"log_min_error_statement", "panic"},
	{"log_min_duration_statement", "-1"},
	{"log_min_duration_sample", "-1"},
	{"pg_stat_statements.track_utility", "off"},
}

// keepStatementsOutOfLog sets settings (quietLogSettings) for the rest of tx (SET
// LOCAL), each in a savepoint: they are superuser settings, and a role
// that may not set one is refused without the transaction being lost.
// notSet names those refused.
func keepStatementsOutOfLog(ctx context.Context, tx pgx.Tx, settings []quietSetting) (notSet []string, err error) {
	for _, st := range settings {
		sp, err := tx.Begin(ctx)
		if err != nil {
			return nil, fmt.Errorf("green: %w", err)
		}
		if _, err := sp.Exec(ctx, "SET LOCAL "+st.name+" = "+pg.QuoteLiteral(st.value)); err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "42704" {
				// The setting does not exist on this major
				// (log_min_duration_sample came in 13): nothing to quiet.
				if err := sp.Rollback(ctx); err != nil {
					return nil, fmt.Errorf("green: %w", err)
				}
				continue
			}
			if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
				_ = sp.Rollback(ctx)
				return nil, fmt.Errorf("green: set %s for the statements that carry password hashes: %w", st.name, err)
			}
			if err := sp.Rollback(ctx); err != nil {
				return nil, fmt.Errorf("green: %w", err)
			}
			notSet = append(notSet, st.name)
			continue
		}
		if err := sp.Commit(ctx); err != nil {
			return nil, fmt.Errorf("green: %w", err)
		}
	}
	return notSet, nil
}

// Rollback drops the roles pgshift created (found by their comment) and
// revokes the memberships it granted between other roles.
func (s roles) Rollback(ctx context.Context, env *engine.Env) error {
	green, err := env.Target.Pool(ctx)
	if err != nil {
		return err
	}
	rows, err := green.Query(ctx, `SELECT rolname FROM pg_roles WHERE shobj_description(oid, 'pg_authid') = $1 ORDER BY 1`, roleMarker(env.Spec))
	if err != nil {
		return fmt.Errorf("%s: green: list roles pgshift created: %w", stepid.Roles, err)
	}
	ours, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("%s: green: list roles pgshift created: %w", stepid.Roles, err)
	}
	var granted [][2]string
	if prev, ok := env.Output(stepid.Roles, RolesGranted); ok && prev != "" {
		if err := json.Unmarshal([]byte(prev), &granted); err != nil {
			return fmt.Errorf("%s: recorded memberships unreadable: %w", stepid.Roles, err)
		}
	}
	sort.Strings(ours)
	err = pgx.BeginFunc(ctx, green, func(tx pgx.Tx) error {
		for _, g := range granted {
			both, err := pg.Scalar[bool](ctx, tx, `SELECT count(*) = 2 FROM pg_roles WHERE rolname IN ($1, $2)`, g[0], g[1])
			if err != nil {
				return fmt.Errorf("read roles %s and %s: %w", g[0], g[1], err)
			}
			if !both {
				continue // a role is gone, and its memberships with it
			}
			if _, err := tx.Exec(ctx, "REVOKE "+pg.QuoteIdent(g[0])+" FROM "+pg.QuoteIdent(g[1])); err != nil {
				return fmt.Errorf("revoke %s from %s on green: %w", g[0], g[1], err)
			}
		}
		for _, name := range ours {
			if _, err := tx.Exec(ctx, "DROP ROLE IF EXISTS "+pg.QuoteIdent(name)); err != nil {
				var pgErr *pgconn.PgError
				if errors.As(err, &pgErr) && pgErr.Code == "2BP01" {
					return fmt.Errorf("role %s on green still owns objects or holds privileges (%s): in each database of green run REASSIGN OWNED BY %s TO <role>; DROP OWNED BY %s; then roll back again",
						name, pgErr.Detail, pg.QuoteIdent(name), pg.QuoteIdent(name))
				}
				return fmt.Errorf("drop role %s on green: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", stepid.Roles, err)
	}
	env.Record(RolesGranted, "")
	return nil
}
