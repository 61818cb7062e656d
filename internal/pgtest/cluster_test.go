package pgtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
}

// TestMissingBinariesSayMakeDeps: an empty cache must lead to the instruction, not a skip.
func TestMissingBinariesSayMakeDeps(t *testing.T) {
	t.Setenv("PGSHIFT_CACHE", t.TempDir())
	_, err := ServerBinDir(13)
	if err == nil || !strings.Contains(err.Error(), "run `make deps`") {
		t.Fatalf("ServerBinDir(13) with an empty cache: got %v, want an error saying run `make deps`", err)
	}
	if _, err := ClientBin("no-such-client"); err == nil || !strings.Contains(err.Error(), "run `make deps`") {
		t.Fatalf("ClientBin(no-such-client): got %v, want an error saying run `make deps`", err)
	}
}

func TestClusterLifecycle(t *testing.T) {
	skipShort(t)
	t.Parallel()
	c := StartCluster(t, 13, ClusterOptions{Settings: map[string]string{"work_mem": "7MB"}})
	if !strings.HasPrefix(c.Version, "13.") {
		t.Fatalf("Version = %q, want 13.x", c.Version)
	}
	if got := c.Scalar(t, "postgres", "SHOW wal_level"); got != "logical" {
		t.Errorf("wal_level = %q, want logical", got)
	}
	if got := c.Scalar(t, "postgres", "SHOW work_mem"); got != "7MB" {
		t.Errorf("work_mem = %q, want the option's 7MB", got)
	}
	if got := c.Scalar(t, "postgres", "SHOW port"); got != fmt.Sprint(c.Port) {
		t.Errorf("port = %s, want %d", got, c.Port)
	}

	c.CreateDatabase(t, "app-db")
	c.Exec(t, "app-db", "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'one'), (2, 'two')")
	if got := c.Scalar(t, "app-db", "SELECT count(*) FROM t"); got != "2" {
		t.Fatalf("rows = %s, want 2", got)
	}

	t.Run("kill -9 keeps committed rows", func(t *testing.T) {
		// An open session's backend must be gone too before the cluster can start again.
		idle, err := c.connect(t.Context(), "app-db")
		if err != nil {
			t.Fatal(err)
		}
		defer idle.Close(t.Context())
		c.Kill(t)
		if err := idle.Ping(t.Context()); err == nil {
			t.Fatal("a session survived kill -9 of the postmaster")
		}
		c.Start(t)
		if got := c.Scalar(t, "app-db", "SELECT string_agg(v, ',' ORDER BY id) FROM t"); got != "one,two" {
			t.Fatalf("after crash recovery rows = %q, want one,two", got)
		}
	})
	t.Run("restart", func(t *testing.T) {
		before := c.Scalar(t, "postgres", "SELECT pg_postmaster_start_time()")
		c.Restart(t)
		if after := c.Scalar(t, "postgres", "SELECT pg_postmaster_start_time()"); after == before {
			t.Fatalf("postmaster start time unchanged (%s): no restart happened", after)
		}
	})
	t.Run("stop and start", func(t *testing.T) {
		c.Stop(t)
		if _, err := c.connect(t.Context(), "postgres"); err == nil {
			t.Fatal("connected to a stopped cluster")
		}
		c.Start(t)
		if got := c.Scalar(t, "app-db", "SELECT count(*) FROM t"); got != "2" {
			t.Fatalf("rows after stop/start = %s, want 2", got)
		}
	})
	t.Run("TempDir is reachable by the server", func(t *testing.T) {
		out := filepath.Join(TempDir(t), "out.csv")
		c.Exec(t, "app-db", fmt.Sprintf("COPY (SELECT id, v FROM t ORDER BY id) TO '%s' (FORMAT csv)", out))
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != "1,one\n2,two\n" {
			t.Fatalf("server-side COPY wrote %q", b)
		}
	})
	t.Run("LoadSQLFile with psql", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "load.sql")
		script := "CREATE TABLE loaded (n int);\nCOPY loaded (n) FROM stdin;\n1\n2\n3\n\\.\n"
		if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
			t.Fatal(err)
		}
		c.LoadSQLFile(t, "app-db", path)
		if got := c.Scalar(t, "app-db", "SELECT sum(n) FROM loaded"); got != "6" {
			t.Fatalf("sum of loaded rows = %s, want 6", got)
		}
	})
}

// TestSeveralMajorsAtOnce runs the versions pgshift upgrades between side by side.
func TestSeveralMajorsAtOnce(t *testing.T) {
	skipShort(t)
	t.Parallel()
	majors := []int{13, 15, 17, 18}
	clusters := StartClusters(t, majors)
	ports := map[int]bool{}
	for i, c := range clusters {
		if ports[c.Port] {
			t.Errorf("port %d handed out twice", c.Port)
		}
		ports[c.Port] = true
		want := fmt.Sprintf("%d", majors[i])
		if got := c.Scalar(t, "postgres", "SELECT current_setting('server_version_num')::int / 10000"); got != want {
			t.Errorf("cluster on port %d runs major %s, want %s", c.Port, got, want)
		}
		if !strings.HasPrefix(c.Version, want+".") {
			t.Errorf("Version = %q, want %s.x", c.Version, want)
		}
	}
}

// TestLogicalReplication13To17 is the upgrade path in miniature, in plain SQL.
func TestLogicalReplication13To17(t *testing.T) {
	skipShort(t)
	t.Parallel()
	cs := StartClusters(t, []int{13, 17})
	blue, green := cs[0], cs[1]
	blue.CreateDatabase(t, "app")
	green.CreateDatabase(t, "app")
	ddl := "CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL)"
	blue.Exec(t, "app", ddl+"; INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 1000) g; CREATE PUBLICATION pub FOR TABLE items")
	green.Exec(t, "app", ddl)
	green.Exec(t, "app", fmt.Sprintf("CREATE SUBSCRIPTION sub CONNECTION 'host=%s port=%d dbname=app user=postgres' PUBLICATION pub", blue.Host, blue.Port))

	waitFor(t, 2*time.Minute, "initial copy of 1000 rows on green", func() bool {
		return green.Scalar(t, "app", "SELECT count(*) FROM items") == "1000"
	})
	blue.Exec(t, "app", "INSERT INTO items VALUES (1001, 'streamed'); UPDATE items SET name = 'changed' WHERE id = 1; DELETE FROM items WHERE id = 2")
	waitFor(t, 2*time.Minute, "streamed insert, update and delete on green", func() bool {
		return green.Scalar(t, "app", "SELECT count(*) FROM items WHERE (id = 1001 AND name = 'streamed') OR (id = 1 AND name = 'changed') OR id = 2") == "2"
	})
	if got, want := green.Scalar(t, "app", "SELECT md5(string_agg(id || ':' || name, ',' ORDER BY id)) FROM items"),
		blue.Scalar(t, "app", "SELECT md5(string_agg(id || ':' || name, ',' ORDER BY id)) FROM items"); got != want {
		t.Fatalf("green's rows differ from blue's: checksum %s vs %s", got, want)
	}
	green.Exec(t, "app", "DROP SUBSCRIPTION sub")
}

// waitFor polls cond until it holds or the deadline passes (then the test fails).
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
