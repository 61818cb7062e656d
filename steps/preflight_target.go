package steps

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/words"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps/stepid"
)

// preflightTarget checks that green can subscribe: it exists, runs a newer
// major than blue, the role may create subscriptions, logical replication
// workers are free, and its tables do not conflict with blue's. It changes
// nothing.
type preflightTarget struct{}

func init() {
	register(func(*spec.Spec) []engine.Step { return []engine.Step{inspecting{preflightTarget{}}} })
}

func (preflightTarget) ID() string      { return stepid.PreflightTarget }
func (preflightTarget) Needs() []string { return nil }

func (preflightTarget) inspect(ctx context.Context, env *engine.Env) (*findings, error) {
	f := &findings{}
	// A database green lacks is its own blocker, with the statement that
	// creates it as blue's (preflight_target_database.go).
	if missingTargetDatabase(ctx, f, env) {
		return f, nil
	}
	pool, ok := connectCheck(ctx, f, env.Target, "target.dsn")
	if !ok {
		return f, nil
	}
	green, err := pg.ServerVersionOf(ctx, pool)
	if err != nil {
		return nil, fmt.Errorf("green: %w", err)
	}
	f.fact("PostgreSQL %s", green)
	// Blue's version and tables: preflight.source reports when blue is out
	// of reach, so here a failure only skips the comparisons.
	bluePool, blueErr := env.Source.Pool(ctx)
	if blueErr == nil {
		blue, err := pg.ServerVersionOf(ctx, bluePool)
		if err != nil {
			return nil, fmt.Errorf("blue: %w", err)
		}
		f.check("green newer than blue", green.Major > blue.Major,
			fmt.Sprintf("blue %s -> green %s", blue, green),
			fmt.Sprintf("green runs PostgreSQL %s and blue %s: pgshift moves to a newer major version; point target.dsn at a cluster of PostgreSQL %d or newer",
				green, blue, blue.Major+1))
	} else {
		f.warn("blue is out of reach (see preflight.source): green's version and tables are not compared with blue's")
	}
	if green.Major < 10 {
		f.check("green version", false, green.String(), fmt.Sprintf("green runs PostgreSQL %s: subscriptions need 10 or newer", green))
		return f, nil
	}
	if err := targetPrivileges(ctx, f, pool, env, green); err != nil {
		return nil, fmt.Errorf("green: %w", err)
	}
	if err := targetWorkers(ctx, f, pool, env); err != nil {
		return nil, fmt.Errorf("green: %w", err)
	}
	if err := targetOrigins(ctx, f, pool, env, green); err != nil {
		return nil, fmt.Errorf("green: %w", err)
	}
	if env.Spec.Cutover.ReverseReplication {
		if err := targetReverse(ctx, f, pool); err != nil {
			return nil, fmt.Errorf("green: %w", err)
		}
	}
	if blueErr == nil {
		if err := targetTables(ctx, f, pool, bluePool, env); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// targetPrivileges: creating a subscription takes a superuser, or on 16+
// membership in pg_create_subscription plus CREATE on the database.
func targetPrivileges(ctx context.Context, f *findings, pool *pgxpool.Pool, env *engine.Env, v pg.ServerVersion) error {
	var user, db string
	var super, createRole, create, subscriber bool
	err := pool.QueryRow(ctx, `
SELECT r.rolname, current_database(), r.rolsuper, r.rolcreaterole,
       has_database_privilege(current_database(), 'CREATE'),
       EXISTS (SELECT 1 FROM pg_roles m WHERE m.rolname = 'pg_create_subscription'
                                         AND pg_has_role(r.oid, m.oid, 'MEMBER'))
  FROM pg_roles r WHERE r.rolname = current_user`).Scan(&user, &db, &super, &createRole, &create, &subscriber)
	if err != nil {
		return fmt.Errorf("read privileges of the connecting role: %w", err)
	}
	ok := super || (v.Major >= 16 && subscriber && create)
	fix := fmt.Sprintf("connect to green as a superuser, or on PostgreSQL 16+ run GRANT pg_create_subscription TO %s; GRANT CREATE ON DATABASE %s TO %s;",
		pg.ShowIdent(user), pg.ShowIdent(db), pg.ShowIdent(user))
	how := "superuser"
	if !super {
		how = "not superuser"
		if subscriber {
			how = "member of pg_create_subscription"
		}
	}
	f.check("green may create subscriptions", ok, fmt.Sprintf("role %s: %s", user, how),
		fmt.Sprintf("role %s on green may not create subscriptions: %s", user, fix))
	if env.Spec.Schema.Roles && !super && !createRole {
		f.warn("role %s on green has neither SUPERUSER nor CREATEROLE: target.roles cannot create blue's roles, and the schema restore fails on owners that do not exist", user)
	}
	return nil
}

// targetWorkers: the subscription needs an apply worker, and during the
// native initial copy one table-sync worker per table copied at once
// (min(tables, max_sync_workers_per_subscription)), all drawn from
// max_logical_replication_workers and max_worker_processes. Too few is a
// blocker: the copy would stall or fail rather than wait.
func targetWorkers(ctx context.Context, f *findings, pool *pgxpool.Pool, env *engine.Env) error {
	var maxLR, usedLR, maxWorkers, usedWorkers int
	var ours bool
	err := pool.QueryRow(ctx, `
SELECT current_setting('max_logical_replication_workers')::int,
       (SELECT count(*) FROM pg_stat_subscription WHERE pid IS NOT NULL)::int,
       current_setting('max_worker_processes')::int,
       (SELECT count(*) FROM pg_stat_activity
         WHERE backend_type NOT IN ('client backend', 'autovacuum launcher', 'autovacuum worker',
                                    'walsender', 'walreceiver', 'walwriter', 'checkpointer',
                                    'background writer', 'startup', 'archiver', 'io worker',
                                    'slotsync worker', 'walsummarizer', 'standalone backend'))::int,
       EXISTS (SELECT 1 FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid
                WHERE d.datname = current_database() AND s.subname = $1)`,
		env.Spec.SubscriptionName()).Scan(&maxLR, &usedLR, &maxWorkers, &usedWorkers, &ours)
	if err != nil {
		return fmt.Errorf("read logical replication workers: %w", err)
	}
	var blue pg.Querier
	if b, err := env.Source.Pool(ctx); err == nil {
		blue = b
	}
	sync, err := readSyncCapacity(ctx, env, blue)
	if err != nil {
		return err
	}
	apply := 1
	if ours {
		apply = 0 // the subscription exists and has its apply worker already
	}
	need := apply + max(sync.Need-sync.RunningWorkers, 0)
	free := maxLR - usedLR
	f.fact("%d of %d replication workers free", free, maxLR)
	f.check("green free logical replication workers", free >= need,
		fmt.Sprintf("%d of max_logical_replication_workers=%d free, %d needed", free, maxLR, need),
		workersBlocker("logical replication workers", "max_logical_replication_workers", free, maxLR, usedLR, apply, need, sync, ""))
	freeBG := maxWorkers - usedWorkers
	f.check("green free background workers", freeBG >= need,
		fmt.Sprintf("%d of max_worker_processes=%d free, %d needed", freeBG, maxWorkers, need),
		workersBlocker("background workers", "max_worker_processes", freeBG, maxWorkers, usedWorkers, apply, need, sync,
			" (logical replication workers are background workers)"))
	return nil
}

// workersBlocker says that green lacks workers for the apply worker and the
// table-sync workers, what the setting must become, and that it takes a
// restart; lowering max_sync_workers_per_subscription (a reload) is the
// other way when the sync workers are what does not fit.
func workersBlocker(what, setting string, free, max, used, apply, need int, sync syncCapacity, why string) string {
	var parts []string
	if apply > 0 {
		parts = append(parts, "1 apply worker")
	}
	if n := need - apply; n > 0 {
		parts = append(parts, fmt.Sprintf("%d table-sync %s (%s)", n, words.Pick(n, "worker", "workers"), sync.why()))
	}
	msg := fmt.Sprintf("green has %d free %s (%s=%d, %d in use)%s and the subscription needs %d at once: %s: ALTER SYSTEM SET %s = %d; on green and restart green (%s takes effect only at a restart)",
		free, what, setting, max, used, why, need, strings.Join(parts, " and "), setting, used+need, setting)
	if free > apply && free-apply < sync.Need {
		msg += fmt.Sprintf(", or copy fewer tables at once: ALTER SYSTEM SET max_sync_workers_per_subscription = %d; SELECT pg_reload_conf(); on green (no restart)", free-apply)
	}
	return msg
}

// targetTables compares green's user tables with blue's. Green must be empty
// or hold exactly the selected tables (restored before); with schema.copy
// false it must hold all of them. Rows already on green conflict with the
// native initial copy.
func targetTables(ctx context.Context, f *findings, green, blue *pgxpool.Pool, env *engine.Env) error {
	selected, err := pg.SelectedTables(ctx, blue, env.Spec.Tables.Include, env.Spec.Tables.Exclude)
	if err != nil {
		return fmt.Errorf("blue: %w", err)
	}
	blueAll, err := pg.SelectedTables(ctx, blue, nil, nil)
	if err != nil {
		return fmt.Errorf("blue: %w", err)
	}
	greenAll, err := pg.SelectedTables(ctx, green, nil, nil)
	if err != nil {
		return fmt.Errorf("green: %w", err)
	}
	onBlue := tableSet(blueAll)
	onGreen := tableSet(greenAll)
	var present, absent, foreign []string
	var presentTables []pg.Table // selected tables green holds
	// The schema dump holds excluded and unlogged tables, views and
	// sequences too: any of those names on green conflicts.
	if present, err = sharedRelations(ctx, blue, green); err != nil {
		return err
	}
	for _, t := range selected {
		if onGreen[t.QualifiedName()] {
			presentTables = append(presentTables, t)
		} else {
			absent = append(absent, t.DisplayName())
		}
	}
	for _, t := range greenAll {
		if !onBlue[t.QualifiedName()] {
			foreign = append(foreign, t.DisplayName())
		}
	}
	if len(foreign) > 0 {
		f.warn("green holds %s that blue does not have: %s; pgshift leaves them alone", words.Plural(len(foreign), "table", "tables"), words.List(foreign))
	}

	switch {
	case env.Spec.Schema.Copy && len(present) == 0:
		f.fact("green holds none of blue's tables")
		f.check("green schema", true, "no conflicting tables", "")
	case len(absent) == 0:
		f.fact("green holds all %s", words.Plural(len(selected), "table", "tables"))
		f.check("green schema", true, "all selected tables present", "")
	case env.Spec.Schema.Copy:
		f.check("green schema", false, fmt.Sprintf("%d of blue's relations present, %d selected tables missing", len(present), len(absent)),
			fmt.Sprintf("green already holds %s of blue's (%s) but lacks %s: the schema restore would fail on the existing ones; drop them on green, or restore the rest yourself and set schema.copy: false",
				words.Plural(len(present), "relation", "relations"), words.List(present), words.List(absent)))
	default:
		f.check("green schema", false, fmt.Sprintf("%d of %d selected tables present", len(present), len(selected)),
			fmt.Sprintf("schema.copy is false but green lacks %s: restore blue's schema into green first (pg_dump --schema-only | psql), or set schema.copy: true",
				words.List(absent)))
	}

	// Rows on green before the subscription exists would collide with the
	// native initial copy. The snapshot method fills tables before the
	// subscription exists: its copy step checks for itself.
	if env.Spec.Replication.InitialCopy.Method == "snapshot" || len(presentTables) == 0 {
		return nil
	}
	subscribed, err := pg.Scalar[bool](ctx, green, `
SELECT EXISTS (SELECT 1 FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid
                WHERE d.datname = current_database() AND s.subname = $1)`, env.Spec.SubscriptionName())
	if err != nil {
		return fmt.Errorf("green: read subscriptions: %w", err)
	}
	if subscribed {
		return nil
	}
	withRows, err := pg.TablesWithRows(ctx, green, presentTables)
	if err != nil {
		return fmt.Errorf("green: %w", err)
	}
	var filled []string
	for _, t := range withRows {
		filled = append(filled, t.DisplayName())
	}
	f.check("green tables empty", len(filled) == 0, fmt.Sprintf("%d of %d hold rows", len(filled), len(presentTables)),
		fmt.Sprintf("green %s %s already %s rows and the initial copy would add blue's on top (duplicates or key conflicts): empty %s on green (TRUNCATE %s;) or exclude %s in tables.exclude",
			words.Pick(len(filled), "table", "tables"), words.List(filled), words.Pick(len(filled), "holds", "hold"),
			words.Pick(len(filled), "it", "them"), strings.Join(filled, ", "), words.Pick(len(filled), "it", "them")))
	return nil
}

func tableSet(tables []pg.Table) map[string]bool {
	m := make(map[string]bool, len(tables))
	for _, t := range tables {
		m[t.QualifiedName()] = true
	}
	return m
}

// targetOrigins: a subscription tracks its progress in a replication origin,
// and so does each table sync worker. Their number is bounded by
// max_replication_slots before PostgreSQL 18 and by
// max_active_replication_origins since.
func targetOrigins(ctx context.Context, f *findings, pool *pgxpool.Pool, env *engine.Env, v pg.ServerVersion) error {
	name := "max_replication_slots"
	if v.Major >= 18 {
		name = "max_active_replication_origins"
	}
	var max, used int
	var ours bool
	err := pool.QueryRow(ctx, `
SELECT current_setting($1)::int, (SELECT count(*) FROM pg_replication_origin)::int,
       EXISTS (SELECT 1 FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid
                WHERE d.datname = current_database() AND s.subname = $2)`,
		name, env.Spec.SubscriptionName()).Scan(&max, &used, &ours)
	if err != nil {
		return fmt.Errorf("read replication origins: %w", err)
	}
	need := 1
	if ours {
		need = 0
	}
	f.check("green free replication origins", max-used >= need,
		fmt.Sprintf("%d of %s=%d free, %d needed", max-used, name, max, need),
		fmt.Sprintf("green has no free replication origin for the subscription (%s=%d, %d in use): ALTER SYSTEM SET %s = %d; and restart green",
			name, max, used, name, used+1+extraSyncSlots))
	return nil
}

// targetReverse: after the cutover green publishes back to blue, which
// takes wal_level=logical, a slot and a WAL sender on green. wal_level only
// changes with a restart, so it is better found now than at the cutover.
func targetReverse(ctx context.Context, f *findings, pool *pgxpool.Pool) error {
	var level string
	var maxSlots, usedSlots, maxSenders int
	err := pool.QueryRow(ctx, `
SELECT current_setting('wal_level'), current_setting('max_replication_slots')::int,
       (SELECT count(*) FROM pg_replication_slots)::int, current_setting('max_wal_senders')::int`).
		Scan(&level, &maxSlots, &usedSlots, &maxSenders)
	if err != nil {
		return fmt.Errorf("read settings for reverse replication: %w", err)
	}
	f.check("green can publish back (reverse replication)", level == "logical", "wal_level="+level,
		fmt.Sprintf("green has wal_level=%s, and cutover.reverse_replication needs logical to replicate back to blue after the switch: run ALTER SYSTEM SET wal_level = logical; on green and restart it now (before any data arrives), or set cutover.reverse_replication: false", level))
	f.check("green slot and WAL sender for reverse replication", maxSlots > usedSlots && maxSenders > 0,
		fmt.Sprintf("max_replication_slots=%d (%d in use), max_wal_senders=%d", maxSlots, usedSlots, maxSenders),
		fmt.Sprintf("green needs a free replication slot and a WAL sender for reverse replication (max_replication_slots=%d with %d in use, max_wal_senders=%d): raise them with ALTER SYSTEM and restart green, or set cutover.reverse_replication: false",
			maxSlots, usedSlots, maxSenders))
	return nil
}
