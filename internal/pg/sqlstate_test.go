package pg

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgshift/pgshift/internal/pgtest"
)

func TestIsTransientCodes(t *testing.T) {
	for code, want := range map[string]bool{
		"08006": true, "08001": true, "57P01": true, "57P02": true, "57P03": true,
		"57014": false, // query_canceled: someone cancelled it
		"28P01": false, // a wrong password does not get better by waiting
		"42P01": false, "55006": false,
	} {
		err := fmt.Errorf("read slot: %w", &pgconn.PgError{Code: code, Message: "m"})
		if got := IsTransient(err); got != want {
			t.Errorf("IsTransient(SQLSTATE %s) = %v, want %v", code, got, want)
		}
	}
	refusedCert := &net.OpError{Op: "remote error", Err: tls.AlertError(42)} // bad_certificate, as crypto/tls returns it
	for _, err := range []error{nil, context.Canceled, fmt.Errorf("wait: %w", context.DeadlineExceeded), errors.New("subscription \"x\" does not exist"),
		fmt.Errorf("connect: %w", refusedCert), fmt.Errorf("connect: %w", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}),
		fmt.Errorf("connect: %w", x509.HostnameError{Host: "green.example"})} {
		if IsTransient(err) {
			t.Errorf("IsTransient(%v) = true, want false", err)
		}
	}
	if reset := fmt.Errorf("read: %w", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}); !IsTransient(reset) {
		t.Errorf("IsTransient(%v) = false, want true", reset)
	}
}

// TestIsTransientRestart restarts a real server under an idle pooled
// connection and a dedicated one: the errors the next queries get, and
// those of connecting while the server is down, are transient; once the
// server is back the same pool works again.
func TestIsTransientRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
	c := pgtest.StartCluster(t, 17)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, c.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	for _, restart := range []struct {
		name string
		do   func(testing.TB)
	}{{"fast", c.Restart}, {"immediate", c.RestartImmediate}} {
		restart.do(t)
		if _, err := conn.Exec(ctx, "SELECT 1"); err == nil || !IsTransient(err) {
			t.Errorf("after a %s restart, a query on a connection it cut: %v, transient %v; want a transient error", restart.name, err, IsTransient(err))
		} else {
			t.Logf("%s restart, cut connection: %v (%s)", restart.name, err, TransientReason(err))
		}
		// The pool gives up its dead connections and dials new ones.
		var lastErr error
		ok := false
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if _, lastErr = pool.Exec(ctx, "SELECT 1"); lastErr == nil {
				ok = true
				break
			}
			if !IsTransient(lastErr) {
				t.Fatalf("after a %s restart the pool's query failed with a non-transient error: %v", restart.name, lastErr)
			}
		}
		if !ok {
			t.Fatalf("the pool did not reconnect within a minute after a %s restart: %v", restart.name, lastErr)
		}
		conn.Close(ctx)
		if conn, err = pgx.Connect(ctx, c.DSN("postgres")); err != nil {
			t.Fatal(err)
		}
	}

	c.Stop(t)
	_, err = pgx.Connect(ctx, c.DSN("postgres"))
	if !IsTransient(err) {
		t.Errorf("connecting to a stopped server: %v, transient false; want true", err)
	}
	_, err = pool.Exec(ctx, "SELECT 1")
	if !IsTransient(err) {
		t.Errorf("a pool's query on a stopped server: %v, transient false; want true", err)
	}
	t.Logf("stopped: %v (%s)", err, TransientReason(err))
	c.Start(t)
}
