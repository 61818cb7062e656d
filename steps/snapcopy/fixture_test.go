package snapcopy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgshift/pgshift/internal/pgtest"
)

// extraSchema adds what pgbench lacks: types that force text COPY (an enum
// and an array of it), NULLs, generated and identity columns, a partitioned
// table with a default partition, and a foreign key to a non-pgbench table.
const extraSchema = `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE typed (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  n numeric(20,6), ts timestamptz, j jsonb, arr int[], tarr text[], b bytea,
  m mood, ms mood[], d date, iv interval, f8 float8, u uuid, t text,
  g bigint GENERATED ALWAYS AS (id * 2) STORED
);
INSERT INTO typed (n, ts, j, arr, tarr, b, m, ms, d, iv, f8, u, t)
SELECT CASE WHEN i % 7 = 0 THEN NULL ELSE i * 1.5 END,
       timestamptz '2020-01-01 00:00:00+00' + i * interval '1 hour 3 seconds',
       CASE WHEN i % 11 = 0 THEN NULL ELSE jsonb_build_object('i', i, 'a', jsonb_build_array(i, 'x' || i, null)) END,
       ARRAY[i, i * 2, NULL], ARRAY['x' || i, NULL, 'quote"and\back'],
       CASE WHEN i % 5 = 0 THEN NULL ELSE decode(md5(i::text), 'hex') END,
       (ARRAY['sad', 'ok', 'happy'])[1 + i % 3]::mood, ARRAY['ok', 'happy']::mood[],
       date '2001-02-03' + i, i * interval '1 minute 7 seconds', i / 7.0::float8,
       md5(i::text)::uuid, repeat('t', i % 50) || E'\ttab\nnewline'
  FROM generate_series(1, 5000) i;
CREATE TABLE typed_notes (id int PRIMARY KEY, typed_id bigint REFERENCES typed (id), note text);
INSERT INTO typed_notes SELECT i, i, 'note ' || i FROM generate_series(1, 1000) i;

CREATE SEQUENCE events_seq START 100001;
CREATE TABLE events (id bigint NOT NULL, at date NOT NULL, payload text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE events_default PARTITION OF events DEFAULT;
CREATE INDEX events_payload ON events (payload);
INSERT INTO events SELECT i, date '2023-06-01' + (i % 1000), 'payload ' || i FROM generate_series(1, 30000) i;
ANALYZE;
`

// writeScript is what pgbench runs on blue beside its own TPC-B-like
// transactions: updates of every type, inserts routed to partitions, deletes.
const writeScript = `
\set id random(1, 5000)
\set ev random(1, 30000)
UPDATE typed SET n = coalesce(n, 0) + 1, j = coalesce(j, '{}') || '{"u": 1}', m = 'happy', ms = ms || 'sad'::mood, ts = now() WHERE id = :id;
INSERT INTO events SELECT nextval('events_seq'), date '2024-01-01' + (random() * 900)::int, 'w';
DELETE FROM events WHERE id = :ev;
UPDATE events SET payload = 'moved' WHERE id = :ev + 1;
`

// compared lists every table the copy carries, with an order that makes
// the rows' text form comparable.
var compared = []struct{ table, order string }{
	{"pgbench_accounts", "aid"},
	{"pgbench_branches", "bid"},
	{"pgbench_tellers", "tid"},
	{"pgbench_history", "tid, bid, aid, delta, mtime, filler"},
	{"typed", "id"},
	{"typed_notes", "id"},
	{"events", "id, at"},
}

var copiedRelations = []Relation{
	{"public", "pgbench_accounts"}, {"public", "pgbench_branches"}, {"public", "pgbench_tellers"},
	{"public", "pgbench_history"}, {"public", "typed"}, {"public", "typed_notes"}, {"public", "events"},
}

// pair is a blue cluster with pgbench data and a green one with blue's
// pre-data schema, both holding database "app".
type pair struct {
	blue, green *pgtest.Cluster
	postData    string // blue's post-data section, from pg_dump
}

