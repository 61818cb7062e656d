package pgtest

import "testing"

// ReadOnly says whether database db carries a default_transaction_read_only
// setting of its own (ALTER DATABASE ... SET, as the read-only freeze leaves
// it): a database left that way refuses every new session's writes.
func (c *Cluster) ReadOnly(t testing.TB, db string) bool {
	t.Helper()
	return c.Scalar(t, db, `SELECT count(*) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
		CROSS JOIN LATERAL unnest(s.setconfig) AS cfg
		WHERE d.datname = current_database() AND s.setrole = 0 AND cfg LIKE 'default\_transaction\_read\_only=%'`) != "0"
}
