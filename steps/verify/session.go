package verify

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/pgshift/pgshift/internal/pg"
)

// SessionSettings are pinned on every connection before any row is turned
// into text: the text output of dates, intervals, floats, bytea, money and
// reg* types depends on them, and blue and green must print the same data the
// same way.
var SessionSettings = [][2]string{
	{"DateStyle", "ISO, YMD"},
	{"IntervalStyle", "postgres"},
	{"TimeZone", "UTC"},
	{"extra_float_digits", "3"},
	{"bytea_output", "hex"},
	{"lc_monetary", "C"},
	{"search_path", "pg_catalog"},
	// Verification only reads: refuse any write by mistake.
	{"default_transaction_read_only", "on"},
	{"statement_timeout", "0"},
	{"application_name", "pgshift verify"},
}

// Connector opens a dedicated connection to one side.
type Connector func(ctx context.Context) (*pgx.Conn, error)

// pinSession applies SessionSettings to conn in one round trip.
func pinSession(ctx context.Context, conn *pgx.Conn) error {
	var calls []string
	var args []any
	for i, s := range SessionSettings {
		calls = append(calls, fmt.Sprintf("pg_catalog.set_config($%d, $%d, false)", 2*i+1, 2*i+2))
		args = append(args, s[0], s[1])
	}
	if _, err := conn.Exec(ctx, "SELECT "+strings.Join(calls, ", "), args...); err != nil {
		return fmt.Errorf("pin session settings: %w", err)
	}
	// JIT compilation costs more than it saves on chunk-sized aggregates.
	// The setting exists from PostgreSQL 11; older servers have no JIT.
	if _, err := conn.Exec(ctx, "SELECT pg_catalog.set_config('jit', 'off', false) WHERE current_setting('server_version_num')::int >= 110000"); err != nil {
		return fmt.Errorf("set jit = off: %w", err)
	}
	return nil
}

// side is one pinned connection to blue or green.
type side struct {
	name string // "blue" or "green"
	conn *pgx.Conn
}

func openSide(ctx context.Context, name string, connect Connector) (*side, error) {
	conn, err := connect(ctx)
	if err != nil {
		return nil, pg.OnSide(name, err)
	}
	if err := pinSession(ctx, conn); err != nil {
		conn.Close(ctx)
		return nil, pg.OnSide(name, fmt.Errorf("%s: %w", name, err))
	}
	return &side{name: name, conn: conn}, nil
}

func (s *side) close() {
	if s != nil && s.conn != nil {
		s.conn.Close(context.Background())
	}
}
