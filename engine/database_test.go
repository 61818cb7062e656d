package engine

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pgshift/pgshift/spec"
)

// Redacted is what plans, logs and errors show of a connection string: it
// never carries a password, whether the DSN holds one (a spec refuses that,
// but code may build one) or the environment gives it.
func TestRedactedNeverHoldsThePassword(t *testing.T) {
	t.Setenv("PGSHIFT_TEST_PW", "env-secret-1")
	for _, dsn := range []string{
		"postgres://app:dsn-secret-2@db.internal:5433/orders?sslmode=disable",
		"host=db.internal port=5433 dbname=orders user=app password=dsn-secret-2",
		"postgres://app@db.internal:5433/orders?password=dsn-secret-2",
	} {
		d := NewDatabase("blue", spec.Endpoint{DSN: dsn, PasswordEnv: "PGSHIFT_TEST_PW"})
		got := d.Redacted()
		if want := "postgres://app@db.internal:5433/orders"; got != want {
			t.Errorf("Redacted(%q) = %q, want %q", dsn, got, want)
		}
		if strings.Contains(got, "secret") {
			t.Errorf("Redacted(%q) = %q holds a password", dsn, got)
		}
	}
}

// A failed connection names the side, its address and where the password
// comes from, never the password itself.
func TestConnectErrorNamesThePasswordSourceNotThePassword(t *testing.T) {
	t.Setenv("PGSHIFT_TEST_PW", "env-secret-1")
	// Port 1 on loopback: nothing listens there, the connection is refused.
	d := NewDatabase("green", spec.Endpoint{DSN: "postgres://app@127.0.0.1:1/orders?sslmode=disable&connect_timeout=5", PasswordEnv: "PGSHIFT_TEST_PW"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := d.Connect(ctx)
	if err == nil {
		t.Fatal("connected to 127.0.0.1:1")
	}
	msg := err.Error()
	for _, want := range []string{"green: connect to postgres://app@127.0.0.1:1/orders", "is green running", "target.dsn"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	if strings.Contains(msg, "env-secret-1") {
		t.Errorf("error %q holds the password", msg)
	}
}