func startPair(t testing.TB, blueMajor, greenMajor, scale int) *pair {
	t.Helper()
	pgbench := pgtest.RequireClientBin(t, "pgbench")
	pgdump := pgtest.RequireClientBin(t, "pg_dump")
	cs := pgtest.StartClusters(t, []int{blueMajor, greenMajor})
	p := &pair{blue: cs[0], green: cs[1]}
	p.blue.CreateDatabase(t, "app")
	p.green.CreateDatabase(t, "app")
	run(t, pgbench, "-i", "-q", "--foreign-keys", "-s", strconv.Itoa(scale), "-h", p.blue.Host, "-p", strconv.Itoa(p.blue.Port), "-U", "postgres", "app")
	p.blue.Exec(t, "app", extraSchema)

	dir := t.TempDir()
	pre := filepath.Join(dir, "pre.sql")
	run(t, pgdump, "--section=pre-data", "--no-owner", "-f", pre, p.blue.DSN("app"))
	p.green.LoadSQLFile(t, "app", pre)
	out := filepath.Join(dir, "post.sql")
	run(t, pgdump, "--section=post-data", "--no-owner", "-f", out, p.blue.DSN("app"))
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	p.postData = string(b)
	return p
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "PGOPTIONS=") // nothing from the caller's environment
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
}

// startWrites runs pgbench on blue until stop is called.
func (p *pair) startWrites(t testing.TB) (stop func()) {
	t.Helper()
	pgbench := pgtest.RequireClientBin(t, "pgbench")
	script := filepath.Join(t.TempDir(), "writes.sql")
	if err := os.WriteFile(script, []byte(writeScript), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(pgbench, "-n", "-c", "2", "-j", "1", "-T", "3600", "-b", "tpcb-like", "-f", script,
		"-h", p.blue.Host, "-p", strconv.Itoa(p.blue.Port), "-U", "postgres", "app")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
	}
	t.Cleanup(stop)
	// Wait until writes flow, so that the snapshot is taken under load.
	base := p.blue.Scalar(t, "app", "SELECT count(*) FROM pgbench_history")
	deadline := time.Now().Add(time.Minute)
	for p.blue.Scalar(t, "app", "SELECT count(*) FROM pgbench_history") == base {
		if time.Now().After(deadline) {
			t.Fatalf("pgbench wrote nothing in a minute:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return stop
}

func connConfig(t testing.TB, c *pgtest.Cluster) *pgx.ConnConfig {
	t.Helper()
	cfg, err := pgx.ParseConfig(c.DSN("app"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func connect(t testing.TB, c *pgtest.Cluster) *pgx.Conn {
	t.Helper()
	conn, err := pgx.ConnectConfig(context.Background(), connConfig(t, c))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// digest hashes a table's rows in a fixed order as text, with the settings
// that shape text output pinned, and counts them.
func digest(ctx context.Context, conn *pgx.Conn, table, order string) (rows int64, sum string, err error) {
	for _, set := range []string{
		"SET DateStyle = 'ISO, YMD'", "SET IntervalStyle = 'postgres'", "SET TimeZone = 'UTC'",
		"SET extra_float_digits = 3", "SET bytea_output = 'hex'",
	} {
		if _, err := conn.PgConn().Exec(ctx, set).ReadAll(); err != nil {
			return 0, "", err
		}
	}
	h := sha256.New()
	tag, err := conn.PgConn().CopyTo(ctx, h, fmt.Sprintf("COPY (SELECT * FROM %s ORDER BY %s) TO STDOUT",
		pgx.Identifier{"public", table}.Sanitize(), order))
	if err != nil {
		return 0, "", fmt.Errorf("%s: %w", table, err)
	}
	return tag.RowsAffected(), hex.EncodeToString(h.Sum(nil)), nil
}

// memPeak samples the Go heap and the process's peak RSS while a copy runs.
type memPeak struct {
	stop chan struct{}
	done chan struct{}
	heap uint64
}

func watchMemory() *memPeak {
	m := &memPeak{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > m.heap {
				m.heap = ms.HeapAlloc
			}
			select {
			case <-m.stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return m
}

// Stop returns the peak Go heap and the process's peak RSS (VmHWM), in bytes.
func (m *memPeak) Stop() (heap, rss uint64) {
	close(m.stop)
	<-m.done
	return m.heap, peakRSS()
}

func peakRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseUint(f[1], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}
