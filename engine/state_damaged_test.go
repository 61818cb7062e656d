package engine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDamagedStateFiles: a truncated, hand-edited or foreign state file is
// refused by OpenState with a message naming the file and the fault, never
// a panic, and the file is left as it was.
func TestDamagedStateFiles(t *testing.T) {
	r := &recorder{}
	g := mustCompile(t, r.step("a"), r.step("b", "a"))
	for _, tc := range []struct {
		name, content, want string
	}{
		{"truncated", `{"format_version": 1, "spec": {"name": "orders"`, "is not valid JSON"},
		{"empty", ``, "is not valid JSON"},
		{"another spec", `{"format_version": 1, "spec": {"name": "billing", "hash": "x"}, "steps": []}`, `belongs to spec "billing"`},
		{"no spec name", `{"format_version": 1, "spec": {}, "steps": []}`, "names no spec"},
		{"unknown status", `{"format_version": 1, "spec": {"name": "orders"}, "steps": [{"id": "a", "status": "finished"}]}`, `gives step a the status "finished"`},
		{"step twice", `{"format_version": 1, "spec": {"name": "orders"}, "steps": [{"id": "a", "status": "done"}, {"id": "a", "status": "pending"}]}`, "lists step a twice"},
		{"step without id", `{"format_version": 1, "spec": {"name": "orders"}, "steps": [null]}`, "a step without an id"},
		{"future format", `{"format_version": 7, "spec": {"name": "orders"}, "steps": []}`, "format_version 7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "orders.pgshift-state.json")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			st, err := OpenState(path, testSpec(), g, StateOptions{Operation: "apply"})
			if err == nil {
				st.Close()
				t.Fatalf("a %s state file was accepted", tc.name)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q, want one naming %s and %q", err, path, tc.want)
			}
			if got, _ := os.ReadFile(path); string(got) != tc.content {
				t.Errorf("the refused state file was changed:\n%s", got)
			}
		})
	}
}
