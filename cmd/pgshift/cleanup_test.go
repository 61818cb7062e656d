package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps"
	"github.com/pgshift/pgshift/steps/stepid"
)

// runCleanupCmd runs `pgshift cleanup` with the given stdin, as a user would.
func runCleanupCmd(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRootCommand()
	var out, errOut bytes.Buffer
	root.SetArgs(append([]string{"cleanup"}, args...))
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(stdin))
	err = root.Execute()
	return out.String(), errOut.String(), err
}

func TestCleanupCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
	cs := pgtest.StartClusters(t, []int{13, 16})
	blue, green := cs[0], cs[1]
	for _, c := range cs {
		c.CreateDatabase(t, "shop")
		c.Exec(t, "shop", "CREATE TABLE items (id int PRIMARY KEY, name text)")
	}
	blue.Exec(t, "shop", "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 100) g")
	specPath := filepath.Join(t.TempDir(), "shop.yaml")
	sp := "version: 1\nname: shop-pg16\nsource:\n  dsn: \"" + blue.DSN("shop") + "\"\ntarget:\n  dsn: \"" + green.DSN("shop") +
		"\"\ncutover:\n  switch:\n    exec: {switch: [\"true\"], back: [\"true\"]}\n"
	if err := os.WriteFile(specPath, []byte(sp), 0o600); err != nil {
		t.Fatal(err)
	}

	// Build the forward objects with the real steps.
	specs, err := spec.LoadFile(specPath, spec.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	env := engine.NewEnv(specs[0], nil)
	defer env.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	byID := map[string]engine.Step{}
	for _, s := range steps.For(specs[0]) {
		byID[s.ID()] = s
	}
	for _, id := range []string{stepid.Publication, stepid.Slot, stepid.Subscription} {
		if err := byID[id].Apply(ctx, env.ForStep(id)); err != nil {
			t.Fatalf("apply %s: %v", id, err)
		}
	}
	objects := func() string {
		return blue.Scalar(t, "shop", "SELECT (SELECT count(*) FROM pg_publication) || '/' || (SELECT count(*) FROM pg_replication_slots)") +
			" " + green.Scalar(t, "shop", "SELECT count(*) FROM pg_subscription")
	}
	// Until the copy is done a table-sync slot sits beside ours on blue.
	if err := byID[stepid.Catchup].Apply(ctx, env.ForStep(stepid.Catchup)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); objects() != "1/1 1"; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("objects before cleanup: %s", objects())
		}
	}

	// The state lives away from the spec (--state): what the steps recorded
	// must still reach cleanup, which drops a slot only when pgshift made it.
	statePath := filepath.Join(t.TempDir(), "elsewhere.pgshift-state.json")

	t.Run("lists the drops and drops nothing without a yes", func(t *testing.T) {
		out, _, err := runCleanupCmd(t, "no\n", "-f", specPath)
		t.Logf("pgshift cleanup output:\n%s", out)
		if err == nil {
			t.Errorf("a declined cleanup must exit non-zero")
		}
		for _, want := range []string{
			"- green  subscription  pgshift_shop_pg16",
			"- blue   slot          pgshift_shop_pg16",
			"- blue   publication   pgshift_shop_pg16",
			"Cleanup: 3 to destroy.",
			"Only 'yes' will be accepted",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if got := objects(); got != "1/1 1" {
			t.Errorf("declined cleanup dropped something: %s", got)
		}
	})

	t.Run("answering yes drops everything and records it in the state", func(t *testing.T) {
		// A state as apply leaves it at the cutover gate.
		g, err := compileSpec(specs[0])
		if err != nil {
			t.Fatal(err)
		}
		store, err := engine.OpenState(statePath, specs[0], g, engine.StateOptions{Operation: "apply"})
		if err != nil {
			t.Fatal(err)
		}
		// The steps this test applied by hand, recorded as apply would.
		for _, id := range []string{stepid.Publication, stepid.Slot, stepid.Subscription, stepid.Catchup} {
			store.UpdateStep(id, func(c *engine.StepState) { c.Status, c.Outputs = engine.StatusDone, env.Outputs(id) })
		}
		store.Close()

		out, stderr, err := runCleanupCmd(t, "yes\n", "-f", specPath, "--state", statePath)
		if err != nil {
			t.Fatalf("cleanup: %v\n%s\n%s", err, out, stderr)
		}
		if !strings.Contains(out, "Cleanup complete: 3 destroyed.") || !strings.Contains(out, "after cleanup, apply cannot resume it") {
			t.Errorf("output:\n%s", out)
		}
		if got := objects(); got != "0/0 0" {
			t.Errorf("objects after cleanup: %s", got)
		}
		st, err := engine.ReadState(statePath)
		if err != nil {
			t.Fatal(err)
		}
		if st.CleanedUp == nil || len(st.CleanedUp.Dropped) != 3 || st.CleanedUp.AfterCutover {
			t.Fatalf("state after cleanup: %+v, want the 3 drops recorded, before any cutover", st.CleanedUp)
		}
		status, _, code := runCLI(t, "", "status", "-f", specPath, "--offline", "--state", statePath)
		if code != exitOK || !strings.Contains(status, "Cleaned up at ") || !strings.Contains(status, "3 replication objects dropped (subscription pgshift_shop_pg16 on green") {
			t.Errorf("status after cleanup: exit %d\n%s", code, status)
		}
		// The done steps are no longer live: apply must not take them for done.
		if _, stderr, code := runCLI(t, "", "apply", "-f", specPath, "--state", statePath); code != exitError || !strings.Contains(stderr, "pgshift cleanup dropped this upgrade's replication objects") ||
			!strings.Contains(stderr, "pgshift rollback first") {
			t.Errorf("apply after cleanup: exit %d, want 1 with the reason and the way on\n%s", code, stderr)
		}
		// Before a cutover, rollback undoes the rest and lifts the mark.
		if out, stderr, code := runCLI(t, "", "rollback", "-f", specPath, "--yes", "--state", statePath); code != exitOK {
			t.Fatalf("rollback after cleanup: exit %d\n%s\n%s", code, out, stderr)
		}
		if st, err := engine.ReadState(statePath); err != nil || st.CleanedUp != nil {
			t.Fatalf("after a complete rollback the cleanup mark must be gone: %+v, %v", st, err)
		}
	})

	t.Run("a second cleanup is a no-op", func(t *testing.T) {
		out, _, err := runCleanupCmd(t, "", "-f", specPath, "--yes")
		if err != nil {
			t.Fatalf("cleanup: %v\n%s", err, out)
		}
		if !strings.Contains(out, "No changes.") || strings.Contains(out, "  - ") {
			t.Errorf("output:\n%s", out)
		}
	})

	t.Run("with blue gone, green's subscription still goes and blue is named", func(t *testing.T) {
		for _, id := range []string{stepid.Publication, stepid.Slot} {
			if err := byID[id].Apply(ctx, env.ForStep(id)); err != nil {
				t.Fatalf("apply %s: %v", id, err)
			}
		}
		green.Exec(t, "shop", "TRUNCATE items")
		if err := byID[stepid.Subscription].Apply(ctx, env.ForStep(stepid.Subscription)); err != nil {
			t.Fatal(err)
		}
		env.Close() // its pool to blue would outlive the server
		blue.Stop(t)
		out, stderr, err := runCleanupCmd(t, "", "-f", specPath, "--yes", "--state", statePath)
		// Blue's slot and publication may still exist: the run is incomplete
		// and says to run it again, with exit status 1.
		var ec *exitCodeError
		if !errors.As(err, &ec) || ec.code != exitError || !strings.Contains(err.Error(), "cleanup incomplete") || !strings.Contains(err.Error(), "once blue is reachable") {
			t.Fatalf("cleanup with blue gone: %v (%T), want exit 1 saying it is incomplete until blue is back\n%s\n%s", err, err, out, stderr)
		}
		if !strings.Contains(out, "- green  subscription") || !strings.Contains(out, "blue not inspected") ||
			strings.Contains(out, "- blue") {
			t.Errorf("output:\n%s", out)
		}
		if n := green.Scalar(t, "shop", "SELECT count(*) FROM pg_subscription"); n != "0" {
			t.Errorf("green's subscription survived: %s", n)
		}
		// A partial cleanup is recorded too: apply must not trust the state.
		if st, err := engine.ReadState(statePath); err != nil || st.CleanedUp == nil || !slices.Contains(st.CleanedUp.Dropped, "subscription pgshift_shop_pg16 on green") {
			t.Errorf("the partial cleanup is not recorded in the state: %+v, %v", st, err)
		}
	})
}
