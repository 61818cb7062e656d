package engine

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/spec"
)

// Database is one side of the upgrade (blue or green) as the steps reach it.
// It connects lazily, takes the password from the environment variable the
// spec names (never from the spec itself), and never prints it.
type Database struct {
	Role        string // "blue" or "green": used in messages and logs
	DSN         string // as written in the spec: holds no password
	PasswordEnv string
	// SubscriptionDSN is how the other side's subscription reaches this
	// database; empty means DSN (see PeerDSN).
	SubscriptionDSN string

	mu   sync.Mutex
	pool *pgxpool.Pool
}

// NewDatabase describes one side; nothing is opened until first use.
func NewDatabase(role string, ep spec.Endpoint) *Database {
	return &Database{Role: role, DSN: ep.DSN, PasswordEnv: ep.PasswordEnv, SubscriptionDSN: ep.SubscriptionDSN}
}

// PeerDSN is how the other side's server, and the switch, reach this
// database: its subscription_dsn when the spec sets one, else its dsn; field
// names the spec field, for messages. A subscription_dsn that leaves out
// the database or the user takes them from dsn: it usually changes only
// where the server is, and password_env belongs to dsn's user.
func (d *Database) PeerDSN() (dsn, field string, err error) {
	side := "source"
	if d.Role == "green" {
		side = "target"
	}
	if d.SubscriptionDSN == "" {
		return d.DSN, side + ".dsn", nil
	}
	field = side + ".subscription_dsn"
	kv, err := pg.ParseConninfo(d.SubscriptionDSN)
	if err != nil {
		return "", field, err
	}
	if base, err := pg.ParseConninfo(d.DSN); err == nil {
		for _, k := range []string{"dbname", "user"} {
			if kv[k] == "" && base[k] != "" {
				kv[k] = base[k]
			}
		}
	}
	return pg.FormatConninfo(kv), field, nil
}

// Password is the password from PasswordEnv, or "" when none is set (libpq's
// .pgpass and PGPASSWORD mechanisms still apply then).
func (d *Database) Password() string {
	if d.PasswordEnv == "" {
		return ""
	}
	return os.Getenv(d.PasswordEnv)
}

// ConnConfig parses the DSN and applies the password. Parse errors never
// echo the DSN (it could carry secrets a user pasted by mistake).
func (d *Database) ConnConfig() (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(d.DSN)
	if err != nil {
		return nil, fmt.Errorf("%s: cannot parse dsn: %w", d.Role, redactErr(err))
	}
	if p := d.Password(); p != "" {
		cfg.Password = p
	}
	return cfg, nil
}

// Connect opens a single dedicated connection (for replication-protocol work,
// snapshots or session settings that must not leak into the pool).
func (d *Database) Connect(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := d.ConnConfig()
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, d.connectError(err)
	}
	return conn, nil
}

// Pool returns the shared pool, opening it on first use.
func (d *Database) Pool(ctx context.Context) (*pgxpool.Pool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pool != nil {
		return d.pool, nil
	}
	pcfg, err := pgxpool.ParseConfig(d.DSN)
	if err != nil {
		return nil, fmt.Errorf("%s: cannot parse dsn: %w", d.Role, redactErr(err))
	}
	if p := d.Password(); p != "" {
		pcfg.ConnConfig.Password = p
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, d.connectError(err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, d.connectError(err)
	}
	d.pool = pool
	return pool, nil
}

// Opened says whether the shared pool is open: the side was reached.
func (d *Database) Opened() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pool != nil
}

// Close releases the pool if one was opened.
func (d *Database) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pool != nil {
		d.pool.Close()
		d.pool = nil
	}
}

// Redacted is the DSN fit for messages: host, port, user and database only.
func (d *Database) Redacted() string {
	cfg, err := pgx.ParseConfig(d.DSN)
	if err != nil {
		return d.Role + " (unparsable dsn)"
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
}

// SubprocessEnv is the environment for libpq tools (pg_dump, psql) run
// against this side: the password travels in PGPASSWORD, never in argv.
func (d *Database) SubprocessEnv() []string {
	env := os.Environ()
	if p := d.Password(); p != "" {
		env = append(env, "PGPASSWORD="+p)
	}
	return env
}

// connectError names the side and its address, and for a refused login
// says where the password comes from (never what it is).
func (d *Database) connectError(err error) error {
	err = fmt.Errorf("%s: connect to %s: %w", d.Role, d.Redacted(), redactErr(err))
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%w (is %s running and accepting TCP connections there? start it, or fix the host and port in %s)", err, d.Role, d.specField()+".dsn")
	}
	var unknownCA x509.UnknownAuthorityError
	var wrongHost x509.HostnameError
	switch {
	case errors.As(err, &unknownCA):
		return fmt.Errorf("%w (%s's certificate is not signed by the CA pgshift trusts: point sslrootcert in %s.dsn at the CA file that signed it)", err, d.Role, d.specField())
	case errors.As(err, &wrongHost):
		names := "none"
		if c := wrongHost.Certificate; c != nil {
			var all []string
			all = append(all, c.DNSNames...)
			for _, ip := range c.IPAddresses {
				all = append(all, ip.String())
			}
			if len(all) > 0 {
				names = strings.Join(all, ", ")
			}
		}
		return fmt.Errorf("%w (with sslmode=verify-full the host in %s.dsn must be a name %s's certificate holds (%s): use one of those, or have the certificate made for this host)", err, d.specField(), d.Role, names)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || (pgErr.Code != "28P01" && pgErr.Code != "28000") {
		return err
	}
	field := d.specField()
	switch {
	case d.PasswordEnv == "":
		return fmt.Errorf("%w (the spec sets no %s.password_env: name an environment variable holding the password there, or use a .pgpass file)", err, field)
	case d.Password() == "":
		return fmt.Errorf("%w (%s.password_env is %s, which is not set or empty in this environment: export it)", err, field, d.PasswordEnv)
	}
	return fmt.Errorf("%w (check the password in %s, named by %s.password_env, and pg_hba.conf on %s)", err, d.PasswordEnv, field, d.Role)
}

// specField is the spec's key for this side.
func (d *Database) specField() string {
	if d.Role == "green" {
		return "target"
	}
	return "source"
}

// redactErr drops the password from errors that quote a connection string.
func redactErr(err error) error {
	return err // pgconn already masks passwords in its ConnectError; kept as the single place to harden.
}
