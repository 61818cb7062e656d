package steps

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/plans"
	"github.com/pgshift/pgshift/spec"
)

// planProbe is a step in place (its Observe finds nothing to do), whose
// preconditions are those of the step it wraps: BuildPlan checks them as it
// would the real step's once everything before it is in place.
type planProbe struct{ engine.Step }

func (planProbe) Needs() []string { return nil }
func (planProbe) Observe(context.Context, *engine.Env) (plans.Change, error) {
	return plans.Change{Action: plans.ActionNone, Summary: "in place"}, nil
}

// TestPlanDoesNotWaitForAnOutage: with green down (blue up), a plan checks
// the preconditions of replication.catchup and verify at once and reports
// green unreachable, where apply waits up to replication.outage_timeout
// (5m here) for it to come back.
func TestPlanDoesNotWaitForAnOutage(t *testing.T) {
	requireIntegration(t)
	cs := pgtest.StartClusters(t, []int{13, 17})
	blue, green := cs[0], cs[1]
	blue.CreateDatabase(t, "app")
	green.Stop(t)
	s := &spec.Spec{Name: "plan-outage",
		Source: spec.Endpoint{DSN: blue.DSN("app")},
		Target: spec.Endpoint{DSN: green.DSN("app")},
	}
	s.SetDefaults()
	if s.Replication.Outage() != 5*time.Minute {
		t.Fatalf("setup: replication.outage_timeout %s, want the default 5m", s.Replication.Outage())
	}
	versions := func(context.Context, *engine.Env) (string, string, error) { return "13", "17", nil }
	for _, step := range []engine.Step{&catchupStep{spec: s}, &verifyStep{spec: s}} {
		t.Run(step.ID(), func(t *testing.T) {
			logs := &pgtest.LogBuffer{}
			env := engine.NewEnv(s, hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug}))
			t.Cleanup(env.Close)
			g, err := engine.Compile([]engine.Step{planProbe{step}})
			if err != nil {
				t.Fatal(err)
			}
			// Without a bound of its own, a plan that waits would run into
			// this deadline, and say so.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			start := time.Now()
			p, err := engine.BuildPlan(ctx, g, env, engine.PlanOptions{Versions: versions})
			took := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			var failed []string
			for _, pc := range p.Steps[0].Preconditions {
				if !pc.OK {
					failed = append(failed, pc.Name+": "+pc.Detail)
				}
			}
			t.Logf("plan took %s; failed preconditions: %q", took.Round(time.Millisecond), failed)
			if took > 20*time.Second {
				t.Errorf("the plan took %s with green down: it waited for green", took.Round(time.Second))
			}
			if len(failed) == 0 || !strings.Contains(strings.Join(failed, "\n"), "connect: connection refused") {
				t.Errorf("the plan's preconditions with green down: %q; want one failing with green's connection error", failed)
			}
			if strings.Contains(logs.String(), "waiting up to") {
				t.Errorf("the plan logged a wait for green:\n%s", logs)
			}
		})
	}
}
