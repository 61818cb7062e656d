package e2e

import (
	"strings"
	"testing"

	"github.com/pgshift/pgshift/internal/pgtest"
)

// TestAwkwardIdentifiers takes schemas, tables and columns whose names
// need quoting (mixed case, spaces, quotes, non-ASCII, reserved words)
// through the pipeline: they replicate, with writes after the copy, and
// verify names a planted difference by its text key.
func TestAwkwardIdentifiers(t *testing.T) {
	integration(t)
	t.Parallel()
	cs := pgtest.StartClusters(t, []int{15, 17})
	blue, green := cs[0], cs[1]
	blue.CreateDatabase(t, "Shop Floor")
	green.CreateDatabase(t, "Shop Floor")
	blue.Exec(t, "Shop Floor", `
		CREATE SCHEMA "Sales Dept";
		CREATE TABLE "Sales Dept"."Order-Items" ("Id" int PRIMARY KEY, "naïve ""col""" text, "select" int);
		INSERT INTO "Sales Dept"."Order-Items" SELECT g, 'v' || g, g FROM generate_series(1, 300) g;
		CREATE TABLE public."UPPER" ("Key" text COLLATE "C" PRIMARY KEY, "user" jsonb);
		INSERT INTO public."UPPER" SELECT 'key ' || g || ' ''q''', jsonb_build_object('g', g) FROM generate_series(1, 300) g;
		CREATE TABLE "Sales Dept".plain (id bigserial PRIMARY KEY, "Group" text);
		INSERT INTO "Sales Dept".plain ("Group") SELECT 'g' || g FROM generate_series(1, 50) g;`)
	dir, spec := writeSpec(t, specOptions{name: "awkward", blue: blue.DSN("Shop Floor"), green: green.DSN("Shop Floor"),
		extra: "tables:\n  exclude: [\"Sales Dept.plain\"]\n"})

	if r := pgshift(t, dir, "apply", "-f", spec, "--until", "replication.catchup"); r.code != 0 {
		t.Fatalf("apply:\n%s", r)
	}
	blue.Exec(t, "Shop Floor", `
		UPDATE "Sales Dept"."Order-Items" SET "naïve ""col""" = 'changed' WHERE "Id" <= 5;
		DELETE FROM public."UPPER" WHERE "Key" = 'key 7 ''q''';
		INSERT INTO public."UPPER" VALUES ('ключ', '{}')`)
	blueConn := connect(t, blue.DSN("Shop Floor"))
	waitCaughtUp(t, blueConn, "pgshift_awkward")
	compareAll(t, blue.DSN("Shop Floor"), green.DSN("Shop Floor"), "Sales Dept.plain")
	greenConn := connect(t, green.DSN("Shop Floor"))
	if n := scalar[int64](t, greenConn, `SELECT count(*) FROM "Sales Dept".plain`); n != 0 {
		t.Fatalf("the excluded table holds %d rows on green", n)
	}

	green.Exec(t, "Shop Floor", `ALTER SUBSCRIPTION pgshift_awkward DISABLE`)
	green.Exec(t, "Shop Floor", `UPDATE public."UPPER" SET "user" = '{"tampered": true}' WHERE "Key" = 'key 9 ''q'''`)
	green.Exec(t, "Shop Floor", `ALTER SUBSCRIPTION pgshift_awkward ENABLE`)
	r := pgshift(t, dir, "apply", "-f", spec)
	// Reports name tables as schema.name, unquoted.
	if r.code == 0 || !strings.Contains(r.stdout, `public.UPPER: `) || !strings.Contains(r.stdout, `Key=key 9 'q' differs`) {
		t.Fatalf("verify with a difference in public.\"UPPER\": want a failure naming the table and key\n%s", r)
	}
	if strings.Contains(r.stdout, "Order-Items") {
		t.Fatalf("verify names a table where nothing was planted:\n%s", r)
	}
	t.Logf("verify report:\n%s", r.stdout)
}
