package steps

import (
	"strings"
	"testing"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/spec"
)

// pg_dump and psql get a conninfo libpq accepts, with the password in
// PGPASSWORD and not in argv (where ps shows it to every user).
func TestLibpqTargetKeepsThePasswordOutOfArgv(t *testing.T) {
	db := engine.NewDatabase("blue", spec.Endpoint{DSN: "postgres://app:s3cret@10.0.0.5:5433/orders?pool_max_conns=4&sslmode=require"})
	conninfo, environ, err := libpqTarget(db)
	if err != nil {
		t.Fatal(err)
	}
	if conninfo != "host=10.0.0.5 port=5433 dbname=orders user=app sslmode=require" {
		t.Errorf("conninfo %q", conninfo)
	}
	if environ[len(environ)-1] != "PGPASSWORD=s3cret" {
		t.Errorf("the DSN's password is not in PGPASSWORD: %q", environ[len(environ)-1])
	}
	if _, _, err := libpqTarget(engine.NewDatabase("green", spec.Endpoint{DSN: "host=g password=open sesame"})); err == nil ||
		!strings.HasPrefix(err.Error(), "target.dsn: ") || strings.Contains(err.Error(), "sesame") {
		t.Errorf("a bad target DSN: %v", err)
	}
}
