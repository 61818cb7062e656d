package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/pgshift/pgshift/internal/atomicfile"
	"github.com/pgshift/pgshift/spec"
)

// StateFormatVersion is the version of the state file format.
const StateFormatVersion = 1

// Status is a step's place in its life cycle, as checkpointed in the state.
type Status string

const (
	StatusPending        Status = "pending"         // never started
	StatusRunning        Status = "running"         // Apply started; if no apply holds the lock, it was interrupted
	StatusDone           Status = "done"            // Apply succeeded
	StatusFailed         Status = "failed"          // Apply (or a precondition) failed: Error says why
	StatusUpstreamFailed Status = "upstream-failed" // not run because a step it needs failed
	StatusRollingBack    Status = "rolling-back"    // Rollback started
	StatusRolledBack     Status = "rolled-back"     // Rollback succeeded
	StatusRollbackFailed Status = "rollback-failed" // Rollback failed: Error says why
)

// allStatuses lists every status (metrics export one series per status).
var allStatuses = []Status{StatusPending, StatusRunning, StatusDone, StatusFailed, StatusUpstreamFailed,
	StatusRollingBack, StatusRolledBack, StatusRollbackFailed}

// State is the state file: which steps of which spec have run, when, with
// what outputs. It never holds a secret.
type State struct {
	FormatVersion int       `json:"format_version"`
	Spec          StateSpec `json:"spec"`
	Serial        int64     `json:"serial"` // incremented by every write
	// Next says how to go on when the last run stopped short (a failed step,
	// a gate, an interrupt); empty when it completed.
	Next  string       `json:"next,omitempty"`
	Steps []*StepState `json:"steps"`
	// CleanedUp is set by `pgshift cleanup` once it has dropped the
	// replication objects: the steps' records no longer describe live
	// objects, so apply and rollback refuse this state.
	CleanedUp *CleanupRecord `json:"cleaned_up,omitempty"`
}

// StateSpec names the spec a state belongs to.
type StateSpec struct {
	Name string `json:"name"`
	Hash string `json:"hash"`
}

// StepState is one step's checkpoint.
type StepState struct {
	ID         string            `json:"id"`
	Status     Status            `json:"status"`
	Attempts   int               `json:"attempts,omitempty"`
	StartedAt  *time.Time        `json:"started_at,omitempty"`
	FinishedAt *time.Time        `json:"finished_at,omitempty"`
	Error      string            `json:"error,omitempty"`
	Note       string            `json:"note,omitempty"`
	Outputs    map[string]string `json:"outputs,omitempty"`
}

// Step returns a step's checkpoint, or nil.
func (s *State) Step(id string) *StepState {
	for _, st := range s.Steps {
		if st.ID == id {
			return st
		}
	}
	return nil
}

// Touched says whether the state holds live work: a step that ran and was
// not rolled back since. A fully rolled-back state may take another spec.
func (s *State) Touched() bool {
	for _, st := range s.Steps {
		if needsRollback(st.Status) {
			return true
		}
	}
	return false
}

func (s *State) clone() *State {
	data, _ := json.Marshal(s)
	var c State
	_ = json.Unmarshal(data, &c)
	return &c
}

// SeedOutputs gives env the outputs checkpointed in a state, so that steps
// observing or reporting see what earlier runs recorded. A state of another
// spec is ignored.
func SeedOutputs(env *Env, st *State) {
	if st == nil || st.Spec.Name != env.Spec.Name {
		return
	}
	for _, c := range st.Steps {
		if len(c.Outputs) > 0 {
			env.LoadOutputs(c.ID, c.Outputs)
		}
	}
}

// ReadState reads a state without locking it (writes are atomic, so a
// reader always sees a whole state). path is a file or a postgres location
// (state_backend.go). None stored is os.ErrNotExist.
func ReadState(path string) (*State, error) {
	b, err := backendOf(path)
	if err != nil {
		return nil, err
	}
	return b.read()
}

func readStateFile(path string) (*State, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return decodeState("state file "+path, data)
}

// check refuses what pgshift never writes: a state without a spec name, a
// step without an ID or with an unknown status, a step listed twice.
func (s *State) check() error {
	if s.Spec.Name == "" {
		return fmt.Errorf("names no spec (spec.name is empty)")
	}
	seen := map[string]bool{}
	for i, c := range s.Steps {
		switch {
		case c == nil || c.ID == "":
			return fmt.Errorf("has a step without an id (steps[%d])", i)
		case seen[c.ID]:
			return fmt.Errorf("lists step %s twice", c.ID)
		}
		seen[c.ID] = true
		switch c.Status {
		case "", StatusPending, StatusRunning, StatusDone, StatusFailed, StatusUpstreamFailed,
			StatusRollingBack, StatusRolledBack, StatusRollbackFailed:
		default:
			return fmt.Errorf("gives step %s the status %q", c.ID, c.Status)
		}
	}
	return nil
}

// SpecChangedError is returned when a state holds progress made under a
// spec whose hash differs from the one given now.
type SpecChangedError struct {
	Path, Name, Was, Now string
	Operation            string // "apply" or "rollback": the way out differs
}

func (e *SpecChangedError) Error() string {
	msg := fmt.Sprintf("%s holds progress of spec %q with hash %s, but the spec now hashes to %s: "+
		"the spec changed after steps ran under it (comments and formatting do not count; values do, "+
		"variables given with --var included). ", StateWhere(e.Path), e.Name, shortHash(e.Was), shortHash(e.Now))
	if e.Operation == "rollback" {
		return msg + "Roll back with the spec (and variables) the steps ran under, or pass --accept-spec-change " +
			"to undo them with this spec's values"
	}
	return msg + "Revert the change, or pass --accept-spec-change to keep the steps already done and go on with the new spec, " +
		"or run `pgshift rollback` with the old spec and start again"
}

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// StateOptions opens a state for a run.
type StateOptions struct {
	Operation        string        // apply, rollback: recorded in the lock
	LockTimeout      time.Duration // how long to wait for another run's lock
	AcceptSpecChange bool          // keep progress made under a spec with another hash
}

