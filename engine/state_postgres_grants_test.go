package engine

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/pgshift/pgshift/internal/pgtest"
)

// TestPostgresStatePrecreatedTable: a DBA creates the state table and
// grants pgshift's role only SELECT, INSERT and UPDATE on it (no CREATE
// on any schema). Runs lock, checkpoint, read and force-unlock with that;
// a missing table is refused naming the table, the schema and the SQL that
// fixes it (which, run, does fix it); a checkpoint that fails (UPDATE
// revoked for a moment) leaves the next one to succeed, the stored serial
// and the run's the same.
func TestPostgresStatePrecreatedTable(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL server")
	}
	c := pgtest.StartCluster(t, 17)
	c.CreateDatabase(t, "ops")
	// PostgreSQL 15+: PUBLIC has no CREATE on schema public.
	c.Exec(t, "ops", `CREATE ROLE pgshift_dml LOGIN;
CREATE SCHEMA ops;
GRANT USAGE ON SCHEMA ops TO pgshift_dml;
CREATE TABLE ops.pgshift_state (
	name        text PRIMARY KEY,
	spec_hash   text NOT NULL DEFAULT '',
	serial      bigint NOT NULL DEFAULT 0,
	state       jsonb,
	updated_at  timestamptz NOT NULL DEFAULT now(),
	lock_holder jsonb
);
GRANT SELECT, INSERT, UPDATE ON ops.pgshift_state TO pgshift_dml`)
	dsn := strings.Replace(c.DSN("ops"), "postgres://postgres@", "postgres://pgshift_dml@", 1)
	sp := testSpec()
	r := &recorder{}
	g := mustCompile(t, r.step("a"), r.step("b", "a"))

	t.Run("dml-only", func(t *testing.T) {
		loc, err := PostgresStateLocation(dsn, "", "ops.pgshift_state", sp.Name)
		if err != nil {
			t.Fatal(err)
		}
		store, err := OpenState(loc, sp, g, StateOptions{Operation: "apply"})
		if err != nil {
			t.Fatalf("open the state with SELECT, INSERT, UPDATE on a pre-created table: %v", err)
		}
		if _, err := Apply(t.Context(), g, NewEnv(sp, nil), store, ApplyOptions{}); err != nil {
			t.Fatal(err)
		}
		if info, held := LockHolder(loc); !held || info.PID != os.Getpid() {
			t.Fatalf("LockHolder during the run: %+v, %v", info, held)
		}
		serial := store.Snapshot().Serial
		if err := store.Close(); err != nil {
			t.Fatal(err)
		}
		st, err := ReadState(loc)
		if err != nil {
			t.Fatal(err)
		}
		if st.Step("b").Status != StatusDone || st.Serial != serial {
			t.Fatalf("state read back: b %s serial %d, want done and %d", st.Step("b").Status, st.Serial, serial)
		}
		if err := ForceUnlock(loc, nil); err != nil {
			t.Fatalf("force-unlock of a free lock: %v", err)
		}
		if got := c.Scalar(t, "ops", "SELECT serial || ' ' || (state->'steps'->1->>'status') FROM ops.pgshift_state WHERE name = 'orders'"); got != strconv.FormatInt(serial, 10)+" done" {
			t.Fatalf("row %q", got)
		}
	})

	t.Run("failed-checkpoint-keeps-serial", func(t *testing.T) {
		other := testSpec()
		other.Name = "billing"
		loc, err := PostgresStateLocation(dsn, "", "ops.pgshift_state", other.Name)
		if err != nil {
			t.Fatal(err)
		}
		store, err := OpenState(loc, other, g, StateOptions{Operation: "apply"})
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		c.Exec(t, "ops", "REVOKE UPDATE ON ops.pgshift_state FROM pgshift_dml")
		err = store.UpdateStep("a", func(s *StepState) { s.Note = "refused" })
		c.Exec(t, "ops", "GRANT UPDATE ON ops.pgshift_state TO pgshift_dml")
		if err == nil || errors.As(err, new(*LostRaceError)) || !strings.Contains(err.Error(), "permission denied") {
			t.Fatalf("checkpoint without UPDATE: %v, want permission denied", err)
		}
		if err := store.UpdateStep("a", func(s *StepState) { s.Note = "after the grant" }); err != nil {
			t.Fatalf("checkpoint after UPDATE was granted again: %v, want it written", err)
		}
		st, err := ReadState(loc)
		if err != nil {
			t.Fatal(err)
		}
		if st.Serial != store.Snapshot().Serial || st.Step("a").Note != "after the grant" {
			t.Fatalf("stored serial %d note %q; the run's serial %d: want the same serial and the note written",
				st.Serial, st.Step("a").Note, store.Snapshot().Serial)
		}
	})

	t.Run("missing-table", func(t *testing.T) {
		loc, err := PostgresStateLocation(dsn, "", "", sp.Name)
		if err != nil {
			t.Fatal(err)
		}
		_, err = OpenState(loc, sp, g, StateOptions{Operation: "apply"})
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		for _, want := range []string{
			"create the state table pgshift_state on ",
			`role "pgshift_dml" may not create it in schema "public"`,
			`GRANT CREATE ON SCHEMA "public" TO "pgshift_dml";`,
			`CREATE TABLE "public"."pgshift_state" (`,
			`GRANT SELECT, INSERT, UPDATE ON "public"."pgshift_state" TO "pgshift_dml";`,
		} {
			if !strings.Contains(msg, want) {
				t.Fatalf("open with the table missing and no CREATE: %v\nwant it to say %s", err, want)
			}
		}
		// The SQL the message gives, run by the owner, is the fix.
		i, j := strings.Index(msg, "CREATE TABLE "), strings.LastIndex(msg, " (docs/state.md)")
		c.Exec(t, "ops", msg[i:j])
		store, err := OpenState(loc, sp, g, StateOptions{Operation: "apply"})
		if err != nil {
			t.Fatalf("open after running the SQL the message gave: %v", err)
		}
		store.Close()
	})
}
