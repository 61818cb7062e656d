package verify_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/internal/rowcompare"
	"github.com/pgshift/pgshift/steps/verify"
)

// TestVerifyTableWithoutColumns: a table with no columns (CREATE TABLE t ())
// replicates its rows, all alike; verify compares it by row count, passes
// when the counts are equal and names the table when they are not.
func TestVerifyTableWithoutColumns(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
	cs := pgtest.StartClusters(t, []int{13, 17})
	blue, green := cs[0], cs[1]
	const name = "nocols"
	for _, c := range cs {
		c.CreateDatabase(t, db)
		c.Exec(t, db, `CREATE TABLE public.empty_shape (); CREATE TABLE public.keyed (id int PRIMARY KEY)`)
	}
	blue.Exec(t, db, `ALTER TABLE public.empty_shape REPLICA IDENTITY FULL;
		INSERT INTO public.empty_shape SELECT FROM generate_series(1, 7);
		INSERT INTO public.keyed SELECT generate_series(1, 3);
		CREATE PUBLICATION nocols_pub FOR TABLE public.empty_shape, public.keyed`)
	green.Exec(t, db, fmt.Sprintf(`CREATE SUBSCRIPTION %s CONNECTION 'host=%s port=%d user=postgres dbname=%s' PUBLICATION nocols_pub`,
		name, blue.Host, blue.Port, db))
	// Rows written after the initial copy travel through the stream.
	blue.Exec(t, db, `INSERT INTO public.empty_shape DEFAULT VALUES; INSERT INTO public.empty_shape DEFAULT VALUES`)
	waitFor(t, 2*time.Minute, "green holds blue's 9 rows", func() bool {
		return green.Scalar(t, db, `SELECT count(*) FROM public.empty_shape`) == "9"
	})

	connect := func(c *pgtest.Cluster) verify.Connector {
		return func(ctx context.Context) (*pgx.Conn, error) { return pgx.Connect(ctx, c.DSN(db)) }
	}
	tables := []verify.Table{{Schema: "public", Name: "empty_shape"}, {Schema: "public", Name: "keyed", Key: []string{"id"}}}
	run := func(t *testing.T, mode verify.Mode) *verify.Report {
		t.Helper()
		r, err := verify.Run(context.Background(), connect(blue), connect(green), tables, verify.Options{
			Mode: mode, Workers: 2, Subscription: name, Rounds: 3, WaitTimeout: time.Minute,
		})
		if err != nil {
			t.Fatalf("verify %s: %v", mode, err)
		}
		return r
	}

	for _, mode := range []verify.Mode{verify.ModeChecksum, verify.ModeCount} {
		t.Run("equal counts pass in "+string(mode)+" mode", func(t *testing.T) {
			r := run(t, mode)
			if !r.OK() {
				t.Fatalf("differences in equal data:\n%s", r.Error())
			}
			for _, tr := range r.Tables {
				if tr.Table == "public.empty_shape" && (tr.Rows != 9 || !strings.Contains(tr.Method, "row count")) {
					t.Errorf("public.empty_shape: %d rows by %q, want 9 by row count", tr.Rows, tr.Method)
				}
			}
		})
	}

	t.Run("rowcompare agrees", func(t *testing.T) {
		ctx := context.Background()
		b, err := pgx.Connect(ctx, blue.DSN(db))
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close(ctx)
		g, err := pgx.Connect(ctx, green.DSN(db))
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close(ctx)
		res, err := rowcompare.Compare(ctx, b, g, []string{"public.empty_shape"})
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != 1 || !res[0].Equal || res[0].BlueRows != 9 {
			t.Errorf("rowcompare: %v", res)
		}
	})

	t.Run("a row only green has is a difference", func(t *testing.T) {
		green.Exec(t, db, `INSERT INTO public.empty_shape DEFAULT VALUES`)
		for _, mode := range []verify.Mode{verify.ModeChecksum, verify.ModeCount} {
			r := run(t, mode)
			if r.OK() || !strings.Contains(r.Error(), "public.empty_shape") || !strings.Contains(r.Error(), "1 only on green") {
				t.Errorf("%s mode: want public.empty_shape with 1 row only on green, got OK=%v:\n%s", mode, r.OK(), r.Error())
			}
		}
	})
}
