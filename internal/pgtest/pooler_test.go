package pgtest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// connectSimple opens a pgx connection speaking the simple query protocol, which PgBouncer's admin
// console requires and which crosses transaction pooling safely.
func connectSimple(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func queryText(t *testing.T, conn *pgx.Conn, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var v string
	if err := conn.QueryRow(ctx, sql).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

// waitingClients reads cl_waiting of a database's pools from the admin console's SHOW POOLS.
func waitingClients(t *testing.T, admin *pgx.Conn, db string) int {
	t.Helper()
	rows, err := admin.Query(context.Background(), "SHOW POOLS")
	if err != nil {
		t.Fatalf("SHOW POOLS: %v", err)
	}
	defer rows.Close()
	dbCol, waitCol := -1, -1
	for i, f := range rows.FieldDescriptions() {
		switch f.Name {
		case "database":
			dbCol = i
		case "cl_waiting":
			waitCol = i
		}
	}
	if dbCol < 0 || waitCol < 0 {
		t.Fatalf("SHOW POOLS has no database or cl_waiting column")
	}
	total := 0
	for rows.Next() {
		v := rows.RawValues()
		if string(v[dbCol]) == db {
			var n int
			fmt.Sscan(string(v[waitCol]), &n)
			total += n
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("SHOW POOLS: %v", err)
	}
	return total
}

// TestPoolers sends real traffic through PgBouncer and HAProxy in front of two clusters, and moves
// it from one to the other the way a cutover does.
func TestPoolers(t *testing.T) {
	skipShort(t)
	t.Parallel()
	cs := StartClusters(t, []int{13, 17})
	blue, green := cs[0], cs[1]
	for _, c := range cs {
		c.CreateDatabase(t, "app")
	}

	t.Run("PgBouncer PAUSE holds a query until RESUME", func(t *testing.T) {
		b := StartPgBouncer(t, PgBouncerOptions{Databases: map[string]string{
			"app": fmt.Sprintf("host=%s port=%d dbname=app", blue.Host, blue.Port),
		}})
		client := connectSimple(t, b.DSN("app"))
		if got := queryText(t, client, "SELECT current_setting('port')"); got != fmt.Sprint(blue.Port) {
			t.Fatalf("query through PgBouncer reached port %s, want blue's %d", got, blue.Port)
		}

		admin := connectSimple(t, b.AdminDSN)
		if _, err := admin.Exec(context.Background(), "PAUSE app"); err != nil {
			t.Fatalf("PAUSE app: %v", err)
		}
		done := make(chan error, 1)
		go func() {
			var v int
			err := client.QueryRow(context.Background(), "SELECT 41 + 1").Scan(&v)
			if err == nil && v != 42 {
				err = fmt.Errorf("got %d, want 42", v)
			}
			done <- err
		}()
		waitFor(t, time.Minute, "the client query to queue in PgBouncer while paused", func() bool {
			return waitingClients(t, admin, "app") == 1
		})
		select {
		case err := <-done:
			t.Fatalf("query finished during PAUSE (err %v): PAUSE did not hold it", err)
		default:
		}
		if _, err := admin.Exec(context.Background(), "RESUME app"); err != nil {
			t.Fatalf("RESUME app: %v", err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("query waiting across PAUSE/RESUME: %v", err)
			}
		case <-time.After(time.Minute):
			t.Fatal("query still waiting a minute after RESUME")
		}

		t.Run("RELOAD after rewriting [databases] moves new traffic", func(t *testing.T) {
			conf, err := os.ReadFile(b.ConfigPath)
			if err != nil {
				t.Fatal(err)
			}
			old := fmt.Sprintf("app = host=%s port=%d dbname=app", blue.Host, blue.Port)
			if !strings.Contains(string(conf), old) {
				t.Fatalf("%s lacks the line %q:\n%s", b.ConfigPath, old, conf)
			}
			moved := strings.Replace(string(conf), old, fmt.Sprintf("app = host=%s port=%d dbname=app", green.Host, green.Port), 1)
			if err := os.WriteFile(b.ConfigPath, []byte(moved), 0o644); err != nil {
				t.Fatal(err)
			}
			b.Admin(t, "RELOAD")
			if got := queryText(t, connectSimple(t, b.DSN("app")), "SELECT current_setting('port')"); got != fmt.Sprint(green.Port) {
				t.Fatalf("after RELOAD a new client reached port %s, want green's %d", got, green.Port)
			}
		})
	})

	t.Run("HAProxy runtime API moves traffic", func(t *testing.T) {
		h := StartHAProxy(t, HAProxyOptions{
			Backend: "pg",
			Servers: []HAProxyServer{
				{Name: "blue", Addr: fmt.Sprintf("%s:%d", blue.Host, blue.Port)},
				{Name: "green", Addr: fmt.Sprintf("%s:%d", green.Host, green.Port)},
			},
			Active: "blue",
		})
		before := connectSimple(t, h.DSN("app"))
		if got := queryText(t, before, "SHOW port"); got != fmt.Sprint(blue.Port) {
			t.Fatalf("query through HAProxy reached port %s, want blue's %d", got, blue.Port)
		}
		for _, cmd := range []string{
			"set server pg/green state ready",
			"set server pg/blue state maint",
			"shutdown sessions server pg/blue",
		} {
			if answer := strings.TrimSpace(h.Command(t, cmd)); answer != "" {
				t.Fatalf("runtime API %q answered %q", cmd, answer)
			}
		}
		if got := queryText(t, connectSimple(t, h.DSN("app")), "SHOW port"); got != fmt.Sprint(green.Port) {
			t.Fatalf("after the switch a new connection reached port %s, want green's %d", got, green.Port)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := before.Exec(ctx, "SELECT 1"); err == nil {
			t.Fatal("the session opened before the switch still works: shutdown sessions did not close it")
		}
	})
}
