package engine

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/pgshift/pgshift/internal/pgtest"
)

// TestPostgresStateBackend keeps two specs' states in one table of a real
// server: checkpoints land in the rows, a second run of the same spec is
// refused naming the holder while another spec runs beside it, a write
// behind the run's back is a lost race that writes nothing, a force-unlock
// ends the holder's session (whose next checkpoint fails), and the cleanup
// mark refuses apply.
func TestPostgresStateBackend(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL server")
	}
	c := pgtest.StartCluster(t, 17)
	c.CreateDatabase(t, "ops")
	ctx := context.Background()
	loc, err := PostgresStateLocation(c.DSN("ops"), "", "pgshift_runs", "orders")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ReadState(loc); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ReadState before any run: %v, want os.ErrNotExist", err)
	}

	r := &recorder{}
	g := mustCompile(t, r.step("a"), r.step("b", "a"))
	sp := testSpec()
	store, err := OpenState(loc, sp, g, StateOptions{Operation: "apply"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(ctx, g, NewEnv(sp, nil), store, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	st, err := ReadState(loc)
	if err != nil {
		t.Fatal(err)
	}
	if st.Step("a").Status != StatusDone || st.Step("b").Status != StatusDone || st.Serial != store.Snapshot().Serial {
		t.Fatalf("state read back: %+v", st)
	}
	row := c.Scalar(t, "ops", "SELECT name || ' ' || spec_hash || ' ' || serial || ' ' || (state->'steps'->1->>'status') || ' ' || (lock_holder->>'operation') FROM pgshift_runs")
	if want := "orders " + sp.Hash() + " " + strconv.FormatInt(st.Serial, 10) + " done apply"; row != want {
		t.Fatalf("row %q, want %q", row, want)
	}

	// The same spec again: refused, naming this process and its session.
	_, err = OpenState(loc, sp, g, StateOptions{Operation: "rollback"})
	host, _ := os.Hostname()
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "locked by pid "+strconv.Itoa(os.Getpid())+" on "+host) ||
		!strings.Contains(err.Error(), "(pgshift apply) through server backend") || !strings.Contains(err.Error(), `state "orders" in table pgshift_runs`) {
		t.Fatalf("second run of the same spec: %v", err)
	}
	info, held := LockHolder(loc)
	if !held || info.PID != os.Getpid() || info.Backend == 0 {
		t.Fatalf("LockHolder = %+v, %v", info, held)
	}
	// Another spec in the same table runs beside it.
	other := testSpec()
	other.Name = "billing"
	otherLoc := WithStateName(strings.TrimSuffix(loc, "#orders"), "billing")
	ostore, err := OpenState(otherLoc, other, g, StateOptions{Operation: "apply"})
	if err != nil {
		t.Fatalf("another spec in the same table: %v", err)
	}
	ostore.Close()

	// A write behind the run's back: the run's next checkpoint is refused
	// and writes nothing.
	c.Exec(t, "ops", "UPDATE pgshift_runs SET serial = serial + 100, state = jsonb_set(state, '{serial}', to_jsonb(serial + 100)) WHERE name = 'orders'")
	err = store.UpdateStep("a", func(s *StepState) { s.Note = "after the race" })
	var lost *LostRaceError
	if !errors.As(err, &lost) || !strings.Contains(err.Error(), "is no longer at serial") {
		t.Fatalf("checkpoint after a write behind the run's back: %v", err)
	}
	if got := c.Scalar(t, "ops", "SELECT serial || ' ' || coalesce(state->'steps'->0->>'note', '-') FROM pgshift_runs WHERE name = 'orders'"); got != strconv.FormatInt(st.Serial+100, 10)+" -" {
		t.Fatalf("row after the lost race: %q", got)
	}

	// force-unlock: only the holder seen is ended; then the lock is free
	// and the old holder's next checkpoint fails, naming why.
	if err := ForceUnlock(loc, &LockInfo{Backend: info.Backend + 1}); err == nil || !strings.Contains(err.Error(), "changed hands") {
		t.Fatalf("force-unlock of a holder not seen: %v", err)
	}
	if err := ForceUnlock(loc, info); err != nil {
		t.Fatal(err)
	}
	if _, held := LockHolder(loc); held {
		t.Fatal("lock still held after force-unlock")
	}
	if err := store.UpdateStep("a", func(*StepState) {}); err == nil || !strings.Contains(err.Error(), "the lock is lost") {
		t.Fatalf("checkpoint of the force-unlocked run: %v", err)
	}
	store.Close()
	if err := ForceUnlock(loc, nil); err != nil {
		t.Fatalf("force-unlock of a free lock: %v", err)
	}

	// The cleanup mark refuses apply.
	if err := RecordCleanup(loc, CleanupRecord{Dropped: []string{"slot pgshift_x on blue"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenState(loc, sp, g, StateOptions{Operation: "apply"}); !errors.As(err, new(*CleanedUpError)) {
		t.Fatalf("apply after cleanup: %v", err)
	}
	if got := c.Scalar(t, "ops", "SELECT count(*) FROM pgshift_runs WHERE lock_holder IS NOT NULL"); got != "0" {
		t.Fatalf("%s rows still name a holder after every run ended", got)
	}
}

// TestPostgresStateLocationKeepsSecretsOut: a password in the state's DSN
// or location is refused without being echoed, and a password_env that is
// not set is named.
func TestPostgresStateLocationKeepsSecretsOut(t *testing.T) {
	for _, dsn := range []string{"postgres://pgshift:s3cret@ops:5432/ops", "host=ops dbname=ops password=s3cret"} {
		_, err := PostgresStateLocation(dsn, "", "", "orders")
		if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "password_env") {
			t.Errorf("PostgresStateLocation(%q): %v", dsn, err)
		}
	}
	if _, err := ReadState("postgres://pgshift:s3cret@ops:5432/ops#orders"); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("ReadState of a location with a password: %v", err)
	}
	loc, err := PostgresStateLocation("host=127.0.0.1 port=1 dbname=ops user=pgshift sslmode=disable", "PGSHIFT_TEST_UNSET_PW", "ops.state", "orders")
	if err != nil {
		t.Fatal(err)
	}
	if want := "postgres://pgshift@127.0.0.1:1/ops?password_env=PGSHIFT_TEST_UNSET_PW&sslmode=disable&table=ops.state#orders"; loc != want {
		t.Fatalf("location %q, want %q", loc, want)
	}
	if _, err := ReadState(loc); err == nil || !strings.Contains(err.Error(), "PGSHIFT_TEST_UNSET_PW, which is not set") {
		t.Fatalf("ReadState with password_env unset: %v", err)
	}
	if _, err := PostgresStateLocation("postgres://ops/ops", "", "x; DROP TABLE y", "orders"); err == nil {
		t.Fatal("a table name with SQL in it was taken")
	}
}
