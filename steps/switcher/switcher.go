// Package switcher moves an application's traffic between the blue and the
// green database: by rewriting a PgBouncer [databases] entry, through the
// HAProxy runtime API, or by running the user's own commands. The cutover
// step drives a Driver through Freeze, Switch and Unfreeze; every method is
// idempotent so that a resumed or aborted cutover can call it again.
package switcher

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/pgshift/pgshift/spec"
)

// Side names where traffic goes.
type Side string

const (
	Blue  Side = "blue"
	Green Side = "green"
)

// Other is the side traffic leaves when it moves to s.
func (s Side) Other() Side {
	if s == Green {
		return Blue
	}
	return Green
}

func (s Side) valid() bool { return s == Blue || s == Green }

// Driver repoints traffic. The cutover calls Check before the freeze, then
// Freeze, Switch and Unfreeze; on any failure after Freeze it calls
// Switch(Blue) and Unfreeze. Every method is safe to call again.
type Driver interface {
	// Name is "pgbouncer", "haproxy" or "exec".
	Name() string
	// Check verifies that the switch is reachable and configured as
	// expected, without changing anything.
	Check(ctx context.Context) error
	// Current says where traffic goes now. ErrUnknownSide when the driver
	// cannot tell (exec).
	Current(ctx context.Context) (Side, error)
	// Freeze holds new transactions where the driver can (PgBouncer PAUSE),
	// bounded by ctx; when ctx expires first it lets traffic run again and
	// returns an error wrapping ErrFreezeTimeout.
	Freeze(ctx context.Context) error
	// Switch repoints traffic to a side and confirms it took effect.
	Switch(ctx context.Context, to Side) error
	// Unfreeze lets held transactions run; a no-op when nothing is held.
	Unfreeze(ctx context.Context) error
	// Describe lists, for a plan, what Switch(to) changes.
	Describe(to Side) []string
	// Close releases connections the driver keeps open between calls.
	Close() error
}

// BeforeFreezer is a driver with work to do just before a freeze that must
// not count in the write pause (traffic still flows while it runs).
type BeforeFreezer interface {
	BeforeFreeze(ctx context.Context)
}

// FreezeChecker is a driver that can tell whether its freeze still holds:
// PgBouncer forgets a PAUSE when it restarts, and then lets writes reach
// blue while the cutover believes it frozen. The cutover asks just before
// the switch and aborts when the freeze was lost.
type FreezeChecker interface {
	// Frozen says whether the freeze Freeze put in place is still in place.
	Frozen(ctx context.Context) (bool, error)
}

// ErrNotSwitched is wrapped by Switch when it failed before changing
// anything (the switch could not be reached at all): traffic is where it
// was, and an abort need not, and often could not, switch back.
var ErrNotSwitched = errors.New("the switch was not reached: traffic did not move")

// ErrFreezeTimeout is wrapped by Freeze when its context expired before the
// freeze was in place (PgBouncer waits for running transactions to end).
var ErrFreezeTimeout = errors.New("freeze did not complete in time")

// ServingReporter is a driver that can say whether a side takes new
// connections now (HAProxy: in service and passing its health check), not
// only where the configuration points: a side that does not has taken no
// writes since.
type ServingReporter interface {
	Serving(ctx context.Context, side Side) (bool, error)
}

// ErrUnknownSide is returned by Current when the driver cannot observe
// where traffic goes (an exec hook only runs commands).
var ErrUnknownSide = errors.New("the switch cannot tell where traffic goes")

// Endpoint is a database as the switch must reach it: host (a name, an
// address or a Unix socket folder), port and database name.
type Endpoint struct {
	Host   string
	Port   int
	DBName string
}

func (e Endpoint) String() string {
	return fmt.Sprintf("host=%s port=%d dbname=%s", e.Host, e.Port, e.DBName)
}

// EndpointFromDSN takes host, port and database from a connection string.
// The DSN is never echoed in errors (it may carry secrets).
func EndpointFromDSN(dsn string) (Endpoint, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return Endpoint{}, errors.New("cannot parse the connection string (host, port and database are needed for the switch)")
	}
	return Endpoint{Host: cfg.Host, Port: int(cfg.Port), DBName: cfg.Database}, nil
}

// New builds the driver the spec's cutover.switch names. blue and green are
// the databases as the switch reaches them (PgBouncer may see them under
// other addresses than pgshift does).
func New(spec *spec.Spec, blue, green Endpoint) (Driver, error) {
	sw := spec.Cutover.Switch
	n := 0
	for _, set := range []bool{sw.PgBouncer != nil, sw.HAProxy != nil, sw.Exec != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil, fmt.Errorf("cutover.switch: exactly one of pgbouncer, haproxy and exec must be set (found %d)", n)
	}
	for _, ep := range []struct {
		side Side
		e    *Endpoint
	}{{Blue, &blue}, {Green, &green}} {
		if ep.e.Port == 0 {
			ep.e.Port = 5432
		}
		if ep.e.Host == "" || ep.e.DBName == "" {
			return nil, fmt.Errorf("cutover.switch: the %s database needs a host and a database name (got %s)", ep.side, ep.e)
		}
	}
	if sameEndpoint(blue, green) {
		return nil, fmt.Errorf("cutover.switch: blue and green are the same database (%s): nothing to switch", blue)
	}
	switch {
	case sw.PgBouncer != nil:
		return newPgBouncer(sw.PgBouncer, blue, green)
	case sw.HAProxy != nil:
		return newHAProxy(sw.HAProxy)
	default:
		return newExec(spec, sw.Exec)
	}
}

// sameEndpoint compares endpoints, taking the loopback names as one host.
func sameEndpoint(a, b Endpoint) bool {
	return sameHost(a.Host, b.Host) && a.Port == b.Port && a.DBName == b.DBName
}

func sameHost(a, b string) bool {
	if a == b {
		return true
	}
	return isLoopback(a) && isLoopback(b)
}

func isLoopback(h string) bool {
	switch strings.ToLower(h) {
	case "localhost", "127.0.0.1", "::1", "[::1]":
		return true
	}
	return false
}

// tail keeps the last max bytes of s, for command output in errors.
func tail(s string, max int) string {
	s = strings.TrimSpace(s)
	if len(s) <= max {
		return s
	}
	return "..." + s[len(s)-max:]
}
