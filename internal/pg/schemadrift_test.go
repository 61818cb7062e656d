package pg_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/pgtest"
)

// TestCompareSchemas13To17 changes blue's tables the ways DDL does during a
// sync and checks that each difference is named, that running the additive
// SQL on green removes exactly those, and that the rest stays named.
func TestCompareSchemas13To17(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
	cs := pgtest.StartClusters(t, []int{13, 17})
	blue, green := cs[0], cs[1]
	base := `CREATE TABLE public.orders (id bigint PRIMARY KEY, note text NOT NULL, qty int DEFAULT 1, legacy text);
	         CREATE INDEX orders_note ON public.orders (note);
	         CREATE TABLE public.items (id int PRIMARY KEY);`
	for _, c := range cs {
		c.Exec(t, "postgres", base)
	}
	blue.Exec(t, "postgres", `ALTER TABLE public.orders ADD COLUMN shipped boolean NOT NULL DEFAULT false;
		ALTER TABLE public.orders ALTER COLUMN note DROP NOT NULL;
		ALTER TABLE public.orders ALTER COLUMN qty SET DEFAULT 5;
		ALTER TABLE public.orders ALTER COLUMN id TYPE numeric;
		ALTER TABLE public.orders DROP COLUMN legacy;
		CREATE INDEX orders_qty ON public.orders (qty);
		DROP INDEX public.orders_note;
		ALTER TABLE public.orders ADD CONSTRAINT qty_positive CHECK (qty > 0);
		CREATE TABLE public."New Table" (id int PRIMARY KEY, v text);
		ALTER TABLE public.items ADD COLUMN serial_no bigserial`)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, g := blue.Conn(t, "postgres"), green.Conn(t, "postgres")
	tables, err := pg.SelectedTables(ctx, b, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	drift, err := pg.CompareSchemas(ctx, b, g, tables)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]pg.DriftItem{}
	for _, d := range drift {
		got[d.Table.Name+"."+d.Object+": "+string(d.Kind)] = d
	}
	want := map[string]bool{ // additive?
		`New Table.: table missing on green`:               true,
		"orders.shipped: column missing on green":          true,
		"orders.note: NOT NULL differs":                    true,
		"orders.qty: column default differs":               true,
		"orders.id: column type differs":                   false,
		"orders.legacy: column only on green":              false,
		"orders.orders_qty: index missing on green":        true,
		"orders.orders_note: index only on green":          false,
		"orders.qty_positive: constraint missing on green": false,
		"items.serial_no: column missing on green":         false, // a sequence would number green's rows its own way
	}
	for k, additive := range want {
		d, ok := got[k]
		if !ok {
			t.Errorf("drift lacks %q; got:\n%s", k, describe(drift))
			continue
		}
		if d.Additive != additive {
			t.Errorf("%s: additive %t, want %t", k, d.Additive, additive)
		}
		if !d.Additive && d.Fix == "" {
			t.Errorf("%s: not applied by pgshift, yet no fix is named", k)
		}
	}
	if len(drift) != len(want) {
		t.Errorf("%d differences, want %d:\n%s", len(drift), len(want), describe(drift))
	}
	if s := got["orders.shipped: column missing on green"].SQL; s != `ALTER TABLE "public"."orders" ADD COLUMN "shipped" boolean DEFAULT false NOT NULL` {
		t.Errorf("ADD COLUMN SQL: %s", s)
	}

	// What apply would do: the additive SQL on green (the new table by a
	// copy of its definition, here by hand).
	green.Exec(t, "postgres", `CREATE TABLE public."New Table" (id int PRIMARY KEY, v text)`)
	additive, _ := pg.AdditiveDrift(drift)
	for _, d := range additive {
		if d.SQL != "" {
			green.Exec(t, "postgres", d.SQL)
		}
	}
	after, err := pg.CompareSchemas(ctx, b, g, tables)
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := pg.AdditiveDrift(after); len(a) != 0 {
		t.Errorf("additive drift left after applying its SQL on green:\n%s", describe(a))
	}
	if len(after) != len(want)-5 {
		t.Errorf("after the additive SQL, %d differences left, want the %d that pgshift does not apply:\n%s", len(after), len(want)-5, describe(after))
	}
	for _, d := range after {
		if d.Kind == pg.DriftColumnExtra && d.Blocks {
			t.Errorf("%s: a nullable column only on green does not stop blue's rows", d)
		}
	}
}

func describe(items []pg.DriftItem) string {
	var b strings.Builder
	for _, d := range items {
		b.WriteString("  " + d.String() + " | " + d.SQL + "\n")
	}
	return b.String()
}
