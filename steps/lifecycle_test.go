package steps

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/internal/steptest"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps/stepid"
)

// lifecycleSchema is blue's database: a table with a sequence, a
// partitioned table, a keyless table with REPLICA IDENTITY FULL, a
// materialized view and a role with a grant.
const lifecycleSchema = `
CREATE ROLE lifecycle_reader NOLOGIN;
CREATE TABLE accounts (id bigserial PRIMARY KEY, owner text NOT NULL);
CREATE TABLE events (id bigint NOT NULL, at date NOT NULL, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE notes (body text);
ALTER TABLE notes REPLICA IDENTITY FULL;
CREATE MATERIALIZED VIEW owners AS SELECT DISTINCT owner FROM accounts;
GRANT SELECT ON accounts TO lifecycle_reader;
INSERT INTO accounts (owner) SELECT 'owner ' || g FROM generate_series(1, 2000) g;
INSERT INTO events SELECT g, date '2024-01-01' + (g % 300) FROM generate_series(1, 1000) g;
INSERT INTO notes SELECT 'note ' || g FROM generate_series(1, 50) g;
`

// Every step but the cutover (whose lifecycle the cutover's own tests run
// behind a real switch), in dependency order, on blue 13 and green 17:
// observe, apply, apply again (no object changes); then observe shows
// nothing to do; then, in reverse order, rollback twice.
func TestEveryStepLifecycle(t *testing.T) {
	requireIntegration(t)
	for _, method := range []string{"subscription", "snapshot"} {
		t.Run(method, func(t *testing.T) {
			cs := pgtest.StartClusters(t, []int{13, 17})
			blue, green := cs[0], cs[1]
			blue.CreateDatabase(t, "app")
			green.CreateDatabase(t, "app")
			blue.Exec(t, "app", lifecycleSchema)
			sp := &spec.Spec{
				Name:        "life",
				Source:      spec.Endpoint{DSN: blue.DSN("app")},
				Target:      spec.Endpoint{DSN: green.DSN("app")},
				Schema:      spec.SchemaSpec{Copy: true, Roles: true},
				Replication: spec.ReplicationSpec{InitialCopy: spec.InitialCopySpec{Method: method}},
			}
			sp.SetDefaults()
			logs := &pgtest.LogBuffer{}
			env := engine.NewEnv(sp, hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug}))
			t.Cleanup(env.Close)

			var pipeline []engine.Step
			for _, st := range For(sp) {
				if st.ID() != stepid.Cutover {
					pipeline = append(pipeline, st)
				}
			}
			g, err := engine.Compile(pipeline)
			if err != nil {
				t.Fatal(err)
			}
			var ordered []engine.Step
			for _, id := range g.Order() {
				st, _ := g.Step(id)
				ordered = append(ordered, st)
			}
			objects := func(t *testing.T) string {
				settle(t, blue, green)
				return fmt.Sprintf("blue: publications=%s slots=%s; green: subscriptions=%s slots=%s tables=%s roles=%s accounts=%s",
					blue.Scalar(t, "app", "SELECT count(*) FROM pg_publication"),
					blue.Scalar(t, "app", "SELECT string_agg(slot_name::text, ',' ORDER BY slot_name) FROM pg_replication_slots"),
					green.Scalar(t, "app", "SELECT count(*) FROM pg_subscription"),
					green.Scalar(t, "app", "SELECT count(*) FROM pg_replication_slots"),
					green.Scalar(t, "app", "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"),
					green.Scalar(t, "app", "SELECT count(*) FROM pg_roles WHERE rolname = 'lifecycle_reader'"),
					green.Scalar(t, "app", "SELECT CASE WHEN to_regclass('public.accounts') IS NULL THEN 'none' "+
						"ELSE (xpath('/row/c/text()', query_to_xml('SELECT count(*) AS c FROM public.accounts', false, true, '')))[1]::text END"))
			}
			steptest.Lifecycle(t, testCtx(t), env, ordered, objects)
			if t.Failed() {
				t.Logf("log:\n%s", logs)
			}
			// Everything pgshift made is gone again.
			if got := blue.Scalar(t, "app", "SELECT count(*) FROM pg_publication") + "/" +
				blue.Scalar(t, "app", "SELECT count(*) FROM pg_replication_slots") + "/" +
				green.Scalar(t, "app", "SELECT count(*) FROM pg_subscription") + "/" +
				green.Scalar(t, "app", "SELECT count(*) FROM pg_roles WHERE rolname = 'lifecycle_reader'") + "/" +
				green.Scalar(t, "app", "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"); got != "0/0/0/0/0" {
				t.Errorf("after the rollbacks: publications/slots/subscriptions/roles/relations = %s, want 0/0/0/0/0", got)
			}
		})
	}
}

// settle waits until the initial copy of every enabled subscription on
// green is done (all its tables ready, blue's table-sync slots gone): the
// copy runs in background workers after target.subscription returns, so
// without this a snapshot of the objects races with them.
func settle(t *testing.T, blue, green *pgtest.Cluster) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		syncing := green.Scalar(t, "app", "SELECT count(*) FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid WHERE s.subenabled AND r.srsubstate <> 'r'")
		slots := blue.Scalar(t, "app", `SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pg\_%\_sync\_%'`)
		if syncing == "0" && slots == "0" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("green's initial copy did not finish in 2 minutes: %s tables not ready, %s table-sync slots on blue", syncing, slots)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
