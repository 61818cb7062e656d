package spec

import (
	"strings"
	"testing"
)

// TestStateBackend: the full spec's state section is read, StatePath is
// the location of its row in the postgres backend (the password only
// named, never held), a spec without one keeps the file beside it, and
// where the state lives does not count in the hash (moving it is not a
// spec change).
func TestStateBackend(t *testing.T) {
	t.Chdir("..")
	s := loadOK(t, specDir+"/valid/full.yaml", LoadOptions{})[0]
	want := StateConfig{Backend: "postgres", DSN: "postgres://pgshift@ops-db.internal:5432/ops?sslmode=require", PasswordEnv: "STATE_PASSWORD", Table: "ops.pgshift_state"}
	if s.State != want {
		t.Fatalf("state %+v, want %+v", s.State, want)
	}
	if got := s.StatePath(); got != "postgres://pgshift@ops-db.internal:5432/ops?sslmode=require&password_env=STATE_PASSWORD&table=ops.pgshift_state#orders-pg17" {
		t.Fatalf("StatePath %q", got)
	}
	hash := s.Hash()
	s.State = StateConfig{Backend: "file", Table: DefaultStateTable}
	if s.Hash() != hash {
		t.Fatal("moving the state changed the spec's hash")
	}
	if got := s.StatePath(); !strings.HasSuffix(got, "valid/orders-pg17.pgshift-state.json") {
		t.Fatalf("file backend StatePath %q", got)
	}

	min := loadOK(t, specDir+"/valid/minimal.yaml", LoadOptions{})[0]
	if min.State.Backend != "file" || min.State.Table != "pgshift_state" || min.State.DSN != "" {
		t.Fatalf("default state %+v", min.State)
	}
	var built Spec
	built.SetDefaults()
	if built.State.Backend != DefaultStateBackend {
		t.Fatalf("SetDefaults state %+v", built.State)
	}
}
