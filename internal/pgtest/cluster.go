package pgtest

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// ClusterOptions adjusts a cluster.
type ClusterOptions struct {
	// Settings are extra postgresql.conf settings; they override the rig's defaults. port is the
	// rig's to choose and cannot be set.
	Settings map[string]string
}

// defaultSettings make a cluster ready to publish and subscribe, and fast and small for tests.
var defaultSettings = map[string]string{
	"listen_addresses":                "127.0.0.1",
	"wal_level":                       "logical",
	"max_replication_slots":           "20",
	"max_wal_senders":                 "20",
	"max_logical_replication_workers": "8",
	"max_worker_processes":            "16",
	"max_connections":                 "100",
	"fsync":                           "off",
	// synchronous_commit stays on: with fsync off a commit costs a write() only, and a committed row
	// must survive Kill as it would survive a crash in production.
	"full_page_writes":  "off",
	"shared_buffers":    "64MB",
	"log_line_prefix":   "%m [%p] %q%u@%d ",
	"log_min_messages":  "warning",
	"logging_collector": "off",
}

// Cluster is a running PostgreSQL cluster of the rig; superuser postgres, trust authentication on
// loopback. It is stopped and its folder removed in t.Cleanup.
type Cluster struct {
	Major   int    // e.g. 13
	Version string // server_version without a distribution suffix, e.g. "13.23"
	Host    string // "127.0.0.1"
	Port    int
	DataDir string

	dir     string // instance folder: data/, sock/
	binDir  string
	logPath string
	user    serverUser

	mu sync.Mutex // serializes start/stop/kill
}

// StartCluster initializes and starts a cluster of a major version (13, 14, 15, 16, 17, 18) on a free
// loopback port. Missing binaries fail the test with "run `make deps`".
func StartCluster(t testing.TB, major int, opts ...ClusterOptions) *Cluster {
	t.Helper()
	c, err := startCluster(t, major, opts...)
	if err != nil {
		t.Fatalf("pgtest: start PostgreSQL %d: %v", major, err)
	}
	return c
}

// StartClusters starts clusters of the given majors concurrently (the same options for all), in
// the order given.
func StartClusters(t testing.TB, majors []int, opts ...ClusterOptions) []*Cluster {
	t.Helper()
	clusters := make([]*Cluster, len(majors))
	errs := make([]error, len(majors))
	var wg sync.WaitGroup
	for i, major := range majors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			clusters[i], errs[i] = startCluster(t, major, opts...)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("pgtest: start PostgreSQL %d: %v", majors[i], err)
		}
	}
	return clusters
}

