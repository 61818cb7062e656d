package steps

import (
	"strings"
	"testing"

	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/words"
	"github.com/pgshift/pgshift/plans"
)

func TestFindingsChange(t *testing.T) {
	f := &findings{}
	f.fact("wal_level=logical")
	f.fact("%d of %d slots free", 2, 10)
	if c := f.change(); c.Action != plans.ActionNone || c.Summary != "wal_level=logical, 2 of 10 slots free" {
		t.Errorf("no findings: %s %q", c.Action, c.Summary)
	}
	f.warn("few slots")
	if c := f.change(); c.Action != plans.ActionWarning || len(c.Warnings) != 1 {
		t.Errorf("a warning: %s %q", c.Action, c.Warnings)
	}
	if err := f.err("x"); err != nil {
		t.Errorf("a warning fails apply: %v", err)
	}
	f.check("ok one", true, "fine", "unused")
	f.check("wal", false, "wal_level=replica", "blue has wal_level=replica: run ALTER SYSTEM SET wal_level = logical;")
	c := f.change()
	if c.Action != plans.ActionBlocker || len(c.Blockers) != 1 {
		t.Fatalf("a blocker: %s %q", c.Action, c.Blockers)
	}
	// The failed precondition carries the fix, for apply's refusal.
	if f.checks[1].OK || !strings.Contains(f.checks[1].Detail, "ALTER SYSTEM") || f.checks[0].Detail != "fine" {
		t.Errorf("preconditions: %+v", f.checks)
	}
	// Check lists what holds; the failure shows once, as the blocker.
	if pcs := f.passing(); len(pcs) != 1 || pcs[0].Name != "ok one" {
		t.Errorf("passing preconditions: %+v", pcs)
	}
	if err := f.err("preflight.source"); err == nil || !strings.Contains(err.Error(), "ALTER SYSTEM SET wal_level = logical") {
		t.Errorf("apply error: %v", err)
	}
}

func TestListNamesAndDisplayName(t *testing.T) {
	var names []string
	for i := 0; i < 12; i++ {
		names = append(names, "t")
	}
	if got := words.List(names); !strings.HasSuffix(got, "and 2 more") {
		t.Errorf("listNames of 12: %q", got)
	}
	if got := pg.DisplayName("public", "events"); got != "public.events" {
		t.Errorf("displayName plain: %q", got)
	}
	if got := pg.DisplayName("Sales", "odd name"); got != `"Sales"."odd name"` {
		t.Errorf("displayName quoted: %q", got)
	}
}

func TestObjectCountsAndRestoreHint(t *testing.T) {
	c := objectCounts{Tables: 1, Sequences: 13, Functions: 1, Extensions: 2}
	if got := c.String(); got != "1 table, 13 sequences, 1 function, 2 extensions" {
		t.Errorf("counts: %q", got)
	}
	if h := restoreHint(`psql:schema.sql:20: ERROR:  role "app" does not exist`, 17); !strings.Contains(h, "schema.roles") {
		t.Errorf("hint for a missing role: %q", h)
	}
	if h := restoreHint(`ERROR:  extension "adminpack" is not available`, 17); !strings.Contains(h, "DROP EXTENSION adminpack") || strings.Contains(h, "postgresql-17-adminpack") {
		t.Errorf("adminpack on 17: %q, want the drop on blue (it no longer exists)", h)
	}
	if h := restoreHint(`ERROR:  extension "postgis" is not available`, 17); !strings.Contains(h, "postgresql-17-postgis") {
		t.Errorf("postgis on 17: %q, want the package", h)
	}
	if h := restoreHint(`ERROR:  extension "postgis" is not available`, 0); !strings.Contains(h, "install the extension") {
		t.Errorf("hint for a missing extension: %q", h)
	}
}
