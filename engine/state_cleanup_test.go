package engine

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRecordCleanupRefusesApplyAndRollback(t *testing.T) {
	spec := testSpec()
	r := &recorder{}
	g := mustCompile(t, r.step("a"))
	path := filepath.Join(t.TempDir(), "x.pgshift-state.json")

	// No state file: nothing to mark, nothing written.
	if err := RecordCleanup(path, CleanupRecord{At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadState(path); err == nil {
		t.Fatal("RecordCleanup created a state file")
	}

	store, err := OpenState(path, spec, g, StateOptions{Operation: "apply"})
	if err != nil {
		t.Fatal(err)
	}
	store.Update(func(st *State) { st.Next = "pgshift apply --approve-cutover" })
	store.Close()

	at := time.Date(2026, 11, 26, 4, 0, 0, 0, time.UTC)
	// Before a cutover, rollback may still undo the rest; apply may not go on.
	if err := RecordCleanup(path, CleanupRecord{At: at, Dropped: []string{"subscription pgshift_x on green"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenState(path, spec, g, StateOptions{Operation: "apply"}); !errors.As(err, new(*CleanedUpError)) {
		t.Fatalf("apply on a cleaned-up state: %v, want a CleanedUpError", err)
	}
	rb, err := OpenState(path, spec, g, StateOptions{Operation: "rollback"})
	if err != nil {
		t.Fatalf("rollback before any cutover must still open the state: %v", err)
	}
	rb.Close()

	// A second cleanup (after a partial one) adds to the record.
	if err := RecordCleanup(path, CleanupRecord{At: at, Dropped: []string{"slot pgshift_x on blue"}, AfterCutover: true}); err != nil {
		t.Fatal(err)
	}
	st, err := ReadState(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.CleanedUp == nil || !st.CleanedUp.At.Equal(at) || strings.Join(st.CleanedUp.Dropped, ", ") != "subscription pgshift_x on green, slot pgshift_x on blue" || st.Next != "" {
		t.Fatalf("state after cleanup: %+v next %q", st.CleanedUp, st.Next)
	}
	for _, op := range []string{"apply", "rollback"} {
		_, err := OpenState(path, spec, g, StateOptions{Operation: op})
		var ce *CleanedUpError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), "2026-11-26T04:00:00Z") {
			t.Fatalf("%s on a cleaned-up state: %v, want a CleanedUpError", op, err)
		}
		t.Logf("%s: %v", op, err)
	}
}
