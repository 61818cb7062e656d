package steps

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/words"
	"github.com/pgshift/pgshift/plans"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps/stepid"
)

// managedReplicationRoles grant logical replication on managed services
// where REPLICATION itself cannot be given (Amazon RDS and Aurora).
var managedReplicationRoles = []string{"rds_replication", "rds_superuser"}

// preflightSource checks that blue can publish: version, privileges,
// wal_level, free slots and WAL senders, and a replica identity on every
// selected table. It changes nothing.
type preflightSource struct{}

func init() {
	register(func(*spec.Spec) []engine.Step { return []engine.Step{inspecting{preflightSource{}}} })
}

func (preflightSource) ID() string      { return stepid.PreflightSource }
func (preflightSource) Needs() []string { return nil }

func (preflightSource) inspect(ctx context.Context, env *engine.Env) (*findings, error) {
	f := &findings{}
	pool, ok := connectCheck(ctx, f, env.Source, "source.dsn")
	if !ok {
		return f, nil
	}
	v, err := pg.ServerVersionOf(ctx, pool)
	if err != nil {
		return nil, fmt.Errorf("blue: %w", err)
	}
	f.fact("PostgreSQL %s", v)
	f.check("blue version", v.Major >= 10, "PostgreSQL "+v.String(),
		fmt.Sprintf("blue runs PostgreSQL %s: logical replication needs 10 or newer; upgrade blue with pg_upgrade first", v))
	if v.Major < 10 {
		return f, nil
	}
	steps := []func(context.Context, *findings, *pgxpool.Pool, *engine.Env) error{
		sourcePrivileges, sourceWalLevel, sourceSlots, sourceOtherSlots, sourceOpenTx, sourceTables,
	}
	for _, step := range steps {
		if err := step(ctx, f, pool, env); err != nil {
			return nil, fmt.Errorf("blue: %w", err)
		}
	}
	return f, nil
}