// StateStore is a locked state open for a run. Every Update is written
// atomically before it returns: for a file, temp file in the same folder,
// fsync, rename, fsync of the folder, mode 0600; for the postgres backend,
// one UPDATE guarded by the previous serial, on the connection holding the
// lock.
type StateStore struct {
	path  string
	file  fileBackend // the file backend, when lock.pg is nil
	lock  *Lock
	state *State
	mu    chan struct{} // a one-slot semaphore: updates are serialized
}

// OpenState locks the state file at path, reads it (or starts a new one),
// checks it belongs to spec, and lists every step of g (missing ones as
// pending) in g's order.
func OpenState(path string, sp *spec.Spec, g *Graph, opts StateOptions) (*StateStore, error) {
	b, err := backendOf(path)
	if err != nil {
		return nil, err
	}
	lock, err := b.lock(opts.Operation, opts.LockTimeout)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			lock.Release()
		}
	}()
	var st *State
	if lock.pg != nil {
		st, err = lock.pg.read()
	} else {
		// Temp files a killed run left behind: the lock is held, so no
		// live writer owns them.
		atomicfile.RemoveStale(path)
		st, err = readStateFile(path)
	}

	hash := sp.Hash()
	switch {
	case errors.Is(err, os.ErrNotExist):
		st = &State{FormatVersion: StateFormatVersion, Spec: StateSpec{Name: sp.Name, Hash: hash}}
	case err != nil:
		return nil, err
	case st.Spec.Name != sp.Name:
		return nil, fmt.Errorf("%s belongs to spec %q, not %q: pass --state with another path for this spec", b.where(), st.Spec.Name, sp.Name)
	case st.CleanedUp != nil && st.CleanedUp.Refuses(opts.Operation):
		return nil, &CleanedUpError{Path: path, Record: *st.CleanedUp, Operation: opts.Operation}
	case st.Spec.Hash != hash:
		if st.Touched() && !opts.AcceptSpecChange {
			return nil, &SpecChangedError{Path: path, Name: sp.Name, Was: st.Spec.Hash, Now: hash, Operation: opts.Operation}
		}
		st.Spec.Hash = hash
	}
	st.Steps = syncSteps(st.Steps, g)

	s := &StateStore{path: path, file: fileBackend{path: path}, lock: lock, state: st, mu: make(chan struct{}, 1)}
	if err := s.Update(func(*State) {}); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

// syncSteps orders checkpoints as the graph does, adding missing steps as
// pending; checkpoints of steps no longer in the graph stay, at the end.
func syncSteps(old []*StepState, g *Graph) []*StepState {
	byID := map[string]*StepState{}
	for _, st := range old {
		byID[st.ID] = st
	}
	var out []*StepState
	for _, id := range g.Order() {
		st := byID[id]
		if st == nil {
			st = &StepState{ID: id, Status: StatusPending}
		}
		delete(byID, id)
		out = append(out, st)
	}
	var rest []string
	for id := range byID {
		rest = append(rest, id)
	}
	sort.Strings(rest)
	for _, id := range rest {
		out = append(out, byID[id])
	}
	return out
}

// Path is the state's location: a file path or a postgres location.
func (s *StateStore) Path() string { return s.path }

// Snapshot is a deep copy of the current state.
func (s *StateStore) Snapshot() *State {
	s.mu <- struct{}{}
	defer func() { <-s.mu }()
	return s.state.clone()
}

// Update applies fn to the state and writes it durably before returning.
// On a write error the in-memory state keeps the change, and the error is
// returned: the caller must stop, since the file no longer tells the truth.
// The serial, though, stays the stored one's: it counts writes that were
// made, so that a later write (a retry, the run's last checkpoint) is
// guarded by the serial actually stored and is not taken for a lost race.
func (s *StateStore) Update(fn func(*State)) error {
	s.mu <- struct{}{}
	defer func() { <-s.mu }()
	fn(s.state)
	old := s.state.Serial
	s.state.Serial++
	var err error
	if s.lock.pg != nil {
		err = s.lock.pg.write(s.state, old)
	} else {
		err = s.file.write(s.state)
	}
	if err != nil {
		s.state.Serial = old
	}
	return err
}

// UpdateStep applies fn to one step's checkpoint and writes the state.
func (s *StateStore) UpdateStep(id string, fn func(*StepState)) error {
	return s.Update(func(st *State) {
		c := st.Step(id)
		if c == nil {
			c = &StepState{ID: id, Status: StatusPending}
			st.Steps = append(st.Steps, c)
		}
		fn(c)
	})
}

// Close releases the lock.
func (s *StateStore) Close() error { return s.lock.Release() }

// writeStateAtomic replaces path with data so that a crash at any instant
// leaves either the old file or the new one, never a mix; mode 0600.
func writeStateAtomic(path string, data []byte) error {
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return fmt.Errorf("write state %s: %w", path, err)
	}
	return nil
}

// marshalState is the state file's text.
func marshalState(st *State) []byte {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		// Every field of State marshals; this cannot happen.
		panic("engine: marshal state: " + err.Error())
	}
	return append(data, '\n')
}

// canonicalJSON is the stable JSON used for hashing and fingerprints.
func canonicalJSON(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return buf.Bytes()
}