// startCluster does the work of StartCluster without failing t, so that it may run in goroutines.
// Whatever it started is cleaned up by t.Cleanup, also on error.
func startCluster(t testing.TB, major int, opts ...ClusterOptions) (*Cluster, error) {
	binDir, err := ServerBinDir(major)
	if err != nil {
		return nil, err
	}
	u, err := lookupServerUser()
	if err != nil {
		return nil, err
	}
	dir, err := newInstanceDir(fmt.Sprintf("pg%d", major))
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		Major:   major,
		Host:    "127.0.0.1",
		DataDir: filepath.Join(dir, "data"),
		dir:     dir,
		binDir:  binDir,
		user:    u,
	}
	c.logPath = filepath.Join(c.DataDir, "server.log")
	t.Cleanup(func() { c.cleanup(t) })

	for _, d := range []string{c.DataDir, c.sockDir()} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return nil, err
		}
		if err := u.chown(d); err != nil {
			return nil, fmt.Errorf("hand %s to user %s: %w", d, u.name, err)
		}
	}
	out, err := c.run("initdb", "-D", c.DataDir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
	if err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}

	settings := maps.Clone(defaultSettings)
	settings["unix_socket_directories"] = c.sockDir()
	for _, o := range opts {
		maps.Copy(settings, o.Settings)
	}
	delete(settings, "port")
	conf, err := os.OpenFile(filepath.Join(c.DataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	_, err = fmt.Fprintf(conf, "\n# Test rig settings, port included.\ninclude 'pgtest.conf'\n")
	if cerr := conf.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}

	// Another process may bind the port we picked before the postmaster does: pick again.
	for attempt := 1; ; attempt++ {
		if c.Port, err = freePort(); err != nil {
			return nil, err
		}
		if err := c.writeSettings(settings); err != nil {
			return nil, err
		}
		out, err := c.pgCtl("start", "-l", c.logPath)
		if err == nil {
			break
		}
		log := logTail(c.logPath, 4<<10)
		if attempt < 5 && (strings.Contains(log, "could not bind") || strings.Contains(log, "Address already in use")) {
			continue
		}
		return nil, fmt.Errorf("pg_ctl start: %v\n%s\nserver log:\n%s", err, out, log)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var version string
	if err := c.queryRow(ctx, "postgres", "SHOW server_version", &version); err != nil {
		return nil, fmt.Errorf("read server_version: %w", err)
	}
	c.Version, _, _ = strings.Cut(version, " ") // Debian: "15.20 (Debian 15.20-0+deb12u1)"
	return c, nil
}

func (c *Cluster) sockDir() string { return filepath.Join(c.dir, "sock") }

// writeSettings writes the rig's settings file, included from postgresql.conf.
func (c *Cluster) writeSettings(settings map[string]string) error {
	var b strings.Builder
	b.WriteString("# Written by the pgshift test rig.\n")
	fmt.Fprintf(&b, "port = %d\n", c.Port)
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		fmt.Fprintf(&b, "%s = '%s'\n", k, strings.ReplaceAll(settings[k], "'", "''"))
	}
	path := filepath.Join(c.DataDir, "pgtest.conf")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return err
	}
	return c.user.chown(path)
}

// run runs one of the cluster's server programs as the server user.
func (c *Cluster) run(program string, args ...string) (string, error) {
	cmd := c.user.command(c.dir, filepath.Join(c.binDir, program), args...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// pgCtl runs pg_ctl on the data folder, waiting for the operation to finish.
func (c *Cluster) pgCtl(action string, args ...string) (string, error) {
	return c.run("pg_ctl", append([]string{action, "-D", c.DataDir, "-w", "-t", "120"}, args...)...)
}

// DSN is a connection string for database db as superuser postgres. The
// name is percent-encoded: CreateDatabase takes any name.
func (c *Cluster) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@%s:%d/%s?sslmode=disable", c.Host, c.Port, url.PathEscape(db))
}

// Stop shuts the cluster down (fast mode: sessions are disconnected).
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if out, err := c.pgCtl("stop", "-m", "fast"); err != nil {
		t.Fatalf("pgtest: stop PostgreSQL %d on port %d: %v\n%s", c.Major, c.Port, err, out)
	}
}

// Start starts a stopped or killed cluster again on the same port.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if out, err := c.pgCtl("start", "-l", c.logPath); err != nil {
		t.Fatalf("pgtest: start PostgreSQL %d on port %d: %v\n%s\nserver log:\n%s", c.Major, c.Port, err, out, logTail(c.logPath, 4<<10))
	}
}

// Restart stops (fast mode) and starts the cluster.
func (c *Cluster) Restart(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if out, err := c.pgCtl("restart", "-m", "fast", "-l", c.logPath); err != nil {
		t.Fatalf("pgtest: restart PostgreSQL %d on port %d: %v\n%s\nserver log:\n%s", c.Major, c.Port, err, out, logTail(c.logPath, 4<<10))
	}
}

