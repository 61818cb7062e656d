package pgtest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PgBouncerAdminUser is the user of PgBouncer's admin console (database "pgbouncer").
const PgBouncerAdminUser = "pgbouncer"

// PgBouncerOptions configures StartPgBouncer.
type PgBouncerOptions struct {
	// Databases are the [databases] entries: name -> "host=127.0.0.1 port=N dbname=X".
	Databases map[string]string
	// PoolMode is session, transaction (default) or statement.
	PoolMode string
	// Users are accepted besides postgres and the admin user (trust authentication, but PgBouncer
	// still wants every user listed in its auth_file).
	Users []string
	// Settings are extra [pgbouncer] settings; they override the rig's.
	Settings map[string]string
}

// PgBouncer is a running PgBouncer of the rig, on 127.0.0.1, stopped in t.Cleanup.
type PgBouncer struct {
	Host string // "127.0.0.1"
	Port int
	// ConfigPath is pgbouncer.ini. Code that rewrites it must keep it readable by the server user
	// (postgres when the tests run as root): preserve its mode when replacing the file.
	ConfigPath string
	// AdminDSN reaches the admin console as PgBouncerAdminUser, allowed PAUSE, RESUME, RELOAD, SHOW.
	// The console speaks only the simple query protocol: with pgx, use QueryExecModeSimpleProtocol.
	AdminDSN string
	LogPath  string

	daemon daemon
}

// StartPgBouncer starts PgBouncer on a free loopback port with a generated configuration.
func StartPgBouncer(t testing.TB, opts PgBouncerOptions) *PgBouncer {
	t.Helper()
	b, err := startPgBouncer(t, opts)
	if err != nil {
		t.Fatalf("pgtest: start PgBouncer: %v", err)
	}
	return b
}

func startPgBouncer(t testing.TB, opts PgBouncerOptions) (*PgBouncer, error) {
	bin, err := requireSystemBin("pgbouncer", "/usr/sbin/pgbouncer", "/usr/bin/pgbouncer", "/usr/local/bin/pgbouncer")
	if err != nil {
		return nil, err
	}
	u, err := lookupServerUser()
	if err != nil {
		return nil, err
	}
	dir, err := newInstanceDir("pgbouncer")
	if err != nil {
		return nil, err
	}
	b := &PgBouncer{Host: "127.0.0.1"}
	b.daemon = daemon{name: "PgBouncer", dir: dir, logPath: dir + "/pgbouncer.log"}
	b.LogPath = b.daemon.logPath
	t.Cleanup(func() { b.daemon.cleanup(t, b.Port) })

	users := append([]string{"postgres", PgBouncerAdminUser}, opts.Users...)
	var userlist strings.Builder
	for _, name := range users {
		fmt.Fprintf(&userlist, "%q \"\"\n", name)
	}
	authFile, err := writeConfig(dir, "userlist.txt", userlist.String())
	if err != nil {
		return nil, err
	}
	if err := u.chown(dir); err != nil { // PgBouncer writes its unix socket here
		return nil, err
	}
	poolMode := opts.PoolMode
	if poolMode == "" {
		poolMode = "transaction"
	}

	for attempt := 1; ; attempt++ {
		if b.Port, err = freePort(); err != nil {
			return nil, err
		}
		settings := map[string]string{
			"listen_addr":     b.Host,
			"listen_port":     fmt.Sprint(b.Port),
			"unix_socket_dir": dir,
			"auth_type":       "trust",
			"auth_file":       authFile,
			"admin_users":     PgBouncerAdminUser,
			"pool_mode":       poolMode,
			// Drivers (JDBC, libpq-based ones) send it; PgBouncer refuses unknown startup parameters.
			"ignore_startup_parameters": "extra_float_digits",
			"server_login_retry":        "1",
		}
		maps.Copy(settings, opts.Settings)
		if b.ConfigPath, err = writeConfig(dir, "pgbouncer.ini", pgBouncerConfig(opts.Databases, settings)); err != nil {
			return nil, err
		}
		taken, err := b.daemon.start(u.command(dir, bin, b.ConfigPath), b.Port)
		if err == nil {
			break
		}
		if !taken || attempt == 5 {
			return nil, err
		}
	}
	b.AdminDSN = fmt.Sprintf("postgres://%s@%s:%d/pgbouncer?sslmode=disable", PgBouncerAdminUser, b.Host, b.Port)
	return b, nil
}

// pgBouncerConfig renders pgbouncer.ini, with comments as a hand-written one would have: code under
// test rewrites [databases] and must leave the rest alone.
func pgBouncerConfig(databases, settings map[string]string) string {
	var s strings.Builder
	s.WriteString(";; PgBouncer configuration written by the pgshift test rig.\n")
	s.WriteString(";; The switch to the new cluster edits only the [databases] section.\n\n")
	s.WriteString("[databases]\n")
	s.WriteString(";; name = connection string of the server behind the pool\n")
	for _, name := range slices.Sorted(maps.Keys(databases)) {
		fmt.Fprintf(&s, "%s = %s\n", name, databases[name])
	}
	s.WriteString("\n[pgbouncer]\n")
	s.WriteString(";; clients connect here; trust authentication on loopback, users listed in auth_file\n")
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		fmt.Fprintf(&s, "%s = %s\n", k, settings[k])
	}
	s.WriteString("\n;; end of configuration\n")
	return s.String()
}

// DSN is a client connection string for database db through PgBouncer, as user postgres. PgBouncer
// before 1.21 does not carry prepared statements across transaction pooling: with pgx, use
// QueryExecModeExec or QueryExecModeSimpleProtocol.
func (b *PgBouncer) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@%s:%d/%s?sslmode=disable", b.Host, b.Port, db)
}

// Admin runs one admin console command (PAUSE app, RESUME, RELOAD, SHOW POOLS...) and fails the test
// on error.
func (b *PgBouncer) Admin(t testing.TB, command string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn := b.adminConn(ctx, t)
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, command); err != nil {
		t.Fatalf("pgtest: PgBouncer admin console on port %d: %s: %v", b.Port, command, err)
	}
}

// adminConn connects to PgBouncer's admin console, which speaks only the
// simple query protocol; it fails the test when it cannot.
func (b *PgBouncer) adminConn(ctx context.Context, t testing.TB) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(b.AdminDSN)
	if err != nil {
		t.Fatalf("pgtest: PgBouncer admin DSN: %v", err)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("pgtest: connect to PgBouncer admin console on port %d: %v", b.Port, err)
	}
	return conn
}
