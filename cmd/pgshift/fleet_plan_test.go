package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pgshift/pgshift/plans"
)

// TestFleetPlan100Offline: an offline plan of 100 databases takes well
// under 30 s, and in markdown is one comment within GitHub's limit: a row
// per database, folded plans, a line naming the plans left out. --only and
// --index narrow plan too.
func TestFleetPlan100Offline(t *testing.T) {
	inv := filepath.Join(t.TempDir(), "inv100.yaml")
	var b strings.Builder
	for i := range 100 {
		fmt.Fprintf(&b, "- {db: db%03d, host: h%d.internal}\n", i, i%7)
	}
	os.WriteFile(inv, []byte(b.String()), 0o600)
	spec := specs + "valid/fleet.yaml"

	start := time.Now()
	code, out, errOut := runSpecCommand(t, "plan", "--offline", "-f", spec, "--inventory", inv)
	took := time.Since(start)
	t.Logf("plan --offline of 100 databases (text): %s, %d bytes", took, len(out))
	if code != exitOK || strings.Count(out, "pgshift plan: ") != 100 {
		t.Fatalf("text plan: exit %d, %d plans\n%s", code, strings.Count(out, "pgshift plan: "), errOut)
	}
	if took > 30*time.Second {
		t.Errorf("an offline plan of 100 databases took %s, want under 30 s", took)
	}

	start = time.Now()
	code, out, errOut = runSpecCommand(t, "plan", "--offline", "--format", "markdown", "-f", spec, "--inventory", inv)
	t.Logf("plan --offline of 100 databases (markdown): %s, %d characters", time.Since(start), utf8.RuneCountInString(out))
	if code != exitOK {
		t.Fatalf("markdown plan: exit %d\n%s", code, errOut)
	}
	if n := utf8.RuneCountInString(out); n > plans.CommentLimit {
		t.Errorf("the fleet plan takes %d characters, over GitHub's %d", n, plans.CommentLimit)
	}
	if strings.Count(out, "<!--") != 1 || !strings.HasPrefix(out, plans.FleetMarker(inv)) {
		t.Errorf("want one marker, the fleet's, first")
	}
	for i := range 100 {
		if !strings.Contains(out, fmt.Sprintf("| `db%03d-pg17` | 0 | 0 | 0 | ", i)) {
			t.Errorf("no row for db%03d-pg17", i)
		}
	}
	folded := strings.Count(out, "<details>")
	if folded == 0 || folded == 100 || !strings.Contains(out, fmt.Sprintf("> The plans of %d databases are left out", 100-folded)) ||
		!strings.Contains(out, "see one with `pgshift plan -f "+spec+" --inventory "+inv+" --offline --format markdown --only NAME`") {
		t.Errorf("%d plans folded; the line naming the others:\n%s", folded, lineWith(out, "> The plans"))
	}

	code, out, _ = runSpecCommand(t, "plan", "--offline", "--format", "markdown", "-f", spec, "--inventory", inv, "--only", "db042-pg17", "--only", "db007-pg17")
	if code != exitOK || strings.Count(out, "<details>") != 2 || !strings.Contains(out, "### pgshift fleet plan: 2 databases") ||
		strings.Index(out, "`db007-pg17`") > strings.Index(out, "`db042-pg17`") {
		t.Errorf("plan --only twice: exit %d\n%s", code, out)
	}
	t.Setenv(envJobIndex, "99")
	code, out, _ = runSpecCommand(t, "plan", "--offline", "-f", spec, "--inventory", inv)
	if code != exitOK || strings.Count(out, "pgshift plan: ") != 1 || !strings.Contains(out, "pgshift plan: db099-pg17") {
		t.Errorf("plan with %s=99: exit %d\n%.400s", envJobIndex, code, out)
	}
	code, _, errOut = runSpecCommand(t, "plan", "--offline", "-f", spec, "--inventory", inv, "--index", "100")
	if code != exitUsage || !strings.Contains(errOut, "--index 100: the inventory has 100 entries") {
		t.Errorf("plan --index 100: exit %d\n%s", code, errOut)
	}
}

func lineWith(out, prefix string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}
