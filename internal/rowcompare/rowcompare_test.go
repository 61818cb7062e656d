package rowcompare_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/internal/rowcompare"
)

// TestCompare uses two databases of one cluster as blue and green: the
// comparison only needs two connections.
func TestCompare(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
	c := pgtest.StartCluster(t, 17)
	schema := `
		CREATE TABLE keyed (id int PRIMARY KEY, v text, f float8);
		CREATE TABLE words (w text PRIMARY KEY);
		CREATE TABLE bag (a int, b text);`
	for _, db := range []string{"blue", "green"} {
		c.CreateDatabase(t, db)
		c.Exec(t, db, schema)
	}
	// Partitioned differently on each side: by range on blue, by hash on green.
	c.Exec(t, "blue", `CREATE TABLE events (id bigint NOT NULL, at date NOT NULL, payload text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
		CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
		CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
		INSERT INTO events SELECT g, date '2024-01-01' + (g % 700), 'payload ' || g FROM generate_series(1, 3000) g`)
	c.Exec(t, "green", `CREATE TABLE events (id bigint NOT NULL, at date NOT NULL, payload text, PRIMARY KEY (id, at)) PARTITION BY HASH (id);
		CREATE TABLE events_h0 PARTITION OF events FOR VALUES WITH (MODULUS 3, REMAINDER 0);
		CREATE TABLE events_h1 PARTITION OF events FOR VALUES WITH (MODULUS 3, REMAINDER 1);
		CREATE TABLE events_h2 PARTITION OF events FOR VALUES WITH (MODULUS 3, REMAINDER 2);
		INSERT INTO events SELECT g, date '2024-01-01' + (g % 700), 'payload ' || g FROM generate_series(3000, 1, -1) g`)
	// Same rows, inserted in different orders (different physical order).
	c.Exec(t, "blue", `
		INSERT INTO keyed SELECT i, 'v' || i, i / 3.0 FROM generate_series(1, 500) i;
		INSERT INTO words VALUES ('b'), ('B'), ('a'), ('_x'), ('Ä');
		INSERT INTO bag VALUES (1, 'x'), (1, 'x'), (2, NULL)`)
	c.Exec(t, "green", `
		INSERT INTO keyed SELECT i, 'v' || i, i / 3.0 FROM generate_series(500, 1, -1) i;
		INSERT INTO words VALUES ('Ä'), ('_x'), ('a'), ('B'), ('b');
		INSERT INTO bag VALUES (2, NULL), (1, 'x'), (1, 'x')`)

	ctx := context.Background()
	connect := func(db string) *pgx.Conn {
		conn, err := pgx.Connect(ctx, c.DSN(db))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(ctx) })
		return conn
	}
	blue, green := connect("blue"), connect("green")
	tables, err := rowcompare.Tables(ctx, blue)
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) != 4 {
		t.Fatalf("tables %v, want bag, events, keyed, words", tables)
	}
	compare := func() map[string]rowcompare.Result {
		res, err := rowcompare.Compare(ctx, blue, green, tables)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]rowcompare.Result{}
		for _, r := range res {
			out[r.Table] = r
		}
		return out
	}

	for name, r := range compare() {
		if !r.Equal {
			t.Errorf("%s differs with the same rows in another physical order: %s", name, r)
		}
	}
	if r := compare()["public.keyed"]; r.BlueRows != 500 || r.GreenRows != 500 {
		t.Errorf("keyed: %d and %d rows counted, want 500", r.BlueRows, r.GreenRows)
	}

	// A NULL is not an empty string, a duplicate counts, a float's last digit counts.
	c.Exec(t, "green", `
		UPDATE bag SET b = '' WHERE a = 2;
		UPDATE keyed SET f = f + 1e-12 WHERE id = 250;
		INSERT INTO words VALUES ('c')`)
	got := compare()
	for _, name := range []string{"public.bag", "public.keyed", "public.words"} {
		if got[name].Equal {
			t.Errorf("%s: a planted difference was not found: %s", name, got[name])
		}
	}
	if r := got["public.words"]; r.BlueRows != 5 || r.GreenRows != 6 {
		t.Errorf("words: %d and %d rows, want 5 and 6", r.BlueRows, r.GreenRows)
	}
}
