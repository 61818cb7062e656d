package pgtest

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"
)

// ShowDatabase is PgBouncer's SHOW DATABASES row for database db, column
// name to value as text; it fails the test when PgBouncer has no such
// database.
func (b *PgBouncer) ShowDatabase(t testing.TB, db string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn := b.adminConn(ctx, t)
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, "SHOW DATABASES")
	if err != nil {
		t.Fatalf("pgtest: PgBouncer on port %d: SHOW DATABASES: %v", b.Port, err)
	}
	defer rows.Close()
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatalf("pgtest: PgBouncer on port %d: SHOW DATABASES: %v", b.Port, err)
		}
		row := map[string]string{}
		for i, f := range rows.FieldDescriptions() {
			row[f.Name] = fmt.Sprint(vals[i])
		}
		if row["name"] == db {
			return row
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("pgtest: PgBouncer on port %d: SHOW DATABASES: %v", b.Port, err)
	}
	t.Fatalf("pgtest: PgBouncer on port %d has no database %q", b.Port, db)
	return nil
}

// Paused says whether PgBouncer holds database db paused (PAUSE db).
func (b *PgBouncer) Paused(t testing.TB, db string) bool {
	t.Helper()
	return b.ShowDatabase(t, db)["paused"] == "1"
}

// ServerPort is the port PgBouncer sends database db's clients to.
func (b *PgBouncer) ServerPort(t testing.TB, db string) int {
	t.Helper()
	port := b.ShowDatabase(t, db)["port"]
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("pgtest: PgBouncer on port %d: database %q has port %q", b.Port, db, port)
	}
	return p
}