// sourcePrivileges: replication (superuser, REPLICATION or a managed role)
// and CREATE on the database for the publication.
func sourcePrivileges(ctx context.Context, f *findings, pool *pgxpool.Pool, env *engine.Env) error {
	var user, db string
	var super, repl, create bool
	var managed []string
	err := pool.QueryRow(ctx, `
SELECT r.rolname, current_database(), r.rolsuper, r.rolreplication,
       has_database_privilege(current_database(), 'CREATE'),
       coalesce((SELECT array_agg(m.rolname ORDER BY m.rolname) FROM pg_roles m
                  WHERE m.rolname = ANY($1) AND pg_has_role(r.oid, m.oid, 'MEMBER')), '{}')
  FROM pg_roles r WHERE r.rolname = current_user`, managedReplicationRoles).
		Scan(&user, &db, &super, &repl, &create, &managed)
	if err != nil {
		return fmt.Errorf("read privileges of the connecting role: %w", err)
	}
	var how string
	switch {
	case super:
		how = "superuser"
	case repl:
		how = "REPLICATION"
	case len(managed) > 0:
		how = "member of " + managed[0]
	}
	f.check("blue replication privilege", how != "", fmt.Sprintf("role %s: %s", user, orNone(how)),
		fmt.Sprintf("role %s on blue may not replicate: run ALTER ROLE %s REPLICATION; as a superuser (on Amazon RDS: GRANT rds_replication TO %s;)",
			user, pg.ShowIdent(user), pg.ShowIdent(user)))
	f.check("blue CREATE on database", super || create, fmt.Sprintf("role %s", user),
		fmt.Sprintf("role %s may not create the publication on blue: GRANT CREATE ON DATABASE %s TO %s;", user, pg.ShowIdent(db), pg.ShowIdent(user)))
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// sourceWalLevel: logical decoding needs wal_level=logical, which only a
// restart applies.
func sourceWalLevel(ctx context.Context, f *findings, pool *pgxpool.Pool, env *engine.Env) error {
	var level string
	var pending bool
	err := pool.QueryRow(ctx, `SELECT setting, pending_restart FROM pg_settings WHERE name = 'wal_level'`).Scan(&level, &pending)
	if err != nil {
		return fmt.Errorf("read wal_level: %w", err)
	}
	fix := "run ALTER SYSTEM SET wal_level = logical; on blue, then restart blue"
	if pending {
		fix = "wal_level is changed in blue's configuration but not yet in effect: restart blue"
	}
	ok := level == "logical"
	f.check("blue wal_level", ok, "wal_level="+level, fmt.Sprintf("blue has wal_level=%s, logical replication needs logical: %s", level, fix))
	if ok {
		f.fact("wal_level=logical")
	}
	return nil
}

// sourceSlots: one slot and one WAL sender for the subscription (unless
// pgshift's slot already exists), and with the native initial copy one more
// of each per table-sync worker green runs at once: too few is a blocker,
// since the table sync then fails on blue ("all replication slots are in
// use") rather than waiting.
func sourceSlots(ctx context.Context, f *findings, pool *pgxpool.Pool, env *engine.Env) error {
	var maxSlots, usedSlots, maxSenders, usedSenders int
	var ours, oursActive bool
	err := pool.QueryRow(ctx, `
SELECT current_setting('max_replication_slots')::int,
       (SELECT count(*) FROM pg_replication_slots)::int,
       current_setting('max_wal_senders')::int,
       (SELECT count(*) FROM pg_stat_replication)::int,
       EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1),
       EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active)`,
		env.Spec.SlotName()).Scan(&maxSlots, &usedSlots, &maxSenders, &usedSenders, &ours, &oursActive)
	if err != nil {
		return fmt.Errorf("read replication slots and WAL senders: %w", err)
	}
	sync, err := readSyncCapacity(ctx, env, pool)
	if err != nil {
		return err
	}
	mainSlot, mainSender := 1, 1
	if ours {
		mainSlot = 0
	}
	if oursActive {
		mainSender = 0
	}
	needSlots := mainSlot + max(sync.Need-sync.HeldSlots, 0)
	needSenders := mainSender + max(sync.Need-sync.HeldSenders, 0)
	freeSlots, freeSenders := maxSlots-usedSlots, maxSenders-usedSenders
	f.fact("%d of %d slots free", freeSlots, maxSlots)
	f.check("blue free replication slots", freeSlots >= needSlots,
		fmt.Sprintf("%d of max_replication_slots=%d free, %d needed", freeSlots, maxSlots, needSlots),
		capacityBlocker("replication slots", "max_replication_slots", freeSlots, maxSlots, usedSlots, mainSlot, needSlots, sync,
			" or drop slots nothing uses (SELECT pg_drop_replication_slot('name'))"))
	f.check("blue free WAL senders", freeSenders >= needSenders,
		fmt.Sprintf("%d of max_wal_senders=%d free, %d needed", freeSenders, maxSenders, needSenders),
		capacityBlocker("WAL senders", "max_wal_senders", freeSenders, maxSenders, usedSenders, mainSender, needSenders, sync, ""))
	if sync.Assumed && sync.Need > 0 {
		f.warn("green is out of reach: the slots and WAL senders blue needs for the table sync are counted with PostgreSQL's default max_sync_workers_per_subscription of %d", sync.Workers)
	}
	return nil
}

// capacityBlocker says that blue lacks slots or WAL senders for the
// subscription and its table-sync workers, what the setting must become, and
// that it takes a restart; when the sync workers are what does not fit,
// lowering green's max_sync_workers_per_subscription (a reload) is the other
// way.
func capacityBlocker(what, setting string, free, max, used, main, need int, sync syncCapacity, orDrop string) string {
	var parts []string
	if main > 0 {
		parts = append(parts, "1 for the subscription's slot")
	}
	if n := need - main; n > 0 {
		parts = append(parts, fmt.Sprintf("%d for green's table-sync workers (%s)", n, sync.why()))
	}
	msg := fmt.Sprintf("blue has %d free %s (%s=%d, %d in use) and the upgrade needs %d at once: %s; with fewer, the initial copy fails on blue: ALTER SYSTEM SET %s = %d; on blue and restart blue (%s takes effect only at a restart)%s",
		free, what, setting, max, used, need, strings.Join(parts, " and "), setting, used+need, setting, orDrop)
	if sync.Workers > 0 && free > main && free-main < sync.Need {
		msg += fmt.Sprintf(", or copy fewer tables at once: ALTER SYSTEM SET max_sync_workers_per_subscription = %d; SELECT pg_reload_conf(); on green (no restart)", free-main)
	}
	return msg
}

// extraSyncSlots is the margin for table-sync workers (PostgreSQL's default
// max_sync_workers_per_subscription) that preflight.target adds to the
// settings it suggests.
const extraSyncSlots = defaultSyncWorkers

// longTxAge is how long a transaction on blue may be open before preflight
// names it: the slot's creation waits for it.
var longTxAge = time.Minute

// sourceOpenTx names transactions open on blue for longer than longTxAge
// while pgshift's slot does not exist yet: creating it waits for every
// transaction holding a transaction id to end.
func sourceOpenTx(ctx context.Context, f *findings, pool *pgxpool.Pool, env *engine.Env) error {
	st, err := pg.ReadSlot(ctx, pool, env.Spec.SlotName())
	if err != nil {
		return err
	}
	if st.Exists {
		return nil
	}
	now, err := pg.Scalar[time.Time](ctx, pool, "SELECT now()")
	if err != nil {
		return fmt.Errorf("read blue's clock: %w", err)
	}
	txs, err := listOpenTx(ctx, pool, now.Add(-longTxAge), 0, false)
	if err != nil {
		return err
	}
	var blocking, reading []openTx
	for _, tx := range txs {
		if tx.HoldsXID {
			blocking = append(blocking, tx)
		} else {
			reading = append(reading, tx)
		}
	}
	if len(blocking) > 0 {
		f.warn("%s on blue open for over %s: creating pgshift's slot (source.slot) waits until %s: %s; %s",
			words.Plural(len(blocking), "transaction", "transactions"), longTxAge, words.Pick(len(blocking), "it ends", "they end"),
			describeOpenTx(blocking), endTxFix(blocking))
	}
	if len(reading) > 0 {
		f.warn("%s on blue open for over %s without writing (the slot's creation does not wait for %s, but %s back vacuum): %s",
			words.Plural(len(reading), "transaction", "transactions"), longTxAge, words.Pick(len(reading), "it", "them"),
			words.Pick(len(reading), "it holds", "they hold"), describeOpenTx(reading))
	}
	return nil
}

// sourceOtherSlots names the slots on blue that are not pgshift's and keep
// WAL nobody reads: an inactive slot retains WAL from its restart_lsn on
// (blue's disk fills while the upgrade runs), and an invalidated one (lost)
// still takes one of max_replication_slots.
func sourceOtherSlots(ctx context.Context, f *findings, pool *pgxpool.Pool, env *engine.Env) error {
	rows, err := pool.Query(ctx, `
SELECT slot_name, slot_type, active,
       coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint, -1),
       coalesce(to_jsonb(s) ->> 'wal_status', '') -- the column exists from 13 on
  FROM pg_replication_slots s
 WHERE slot_name <> $1 AND NOT temporary
 ORDER BY slot_name`, env.Spec.SlotName())
	if err != nil {
		return fmt.Errorf("read replication slots: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, kind, walStatus string
		var active bool
		var retained int64
		if err := rows.Scan(&name, &kind, &active, &retained, &walStatus); err != nil {
			return fmt.Errorf("read replication slots: %w", err)
		}
		drop := fmt.Sprintf("SELECT pg_drop_replication_slot(%s);", pg.QuoteLiteral(name))
		switch {
		case walStatus == "lost":
			f.warn("%s replication slot %s on blue is invalidated (wal_status lost): blue removed WAL it needed, nothing can resume from it, and it still takes one of max_replication_slots; drop it: %s",
				kind, pg.QuoteLiteral(name), drop)
		case !active:
			held := "WAL from its restart_lsn on"
			if retained >= 0 {
				held = words.Bytes(retained) + " of WAL (pg_current_wal_lsn() - restart_lsn)"
			}
			f.warn("%s replication slot %s on blue is inactive (nothing consumes it) and retains %s, more with every write during the upgrade, until blue's disk fills; if it is abandoned, drop it: %s",
				kind, pg.QuoteLiteral(name), held, drop)
		}
	}
	return rows.Err()
}

// sourceTables: every selected table can replicate UPDATE and DELETE (a
// primary key or a replica identity), and the connecting role may publish
// and read it.
func sourceTables(ctx context.Context, f *findings, pool *pgxpool.Pool, env *engine.Env) error {
	tables, err := pg.SelectedTables(ctx, pool, env.Spec.Tables.Include, env.Spec.Tables.Exclude)
	if err != nil {
		return err
	}
	f.check("blue tables selected", len(tables) > 0, words.Plural(len(tables), "table", "tables"),
		fmt.Sprintf("no table on blue matches tables.include %q minus tables.exclude %q: fix the globs (they match schema.table)",
			env.Spec.Tables.Include, env.Spec.Tables.Exclude))
	if len(tables) == 0 {
		return nil
	}
	var missing []string
	var schemas, names []string
	var partitioned []pg.Table
	for _, t := range tables {
		schemas = append(schemas, t.Schema)
		names = append(names, t.Name)
		if !t.HasReplicaIdentity() {
			missing = append(missing, t.DisplayName())
		}
		if t.Partitioned {
			partitioned = append(partitioned, t)
		}
	}
	// A partition has its own replica identity: REPLICA IDENTITY FULL on the
	// root does not reach it, and UPDATEs on blue would fail.
	if len(partitioned) > 0 {
		leaves, err := partitionsWithoutIdentity(ctx, pool, partitioned)
		if err != nil {
			return err
		}
		missing = append(missing, leaves...)
	}
	f.check("replica identity on every table", len(missing) == 0,
		fmt.Sprintf("%d of %d without", len(missing), len(tables)),
		fmt.Sprintf("%s %s no primary key or replica identity, so UPDATE and DELETE cannot replicate (and fail on blue once published): add a primary key, or run ALTER TABLE %s REPLICA IDENTITY FULL;%s:%s",
			words.Plural(len(missing), "table", "tables"), words.Pick(len(missing), "has", "have"), firstOr(missing, "<table>"),
			words.Pick(len(missing), "", " and likewise for the others"), plans.ObjectList(missing)))
	if len(missing) == 0 {
		f.fact("%s with replica identity", words.Plural(len(tables), "table", "tables"))
	}

	// Looked up by name in the catalogs, not by ::regclass: a cast needs
	// USAGE on the schema, and a role without it must get the fix, not a
	// permission error.
	var notOwned, notReadable, noUsage []string
	rows, err := pool.Query(ctx, `
SELECT t.nsp, t.rel,
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) OR pg_has_role(c.relowner, 'USAGE'),
       has_table_privilege(c.oid, 'SELECT'),
       has_schema_privilege(n.oid, 'USAGE')
  FROM unnest($1::text[], $2::text[]) AS t(nsp, rel)
  JOIN pg_namespace n ON n.nspname = t.nsp
  JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.rel
 ORDER BY 1, 2`, schemas, names)
	if err != nil {
		return fmt.Errorf("read table privileges: %w", err)
	}
	for rows.Next() {
		var nsp, rel string
		var owns, reads, usage bool
		if err := rows.Scan(&nsp, &rel, &owns, &reads, &usage); err != nil {
			rows.Close()
			return fmt.Errorf("read table privileges: %w", err)
		}
		if !owns {
			notOwned = append(notOwned, pg.DisplayName(nsp, rel))
		}
		if !reads || !usage {
			notReadable = append(notReadable, pg.DisplayName(nsp, rel))
		}
		if !usage && (len(noUsage) == 0 || noUsage[len(noUsage)-1] != pg.ShowIdent(nsp)) {
			noUsage = append(noUsage, pg.ShowIdent(nsp))
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read table privileges: %w", err)
	}
	grantUsage := ""
	if len(noUsage) > 0 {
		grantUsage = fmt.Sprintf(" GRANT USAGE ON SCHEMA %s TO <role>;", strings.Join(noUsage, ", "))
	}
	f.check("publish every table", len(notOwned) == 0, strconv.Itoa(len(notOwned))+" not owned",
		fmt.Sprintf("the connecting role does not own %s, and only an owner or a superuser may add a table to a publication: connect as the owner or a superuser:%s",
			words.Plural(len(notOwned), "table", "tables"), plans.ObjectList(notOwned)))
	f.check("read every table", len(notReadable) == 0, strconv.Itoa(len(notReadable))+" not readable",
		fmt.Sprintf("the connecting role may not read %s for the initial copy: GRANT SELECT ON %s TO <role>;%s:%s",
			words.Plural(len(notReadable), "table", "tables"), firstOr(notReadable, "<table>"), grantUsage, plans.ObjectList(notReadable)))
	return nil
}

// partitionsWithoutIdentity lists leaf partitions of the given roots that
// have neither a primary key nor a replica identity.
func partitionsWithoutIdentity(ctx context.Context, db pg.Querier, roots []pg.Table) ([]string, error) {
	var schemas, names []string
	for _, t := range roots {
		schemas = append(schemas, t.Schema)
		names = append(names, t.Name)
	}
	rows, err := db.Query(ctx, `
SELECT n.nspname, c.relname
  FROM unnest($1::text[], $2::text[]) AS r(nsp, rel)
  JOIN pg_namespace rn ON rn.nspname = r.nsp
  JOIN pg_class rc ON rc.relnamespace = rn.oid AND rc.relname = r.rel
 CROSS JOIN LATERAL pg_partition_tree(rc.oid) p
  JOIN pg_class c ON c.oid = p.relid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE p.isleaf
   AND NOT (c.relreplident IN ('f', 'i')
            OR (c.relreplident = 'd' AND EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)))
 ORDER BY 1, 2`, schemas, names)
	if err != nil {
		return nil, fmt.Errorf("read replica identity of partitions: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var schema, name string
		if err := rows.Scan(&schema, &name); err != nil {
			return nil, err
		}
		out = append(out, pg.DisplayName(schema, name))
	}
	return out, rows.Err()
}

func firstOr(names []string, fallback string) string {
	if len(names) == 0 {
		return fallback
	}
	return names[0]
}
