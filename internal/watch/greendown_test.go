package watch

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/pgtest"
)

// TestSyncSlotWALWhileGreenDown: a table-sync slot on blue that holds WAL
// keeps its max_retained_wal warning, and its retained WAL is still read,
// while green is stopped; a watch that never reached green says it cannot
// tell the table-sync slots apart instead of reporting them fine.
func TestSyncSlotWALWhileGreenDown(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
	cs := pgtest.StartClusters(t, []int{13, 17})
	blue, green := cs[0], cs[1]
	for _, c := range cs {
		c.CreateDatabase(t, "app")
		c.Exec(t, "app", "CREATE TABLE public.t (id bigint PRIMARY KEY, note text)")
	}
	blue.Exec(t, "app", "CREATE PUBLICATION pub FOR TABLE public.t")
	blue.Exec(t, "app", "SELECT pg_create_logical_replication_slot('pgshift_main', 'pgoutput')")
	green.Exec(t, "app", fmt.Sprintf(`CREATE SUBSCRIPTION sub CONNECTION %s PUBLICATION pub
		WITH (create_slot = false, slot_name = 'pgshift_main', copy_data = false)`, pg.QuoteLiteral(blue.DSN("app"))))

	// The slot a table-sync worker of sub would hold for public.t, made by
	// hand so that nothing consumes it: pg_<subscription oid>_sync_<relid>_<system id>.
	syncSlot := "pg_" + green.Scalar(t, "app", "SELECT oid FROM pg_subscription WHERE subname = 'sub'") +
		"_sync_" + green.Scalar(t, "app", "SELECT 'public.t'::regclass::oid") +
		"_" + green.Scalar(t, "app", "SELECT system_identifier FROM pg_control_system()")
	ctx := context.Background()
	if _, err := blue.Conn(t, "app").Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", syncSlot); err != nil {
		t.Fatal(err)
	}
	// About 8 MiB of WAL the sync slot keeps.
	blue.Exec(t, "app", `INSERT INTO public.t SELECT i, repeat('w', 200) FROM generate_series(1, 30000) i`)

	pool := func(c *pgtest.Cluster) *pgxpool.Pool {
		p, err := pgxpool.New(ctx, c.DSN("app"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		return p
	}
	const limit = 1 << 20
	type watchRig struct {
		w    *watcher
		logs *bytes.Buffer
	}
	newRig := func(greenQ Querier) watchRig {
		bp := pool(blue)
		var logs bytes.Buffer
		w := newWatcher(Options{
			Collector: &Collector{
				Blue:  func(context.Context) (pg.Querier, error) { return bp, nil },
				Green: greenQ, Slot: "pgshift_main", Subscription: "sub", CutoverLag: 16 << 20,
			},
			Limits: Limits{MaxLag: 1 << 30, MaxRetainedWAL: limit, CutoverLag: 16 << 20},
			Log:    hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info}),
		})
		return watchRig{w, &logs}
	}
	collect := func(r watchRig) *Sample {
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		s := r.w.o.Collector.Collect(cctx)
		r.w.observe(s)
		return s
	}
	// Two ways green goes down: the pool the CLI keeps, opened while green
	// was up, and a querier that fails to connect.
	kept := pool(green)
	reconnecting := pool(green)
	rigs := map[string]watchRig{
		"pool opened before": newRig(func(context.Context) (pg.Querier, error) { return kept, nil }),
		"connect fails": newRig(func(ctx context.Context) (pg.Querier, error) {
			if err := reconnecting.Ping(ctx); err != nil {
				return nil, fmt.Errorf("green: connect: %w", err)
			}
			return reconnecting, nil
		}),
	}
	warning := fmt.Sprintf("of WAL for replication slot %q, over watch.max_retained_wal", syncSlot)
	for name, r := range rigs {
		if s := collect(r); s.Err != nil || r.logs.String() == "" || !strings.Contains(r.logs.String(), warning) {
			t.Fatalf("%s, green up: the sync slot's warning is missing (collection error %v):\n%s", name, s.Err, r.logs)
		}
	}

	green.Stop(t)
	for name, r := range rigs {
		for range 2 {
			s := collect(r)
			if s.GreenErr == nil || !s.SlotsRead || s.SyncSlotsUnknown {
				t.Errorf("%s, green down: green error %v, slots read %t, sync slots unknown %t", name, s.GreenErr, s.SlotsRead, s.SyncSlotsUnknown)
				continue
			}
			if sl := s.MainSlot(syncSlot); sl == nil || !sl.Exists || sl.RetainedBytes <= limit {
				t.Errorf("%s, green down: the sync slot on blue read as %+v, want it retaining over %d bytes", name, sl, limit)
			}
		}
		if crossed := r.w.thresholds.Crossed(); !strings.Contains(strings.Join(crossed, " "), keyMaxRetained+syncSlot) {
			t.Errorf("%s, green down: the sync slot's warning was cleared (crossed: %q):\n%s", name, crossed, r.logs)
		}
		out := r.logs.String()
		if strings.Count(out, warning) != 1 || strings.Contains(out, "slot gone: it retains no WAL") || strings.Contains(out, "back under watch.max_retained_wal") {
			t.Errorf("%s, green down: want the sync slot's warning once and no recovery:\n%s", name, out)
		}
		if ok, reason := r.w.healthz(); ok || !strings.Contains(reason, "green") {
			t.Errorf("%s, green down: healthz %t %q, want unhealthy naming green", name, ok, reason)
		}
	}

	// Watch started while green is down: it never learnt the OID, and says
	// the table-sync slots are unknown, not fine.
	late := newRig(func(ctx context.Context) (pg.Querier, error) {
		return nil, fmt.Errorf("green: connect: refused")
	})
	s := collect(late)
	if !s.SlotsRead || !s.SyncSlotsUnknown {
		t.Fatalf("watch started with green down: slots read %t, sync slots unknown %t", s.SlotsRead, s.SyncSlotsUnknown)
	}
	if sl := s.MainSlot(syncSlot); sl != nil {
		t.Errorf("watch started with green down read %+v as a slot of the subscription without knowing its OID", sl)
	}
	if out := late.logs.String(); !strings.Contains(out, `cannot tell which slots on blue are the table-sync slots of subscription "sub"`) {
		t.Errorf("watch started with green down does not say the table-sync slots are unknown:\n%s", out)
	}
}
