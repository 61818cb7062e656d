package cutover

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgshift/pgshift/internal/pgtest"
)

// sequenceDDL is the same schema on both sides: a serial column, an
// identity column, a sequence no column owns, a descending one, a cycling
// one, one near its bound, one never called, one restarted, and a quoted
// schema and name.
const sequenceDDL = `
CREATE TABLE orders (id bigserial PRIMARY KEY, note text);
CREATE TABLE items (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, x int);
CREATE SEQUENCE unowned_seq;
CREATE SEQUENCE desc_seq INCREMENT -1 MINVALUE -1000000 MAXVALUE -1 START -1;
CREATE SEQUENCE cyc_seq MAXVALUE 100 CYCLE;
CREATE SEQUENCE small_seq AS smallint;
CREATE SEQUENCE never_seq START 50;
CREATE SEQUENCE restarted_seq;
CREATE SCHEMA "Sales";
CREATE SEQUENCE "Sales"."invoice no";
`

func TestSyncSequences(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
	clusters := pgtest.StartClusters(t, []int{13, 17})
	blue, green := clusters[0], clusters[1]
	for _, c := range clusters {
		c.CreateDatabase(t, "app")
		c.Exec(t, "app", sequenceDDL)
	}
	blue.Exec(t, "app", `
CREATE SEQUENCE only_blue;
INSERT INTO orders (note) VALUES ('a'), ('b'), ('c');       -- max(id) = 3 ...
SELECT setval('orders_id_seq', 5000);                      -- ... but the sequence is at 5000
INSERT INTO items (x) VALUES (1), (2);
SELECT setval('unowned_seq', 42);
SELECT nextval('desc_seq'), nextval('desc_seq'), nextval('desc_seq');
SELECT setval('cyc_seq', 95);
SELECT setval('small_seq', 32000);
ALTER SEQUENCE restarted_seq RESTART WITH 777;
SELECT setval('"Sales"."invoice no"', 10);
`)
	green.Exec(t, "app", `CREATE SEQUENCE only_green;`)

	ctx := context.Background()
	from := cutoverTestConn(t, blue.DSN("app"))
	to := cutoverTestConn(t, green.DSN("app"))

	start := time.Now()
	report, err := SyncSequences(ctx, from, to, 1000)
	if err != nil {
		t.Fatalf("SyncSequences: %v", err)
	}
	t.Logf("SyncSequences of %d sequences 13 -> 17 took %v", len(report.Synced), time.Since(start))

	// state is (last_value, is_called) as green stores them.
	state := func(seq string) string {
		return green.Scalar(t, "app", fmt.Sprintf("SELECT last_value || ' ' || is_called FROM %s", seq))
	}
	want := map[string]string{
		"orders_id_seq":        "6000 true", // by value, not max(id)
		"items_id_seq":         "1002 true",
		"unowned_seq":          "1042 true",
		"desc_seq":             "-1003 true", // margin in its own direction
		"cyc_seq":              "100 true",   // clamped to MAXVALUE
		"small_seq":            "32767 true", // clamped to smallint's bound
		"never_seq":            "50 false",   // never called: left uncalled
		"restarted_seq":        "777 false",  // restarted: its pending value
		`"Sales"."invoice no"`: "1010 true",
	}
	for seq, w := range want {
		if got := state(seq); got != w {
			t.Errorf("green %s = %q, want %q", seq, got, w)
		}
	}
	// What the application sees next on green.
	if got := green.Scalar(t, "app", "INSERT INTO items (x) VALUES (3) RETURNING id"); got != "1003" {
		t.Errorf("next identity on green = %s, want 1003", got)
	}
	if got := green.Scalar(t, "app", "SELECT nextval('never_seq')"); got != "50" {
		t.Errorf("nextval(never_seq) on green = %s, want 50", got)
	}

	clamped := map[string]bool{}
	for _, s := range report.Synced {
		if s.Clamped {
			clamped[s.Sequence] = true
		}
	}
	if len(clamped) != 2 || !clamped["public.cyc_seq"] || !clamped["public.small_seq"] {
		t.Errorf("clamped = %v, want cyc_seq and small_seq", clamped)
	}
	if strings.Join(report.OnlyOnSource, ",") != "public.only_blue" {
		t.Errorf("OnlyOnSource = %v", report.OnlyOnSource)
	}
	if strings.Join(report.OnlyOnTarget, ",") != "public.only_green" {
		t.Errorf("OnlyOnTarget = %v", report.OnlyOnTarget)
	}
	if len(report.Unreadable)+len(report.Mismatched) != 0 {
		t.Errorf("unexpected problems: %+v", report)
	}
	// cyc_seq (CYCLE) starts over past its bound; small_seq runs out.
	for _, p := range report.Problems() {
		if strings.Contains(p, "cyc_seq") {
			t.Errorf("a cycling sequence is reported as a problem: %s", p)
		}
	}
	if !strings.Contains(strings.Join(report.Problems(), "\n"), "small_seq") {
		t.Errorf("small_seq, held at smallint's bound, is not reported: %q", report.Problems())
	}

	t.Run("target ahead is kept", func(t *testing.T) {
		green.Exec(t, "app", "SELECT setval('orders_id_seq', 9000)")
		report, err := SyncSequences(ctx, from, to, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if got := state("orders_id_seq"); got != "9000 true" {
			t.Errorf("orders_id_seq moved back: %s", got)
		}
		kept := false
		for _, s := range report.Synced {
			kept = kept || (s.Sequence == "public.orders_id_seq" && s.Kept)
		}
		if !kept {
			t.Errorf("report does not say orders_id_seq was kept")
		}
		if got := state("unowned_seq"); got != "1042 true" {
			t.Errorf("a second run changed unowned_seq: %s", got)
		}
	})

	t.Run("unreadable on the source", func(t *testing.T) {
		blue.Exec(t, "app", `
CREATE ROLE seq_reader LOGIN;
GRANT USAGE ON SCHEMA public, "Sales" TO seq_reader;
GRANT SELECT ON ALL SEQUENCES IN SCHEMA public, "Sales" TO seq_reader;
REVOKE SELECT ON SEQUENCE unowned_seq FROM seq_reader;`)
		reader := cutoverTestConn(t, strings.Replace(blue.DSN("app"), "postgres@", "seq_reader@", 1))
		report, err := SyncSequences(ctx, reader, to, 1000)
		if err != nil {
			t.Fatalf("SyncSequences as a user without every privilege: %v", err)
		}
		if strings.Join(report.Unreadable, ",") != "public.unowned_seq" {
			t.Errorf("Unreadable = %v", report.Unreadable)
		}
		found := false
		for _, p := range report.Problems() {
			found = found || strings.Contains(p, "GRANT SELECT ON SEQUENCE public.unowned_seq")
		}
		if !found {
			t.Errorf("Problems() does not say how to fix it: %q", report.Problems())
		}
	})
}

func cutoverTestConn(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// BenchmarkSyncSequences copies 1000 sequences from PostgreSQL 13 to 17:
// the time it adds to the write freeze.
func BenchmarkSyncSequences(b *testing.B) {
	clusters := pgtest.StartClusters(b, []int{13, 17})
	const ddl = `DO $$ BEGIN FOR i IN 1..1000 LOOP EXECUTE format('CREATE SEQUENCE s%s', i); END LOOP; END $$`
	for _, c := range clusters {
		c.CreateDatabase(b, "app")
		c.Exec(b, "app", ddl)
	}
	clusters[0].Exec(b, "app", `DO $$ BEGIN FOR i IN 1..1000 LOOP PERFORM setval(format('s%s', i), i * 10); END LOOP; END $$`)
	ctx := context.Background()
	from, err := pgx.Connect(ctx, clusters[0].DSN("app"))
	if err != nil {
		b.Fatal(err)
	}
	defer from.Close(ctx)
	to, err := pgx.Connect(ctx, clusters[1].DSN("app"))
	if err != nil {
		b.Fatal(err)
	}
	defer to.Close(ctx)
	b.ResetTimer()
	for b.Loop() {
		report, err := SyncSequences(ctx, from, to, 1000)
		if err != nil {
			b.Fatal(err)
		}
		if len(report.Synced) != 1000 {
			b.Fatalf("synced %d sequences", len(report.Synced))
		}
	}
}
