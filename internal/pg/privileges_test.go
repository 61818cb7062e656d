package pg

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/pgshift/pgshift/internal/pgtest"
)

func TestSubscriptionPrecondition(t *testing.T) {
	for _, tc := range []struct {
		rights   SubscriptionRights
		password bool
		ok       bool
		want     string
	}{
		{SubscriptionRights{OK: true, Superuser: true}, false, true, "superuser"},
		{SubscriptionRights{OK: true}, true, true, "not superuser"},
		{SubscriptionRights{OK: true}, false, false, "set source.password_env"},
		{SubscriptionRights{Why: "role x is neither superuser nor a member of pg_create_subscription"}, true, false, "pg_create_subscription"},
	} {
		_, ok, detail := SubscriptionPrecondition(tc.rights, "green", "blue", "source.password_env", tc.password)
		if ok != tc.ok || !strings.Contains(detail, tc.want) {
			t.Errorf("%+v password %t: ok %t %q, want %t with %q", tc.rights, tc.password, ok, detail, tc.ok, tc.want)
		}
	}
}

// The fix for a role that lacks CREATE on the database names the database,
// quoted, so that it can be pasted as it is.
func TestSubscriptionRightsNameTheDatabase(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
	c := pgtest.StartCluster(t, 16)
	const db = `Shop "EU"`
	c.CreateDatabase(t, db)
	c.Exec(t, "postgres", `CREATE ROLE plain LOGIN; GRANT pg_create_subscription TO plain`)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, strings.Replace(c.DSN(db), "postgres@", "plain@", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	rights, err := CheckSubscriptionRights(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	want := `GRANT CREATE ON DATABASE "Shop ""EU""" TO plain`
	if rights.OK || !strings.HasSuffix(rights.Why, ": "+want) {
		t.Fatalf("a member of pg_create_subscription without CREATE: %+v, want the fix %q", rights, want)
	}
	// The fix works as given.
	c.Exec(t, "postgres", want)
	if rights, err := CheckSubscriptionRights(ctx, conn); err != nil || !rights.OK {
		t.Fatalf("after %s: %+v, %v", want, rights, err)
	}
}
