package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/plans"
)

// TestLivePlanApplyStatusRollback drives the real steps through the CLI on a
// real blue 15 / green 17 pair: plan shows both versions and what each step
// would do, a saved plan applies up to the cutover gate (exit 0, rows
// replicated), status reports live facts, a second plan has nothing left to
// create before the cutover, and rollback undoes it all.
func TestLivePlanApplyStatusRollback(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
	cs := pgtest.StartClusters(t, []int{15, 17})
	blue, green := cs[0], cs[1]
	blue.CreateDatabase(t, "app")
	green.CreateDatabase(t, "app")
	blue.Exec(t, "app", `CREATE TABLE public.orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note text);
		INSERT INTO public.orders (note) SELECT 'order ' || g FROM generate_series(1, 500) g`)

	dir := t.TempDir()
	spec := filepath.Join(dir, "live.yaml")
	os.WriteFile(spec, []byte(fmt.Sprintf(`version: 1
name: live-app
source:
  dsn: %s
  password_env: PGSHIFT_LIVE_BLUE_PASSWORD
  # green reaches blue by another name than pgshift does
  subscription_dsn: "host=blue.seen-from-green hostaddr=127.0.0.1 port=%d dbname=app user=postgres"
target:
  dsn: %s
cutover:
  switch:
    exec:
      switch: ["true"]
      back: ["true"]
`, blue.DSN("app"), blue.Port, green.DSN("app"))), 0o600)

	// The clusters trust loopback, so the password is sent and ignored: it
	// must not show in any output, plan or state file.
	const secret = "s3cret-blue-pw-7f1c"
	t.Setenv("PGSHIFT_LIVE_BLUE_PASSWORD", secret)
	var seen strings.Builder
	defer func() {
		for _, f := range []string{"plan.json", "live-app.pgshift-state.json"} {
			data, _ := os.ReadFile(filepath.Join(dir, f))
			seen.Write(data)
		}
		if strings.Contains(seen.String(), secret) {
			t.Error("the password shows in an output, the saved plan or the state file")
		}
	}()

	out, stderr, code := runCLI(t, "", "plan", "-f", spec, "--format", "json")
	seen.WriteString(out + stderr)
	if code != exitOK {
		t.Fatalf("plan: exit %d\n%s\n%s", code, out, stderr)
	}
	var p plans.Plan
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatal(err)
	}
	if p.Blue.Version != blue.Version || p.Green.Version != green.Version || p.Fingerprint == "" {
		t.Fatalf("plan header: blue %q green %q (want %s, %s)", p.Blue.Version, p.Green.Version, blue.Version, green.Version)
	}
	for _, s := range p.Steps {
		if s.Action == plans.ActionBlocker || strings.HasPrefix(s.Summary, "cannot inspect") {
			t.Fatalf("step %s: %s %s %v", s.ID, s.Action, s.Summary, s.Blockers)
		}
	}
	text, stderr, _ := runCLI(t, "", "plan", "-f", spec, "--no-color")
	seen.WriteString(text + stderr)
	if !strings.Contains(text, "pgshift plan: live-app   blue PostgreSQL "+blue.Version+" -> green PostgreSQL "+green.Version) ||
		!strings.Contains(text, "  + source.publication") {
		t.Fatalf("text plan:\n%s", text)
	}

	t.Logf("live plan:\n%s", text)

	planFile := filepath.Join(dir, "plan.json")
	if _, stderr, code := runCLI(t, "", "plan", "-f", spec, "-out", planFile); code != exitOK {
		t.Fatalf("plan -out: %s", stderr)
	}
	out, stderr, code = runCLI(t, "", "apply", planFile, "--log-level", "debug")
	seen.WriteString(out + stderr)
	if code != exitOK || !strings.Contains(out, "Apply stopped before cutover: approval needed") || !strings.Contains(out, "--approve-cutover") {
		t.Fatalf("apply: exit %d\n%s\n%s", code, out, stderr)
	}
	if n := green.Scalar(t, "app", "SELECT count(*) FROM public.orders"); n != "500" {
		t.Fatalf("green holds %s rows, want 500", n)
	}
	if ci := green.Scalar(t, "app", "SELECT subconninfo FROM pg_subscription"); !strings.HasPrefix(ci, "host=blue.seen-from-green hostaddr=127.0.0.1 ") {
		t.Fatalf("green's subscription connects with %q, want source.subscription_dsn", strings.ReplaceAll(ci, secret, "<secret>"))
	}
	st, err := engine.ReadState(filepath.Join(dir, "live-app.pgshift-state.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range st.Steps {
		want := engine.StatusDone
		if c.ID == "cutover" {
			want = engine.StatusPending
		}
		if c.Status != want {
			t.Fatalf("%s is %s (%s), want %s", c.ID, c.Status, c.Error, want)
		}
	}

	out, stderr, code = runCLI(t, "", "status", "-f", spec)
	seen.WriteString(out + stderr)
	if code != exitOK || !strings.Contains(out, "cutover              pending") || !strings.Contains(out, "Live facts:") {
		t.Fatalf("status: exit %d\n%s", code, out)
	}

	t.Logf("status:\n%s", out)

	// Applied: the same saved plan is now stale.
	if _, stderr, code := runCLI(t, "", "apply", planFile); code != exitError || !strings.Contains(stderr, "is stale: blue or green has changed") {
		t.Fatalf("stale plan applied again: exit %d %s", code, stderr)
	}

	out, stderr, code = runCLI(t, "", "rollback", "-f", spec, "--yes", "--log-level", "debug")
	seen.WriteString(out + stderr)
	if code != exitOK || !strings.Contains(out, fmt.Sprintf("Rollback complete: %d rolled back.", len(st.Steps)-1)) {
		t.Fatalf("rollback: exit %d\n%s\n%s", code, out, stderr)
	}
	if n := blue.Scalar(t, "app", "SELECT count(*) FROM pg_replication_slots"); n != "0" {
		t.Fatalf("blue keeps %s replication slots after rollback", n)
	}
	if n := green.Scalar(t, "app", "SELECT count(*) FROM pg_subscription"); n != "0" {
		t.Fatalf("green keeps %s subscriptions after rollback", n)
	}
}
