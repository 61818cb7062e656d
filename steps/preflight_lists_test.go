package steps

import (
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/plans"
	"github.com/pgshift/pgshift/spec"
)

// TestReplicaIdentityBlockerListsEveryTable: twelve tables without a key
// are all named by preflight.source's blocker (the JSON plan carries it as
// is); only the text rendering folds the list after ten.
func TestReplicaIdentityBlockerListsEveryTable(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
	cs := pgtest.StartClusters(t, []int{13, 17})
	blue, green := cs[0], cs[1]
	var ddl strings.Builder
	for i := 1; i <= 12; i++ {
		fmt.Fprintf(&ddl, "CREATE TABLE public.keyless_%02d (v int);\n", i)
	}
	blue.Exec(t, "postgres", ddl.String())
	sp := &spec.Spec{Name: "lists", Source: spec.Endpoint{DSN: blue.DSN("postgres")}, Target: spec.Endpoint{DSN: green.DSN("postgres")}}
	sp.SetDefaults()
	env := engine.NewEnv(sp, hclog.NewNullLogger())
	t.Cleanup(env.Close)
	c := observeIn(t, env, inspecting{preflightSource{}})
	blocker := findingWith(c.Blockers, "no primary key or replica identity")
	if blocker == "" {
		t.Fatalf("no replica-identity blocker: %q", c.Blockers)
	}
	for i := 1; i <= 12; i++ {
		if name := fmt.Sprintf("public.keyless_%02d", i); !strings.Contains(blocker, name) {
			t.Errorf("the blocker does not name %s:\n%s", name, blocker)
		}
	}
	text := plans.FoldLists(blocker)
	if !strings.Contains(text, "and 2 more") || strings.Contains(text, "keyless_12") {
		t.Errorf("the text form should fold after ten tables:\n%s", text)
	}
}