// Kill sends SIGKILL to the postmaster, as a crash would, and waits until its children have
// noticed and exited, so that Start can run crash recovery right after.
func (c *Cluster) Kill(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	pid, err := readPidFile(filepath.Join(c.DataDir, "postmaster.pid"))
	if err != nil {
		t.Fatalf("pgtest: kill PostgreSQL %d on port %d: not running? %v", c.Major, c.Port, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("pgtest: kill -9 postmaster %d of PostgreSQL %d: %v", pid, c.Major, err)
	}
	// A process being killed drops its working folder before it turns zombie, so processesIn stops
	// seeing the postmaster while it still holds its pid: wait for that first.
	waitDeadOrZombie(pid, 10*time.Second)
	// The children exit when they notice the postmaster is gone; until they have, the old shared
	// memory is in use and a new postmaster would refuse to start.
	if !waitProcessesGone(c.DataDir, 30*time.Second) {
		killProcessesIn(c.DataDir, 10*time.Second)
	}
	// Where the init process reaps orphans late, the dead postmaster lingers as a zombie and a new
	// one would take its lock files for a live server: every process is dead, so they are stale.
	if !processAlive(pid) || isZombie(pid) {
		_ = os.Remove(filepath.Join(c.DataDir, "postmaster.pid"))
		_ = os.Remove(filepath.Join(c.sockDir(), fmt.Sprintf(".s.PGSQL.%d.lock", c.Port)))
	}
}

// cleanup stops the server however it is (running, stopped, killed), prints its log when the test
// failed, and removes its folder.
func (c *Cluster) cleanup(t testing.TB) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(processesIn(c.DataDir)) > 0 {
		_, _ = c.pgCtl("stop", "-m", "immediate")
		killProcessesIn(c.DataDir, 10*time.Second)
	}
	logOnFailure(t, fmt.Sprintf("PostgreSQL %d on port %d", c.Major, c.Port), c.logPath)
	if err := os.RemoveAll(c.dir); err != nil {
		t.Logf("pgtest: remove %s: %v", c.dir, err)
	}
}

// connect opens a connection that sends every query with the simple protocol, so that one call may
// carry several statements.
func (c *Cluster) connect(ctx context.Context, db string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(c.DSN(db))
	if err != nil {
		return nil, err
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	return pgx.ConnectConfig(ctx, cfg)
}

func (c *Cluster) queryRow(ctx context.Context, db, sql string, dest *string) error {
	conn, err := c.connect(ctx, db)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		return err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return err
		}
		return fmt.Errorf("query returned no rows")
	}
	// The simple protocol returns text: take it as the server printed it, whatever the type.
	if v := rows.RawValues(); len(v) > 0 {
		*dest = string(v[0])
	}
	rows.Close()
	return rows.Err()
}

// CreateDatabase creates an empty database.
func (c *Cluster) CreateDatabase(t testing.TB, name string) {
	t.Helper()
	c.Exec(t, "postgres", "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
}

// Exec runs SQL (several statements allowed) in database db and fails the test on error.
func (c *Cluster) Exec(t testing.TB, db, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := c.connect(ctx, db)
	if err != nil {
		t.Fatalf("pgtest: connect to PostgreSQL %d port %d database %q: %v", c.Major, c.Port, db, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("pgtest: PostgreSQL %d port %d database %q: %v\nSQL: %s", c.Major, c.Port, db, err, shorten(sql))
	}
}

// Scalar runs a query and returns the first column of its first row as the server's text (""
// for NULL); no row fails the test.
func (c *Cluster) Scalar(t testing.TB, db, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var v string
	if err := c.queryRow(ctx, db, sql, &v); err != nil {
		t.Fatalf("pgtest: PostgreSQL %d port %d database %q: %v\nSQL: %s", c.Major, c.Port, db, err, shorten(sql))
	}
	return v
}

// LoadSQLFile runs a SQL script (a plain pg_dump, say) with psql, stopping at the first error.
func (c *Cluster) LoadSQLFile(t testing.TB, db, path string) {
	t.Helper()
	psql := RequireClientBin(t, "psql")
	cmd := execCommand(psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", c.DSN(db), "-f", path)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pgtest: load %s into PostgreSQL %d port %d database %q: %v\n%s", path, c.Major, c.Port, db, err, tailString(string(out), 8<<10))
	}
}

func shorten(s string) string {
	if len(s) > 500 {
		return s[:500] + "..."
	}
	return s
}

func tailString(s string, max int) string {
	if len(s) > max {
		return "..." + s[len(s)-max:]
	}
	return s
}

// Conn opens a connection to db that the test's cleanup closes.
func (c *Cluster) Conn(t testing.TB, db string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := c.connect(ctx, db)
	if err != nil {
		t.Fatalf("connect to %s: %v", db, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}
