package engine

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// CleanupRecord is what `pgshift cleanup` dropped, and when.
type CleanupRecord struct {
	At      time.Time `json:"at"`
	Dropped []string  `json:"dropped,omitempty"` // "subscription pgshift_orders on green", ...
	// AfterCutover: the application had moved to green, so the reverse
	// replication a rollback needs is gone. Before a cutover a rollback
	// may still undo the rest (green's schema, roles).
	AfterCutover bool `json:"after_cutover,omitempty"`
}

// Refuses says whether the record forbids an operation on its state.
func (r *CleanupRecord) Refuses(operation string) bool {
	return operation != "rollback" || r.AfterCutover
}

// RecordCleanup marks the state at path (a file or a postgres location)
// as cleaned up. The caller holds the state's lock. Without a state there
// is no run to mark: nothing is written.
func RecordCleanup(path string, rec CleanupRecord) error {
	b, err := backendOf(path)
	if err != nil {
		return err
	}
	err = b.modify(func(st *State) {
		// A cleanup run again after a partial one adds to what was dropped.
		if prev := st.CleanedUp; prev != nil {
			rec.Dropped = append(append([]string(nil), prev.Dropped...), rec.Dropped...)
			rec.AfterCutover = rec.AfterCutover || prev.AfterCutover
		}
		st.CleanedUp = &rec
		st.Next = ""
	})
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("record the cleanup in %s: %w", b.where(), err)
	}
	return nil
}

// CleanedUpError refuses to apply from a state whose replication objects
// cleanup has dropped (the done steps would be taken for live objects), and
// to roll back once the cutover had happened (nothing carries green's
// writes back any more).
type CleanedUpError struct {
	Path      string
	Record    CleanupRecord
	Operation string
}

func (e *CleanedUpError) Error() string {
	msg := fmt.Sprintf("%s: pgshift cleanup dropped this upgrade's replication objects at %s, so its steps no longer describe anything live. ",
		StateWhere(e.Path), e.Record.At.UTC().Format(time.RFC3339))
	if e.Operation == "rollback" {
		return msg + "There is no reverse replication left to roll back with: to move the application back, start a new upgrade in the other direction"
	}
	if e.Record.AfterCutover {
		return msg + "The upgrade is over: to upgrade again, start from a new state file (--state NEW-PATH)"
	}
	return msg + "Undo what is left (green's schema and roles) with pgshift rollback first: it clears this mark, and apply then starts over from the beginning"
}
