package steps

import (
	"strconv"
	"strings"

	"github.com/pgshift/pgshift/plans"
)

// What the inspecting steps would do, for `plan --offline`, and what their
// rollback undoes. Their fingerprints keep the verdicts and leave out moving
// numbers (free slots and workers), so that a saved plan does not go stale
// because a connection came and went.

func (preflightSource) Describe() plans.Change {
	return plans.Change{Summary: "check blue: version, replication privilege, wal_level=logical, slots and WAL senders for the sync, a replica identity on every selected table, other slots holding WAL, long transactions"}
}

func (preflightTarget) Describe() plans.Change {
	return plans.Change{Summary: "check green: database exists, newer major than blue, may create subscriptions, free replication workers, no conflicting tables"}
}

func (audit) Describe() plans.Change {
	return plans.Change{Summary: "report what the major upgrade changes (removed types, extensions and operators, changed array functions, reg* columns, encodings and collations) and what logical replication does not carry (sequences, large objects, unlogged and foreign tables, materialized views, DDL); docs/audit.md lists every check"}
}

func (preflightSource) DescribeRollback() string {
	return "nothing to undo: preflight.source changes nothing"
}
func (preflightTarget) DescribeRollback() string {
	return "nothing to undo: preflight.target changes nothing"
}
func (audit) DescribeRollback() string { return "nothing to undo: audit changes nothing" }

func (preflightSource) Fingerprint(c plans.Change) string { return verdictFingerprint(c) }
func (preflightTarget) Fingerprint(c plans.Change) string { return verdictFingerprint(c) }
func (audit) Fingerprint(c plans.Change) string           { return verdictFingerprint(c) }

// verdictFingerprint is whether the step blocks, and its blockers: what
// decides whether apply may go on. A warning coming or going (a long
// transaction on blue ended) does not make a saved plan stale.
func verdictFingerprint(c plans.Change) string {
	blocks := c.Action == plans.ActionBlocker
	return strconv.FormatBool(blocks) + "\n" + strings.Join(c.Blockers, "\n")
}

func (r roles) Describe() plans.Change {
	if !r.enabled {
		return plans.Change{Summary: "schema.roles is false: roles are not copied"}
	}
	return plans.Change{Summary: "create blue's roles and memberships that green lacks (with their password hashes where blue's pg_authid is readable)"}
}

func (roles) DescribeRollback() string {
	return "drop the roles pgshift created on green (marked by a comment) and revoke the memberships it granted"
}

func (s schemaStep) Describe() plans.Change {
	if !s.copy {
		return plans.Change{Summary: "schema.copy is false: green must already hold blue's schema"}
	}
	return plans.Change{Summary: "restore blue's schema into green unless it holds every selected table",
		Details: []string{"pg_dump --schema-only --no-publications --no-subscriptions" + sectionFlags(s.sections) + " (blue) | psql --single-transaction -v ON_ERROR_STOP=1 (green)"}}
}

func (schemaStep) DescribeRollback() string {
	return "drop the objects the schema restore created on green (listed in a comment on the database); objects green held before stay"
}
