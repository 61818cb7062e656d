package switcher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgshift/pgshift/internal/atomicfile"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/spec"
)

// TestSwitchDrivers runs the PgBouncer and HAProxy drivers against real
// servers: blue is PostgreSQL 13, green 17, each with a database "app".
func TestSwitchDrivers(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
	clusters := pgtest.StartClusters(t, []int{13, 17})
	blueC, greenC := clusters[0], clusters[1]
	for _, c := range clusters {
		c.CreateDatabase(t, "app")
		c.Exec(t, "app", "CREATE TABLE ticks (id bigserial PRIMARY KEY, port int NOT NULL)")
	}
	blue := Endpoint{Host: blueC.Host, Port: blueC.Port, DBName: "app"}
	green := Endpoint{Host: greenC.Host, Port: greenC.Port, DBName: "app"}

	t.Run("pgbouncer", func(t *testing.T) { testPgBouncer(t, blueC, greenC, blue, green) })
	t.Run("haproxy", func(t *testing.T) { testHAProxy(t, blue, green) })
}

func testPgBouncer(t *testing.T, blueC, greenC *pgtest.Cluster, blue, green Endpoint) {
	bouncer := pgtest.StartPgBouncer(t, pgtest.PgBouncerOptions{
		Databases: map[string]string{
			"app":         fmt.Sprintf("host=%s port=%d dbname=app pool_size=4", blue.Host, blue.Port),
			"app_archive": fmt.Sprintf("host=%s port=%d dbname=postgres", blue.Host, blue.Port),
			"app_session": fmt.Sprintf("host=%s port=%d dbname=app pool_mode=session", blue.Host, blue.Port),
		},
		PoolMode: "transaction",
		// PgBouncer's default: a server login cut short by PAUSE would hold
		// the pool for this long if the driver did not lift it.
		Settings: map[string]string{"server_login_retry": "15"},
	})
	// PgBouncer runs as postgres; give it the file the way a package would,
	// so that the owner and mode must survive the rewrite.
	uid, gid, err := pgtest.ServerUserIDs()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(bouncer.ConfigPath, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(bouncer.ConfigPath, 0o640); err != nil {
		t.Fatal(err)
	}
	sp := &spec.Spec{Cutover: spec.CutoverSpec{Switch: spec.SwitchSpec{PgBouncer: &spec.PgBouncerSwitch{
		AdminDSN: bouncer.AdminDSN, Config: bouncer.ConfigPath, Database: "app",
	}}}}
	drv, err := New(sp, blue, green)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { drv.Close() })
	ctx := context.Background()
	port := map[Side]int{Blue: blue.Port, Green: green.Port}

	t.Run("check and current", func(t *testing.T) {
		if err := drv.Check(ctx); err != nil {
			t.Fatalf("Check: %v", err)
		}
		if side, err := drv.Current(ctx); err != nil || side != Blue {
			t.Fatalf("Current = %q, %v; want blue", side, err)
		}
		lines := drv.Describe(Green)
		want := fmt.Sprintf("[databases] app: host=127.0.0.1 port=%d dbname=app -> host=127.0.0.1 port=%d dbname=app", blue.Port, green.Port)
		if len(lines) == 0 || lines[0] != want {
			t.Errorf("Describe(green) = %q, want first line %q", lines, want)
		}
	})

	t.Run("check refuses a wrong setup", func(t *testing.T) {
		for _, c := range []struct {
			name string
			sw   spec.PgBouncerSwitch
			want string
		}{
			{"unknown database", spec.PgBouncerSwitch{AdminDSN: bouncer.AdminDSN, Config: bouncer.ConfigPath, Database: "nope"}, `pgbouncer has no database "nope"`},
			{"session pooling", spec.PgBouncerSwitch{AdminDSN: bouncer.AdminDSN, Config: bouncer.ConfigPath, Database: "app_session"}, "pool_mode is session"},
			{"other file", spec.PgBouncerSwitch{AdminDSN: bouncer.AdminDSN, Config: copyFile(t, bouncer.ConfigPath), Database: "app"}, "neither is nor includes"},
			{"password env unset", spec.PgBouncerSwitch{AdminDSN: bouncer.AdminDSN, AdminPasswordEnv: "PGSHIFT_TEST_UNSET_PASSWORD", Config: bouncer.ConfigPath, Database: "app"}, "PGSHIFT_TEST_UNSET_PASSWORD"},
		} {
			sw := c.sw
			d, err := New(&spec.Spec{Cutover: spec.CutoverSpec{Switch: spec.SwitchSpec{PgBouncer: &sw}}}, blue, green)
			if err != nil {
				t.Fatal(err)
			}
			err = d.Check(ctx)
			d.Close()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: Check = %v, want an error containing %q", c.name, err, c.want)
			}
		}
	})

	t.Run("a dropped admin connection is replaced", func(t *testing.T) {
		pb := drv.(*pgBouncer)
		if pb.conn == nil {
			t.Fatal("no admin connection kept after Check")
		}
		pb.conn.Conn().Close() // as if PgBouncer or the network dropped it
		if side, err := drv.Current(ctx); err != nil || side != Blue {
			t.Fatalf("Current after the admin connection dropped = %q, %v", side, err)
		}
	})

	t.Run("freeze waits for an open transaction", func(t *testing.T) {
		client := connectSimple(t, bouncer.DSN("app"))
		mustExec(t, client, "BEGIN")
		mustExec(t, client, "SELECT 1")
		done := make(chan error, 1)
		go func() {
			fctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			done <- drv.Freeze(fctx)
		}()
		waitPaused(t, bouncer, "app", true)
		select {
		case err := <-done:
			t.Fatalf("Freeze returned (%v) while a client transaction was still open", err)
		default:
		}
		mustExec(t, client, "COMMIT")
		if err := <-done; err != nil {
			t.Fatalf("Freeze: %v", err)
		}
		if err := drv.Unfreeze(ctx); err != nil {
			t.Fatalf("Unfreeze: %v", err)
		}
		if err := drv.Unfreeze(ctx); err != nil {
			t.Fatalf("second Unfreeze (not paused): %v", err)
		}
		waitPaused(t, bouncer, "app", false)
	})

	t.Run("freeze timeout resumes and the client sees no error", func(t *testing.T) {
		client := connectSimple(t, bouncer.DSN("app"))
		mustExec(t, client, "BEGIN")
		mustExec(t, client, "SELECT 1")
		fctx, cancel := context.WithTimeout(ctx, time.Second)
		err := drv.Freeze(fctx)
		cancel()
		if !errors.Is(err, ErrFreezeTimeout) {
			t.Fatalf("Freeze with a short deadline = %v, want ErrFreezeTimeout", err)
		}
		// Resumed: another client gets through (a paused database would
		// hold it until the deadline).
		other := connectSimple(t, bouncer.DSN("app"))
		qctx, qcancel := context.WithTimeout(ctx, 20*time.Second)
		defer qcancel()
		var one int
		if err := other.QueryRow(qctx, "SELECT 1").Scan(&one); err != nil {
			t.Fatalf("query after the aborted freeze: %v", err)
		}
		if _, err := client.Exec(qctx, "COMMIT"); err != nil {
			t.Fatalf("the client whose transaction outlived the freeze got an error: %v", err)
		}
		// The driver's admin connection was dropped by the deadline; it
		// reconnects.
		if side, err := drv.Current(ctx); err != nil || side != Blue {
			t.Fatalf("Current after the aborted freeze = %q, %v", side, err)
		}
	})

	t.Run("switch under load", func(t *testing.T) {
		beforeBytes, err := os.ReadFile(bouncer.ConfigPath)
		if err != nil {
			t.Fatal(err)
		}
		loop := startQueryLoop(t, bouncer.DSN("app"))
		loop.waitFor(t, port[Blue])
		bench := startPgbench(t, bouncer.Port, "app", 8)
		waitRows(t, blueC, "app", "SELECT count(*) FROM ticks")

		var cycles []time.Duration
		var phases []string // freeze+switch+unfreeze
		sides := []Side{Green, Blue, Green, Blue, Green}
		for i, to := range sides {
			drv.(BeforeFreezer).BeforeFreeze(ctx) // as the cutover does, before timing the pause
			start := time.Now()
			fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if err := drv.Freeze(fctx); err != nil {
				t.Fatalf("Freeze: %v", err)
			}
			frozen := time.Now()
			if err := drv.Switch(fctx, to); err != nil {
				t.Fatalf("Switch(%s): %v", to, err)
			}
			switched := time.Now()
			if err := drv.Unfreeze(fctx); err != nil {
				t.Fatalf("Unfreeze: %v", err)
			}
			phases = append(phases, fmt.Sprintf("%v+%v+%v", frozen.Sub(start).Round(time.Millisecond), switched.Sub(frozen).Round(time.Millisecond), time.Since(switched).Round(time.Millisecond)))
			cancel()
			cycles = append(cycles, time.Since(start))
			time.Sleep(200 * time.Millisecond) // let pgbench write on this side
			after := time.Now()
			loop.waitFor(t, port[to])
			if bad := loop.startedAfter(after, port[to]); len(bad) > 0 {
				t.Errorf("cycle %d: queries started after the switch to %s reached ports %v", i, to, bad)
			}
			if side, err := drv.Current(ctx); err != nil || side != to {
				t.Fatalf("Current = %q, %v; want %s", side, err, to)
			}
			if i == 0 {
				afterBytes, _ := os.ReadFile(bouncer.ConfigPath)
				assertOnlyEntryLineChanged(t, beforeBytes, afterBytes, "app")
				if !strings.Contains(string(afterBytes), fmt.Sprintf("app = host=127.0.0.1 port=%d dbname=app pool_size=4\n", green.Port)) {
					t.Errorf("entry not rewritten as expected:\n%s", afterBytes)
				}
				st := statT(t, bouncer.ConfigPath)
				if int(st.Uid) != uid || int(st.Gid) != gid || st.Mode&0o7777 != 0o640 {
					t.Errorf("config owner/mode %d:%d %o, want %d:%d 640", st.Uid, st.Gid, st.Mode&0o7777, uid, gid)
				}
			}
		}
		stats := loop.stop(t)
		processed := bench.wait(t)
		onBlue, _ := strconv.Atoi(blueC.Scalar(t, "app", "SELECT count(*) FROM ticks"))
		onGreen, _ := strconv.Atoi(greenC.Scalar(t, "app", "SELECT count(*) FROM ticks"))
		t.Logf("pgbench through PgBouncer: %d transactions committed, rows on blue %d, on green %d", processed, onBlue, onGreen)
		if onBlue == 0 || onGreen == 0 || onBlue+onGreen != processed {
			t.Errorf("pgbench committed %d transactions; rows on blue %d + green %d = %d", processed, onBlue, onGreen, onBlue+onGreen)
		}
		if stats.longest > time.Second {
			logData, _ := os.ReadFile(bouncer.LogPath)
			t.Logf("a query took %v (started %v); PgBouncer's log:\n%s", stats.longest, stats.longestAt.Format("15:04:05.000"), logData)
		}
		if got := showConfig(t, bouncer, "server_login_retry"); got != "15" {
			t.Errorf("server_login_retry = %q after the switches, want the configured 15 restored", got)
		}
		if len(stats.errs) > 0 {
			t.Errorf("the client saw %d errors across the switches, first: %v", len(stats.errs), stats.errs[0])
		}
		sorted := slices.Clone(cycles)
		sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
		t.Logf("PgBouncer Freeze+Switch+Unfreeze per cycle: %v", phases)
		t.Logf("PgBouncer Freeze+Switch+Unfreeze over %d cycles: median %v, max %v (all %v); client: %d queries, longest %v, 0 errors expected, %d seen",
			len(cycles), sorted[len(sorted)/2], sorted[len(sorted)-1], cycles, stats.queries, stats.longest, len(stats.errs))
	})

	t.Run("switch is idempotent", func(t *testing.T) {
		before := statT(t, bouncer.ConfigPath)
		if err := drv.Switch(ctx, Green); err != nil {
			t.Fatalf("Switch(green) again: %v", err)
		}
		if after := statT(t, bouncer.ConfigPath); after.Ino != before.Ino {
			t.Errorf("the file was rewritten although the entry already pointed at green")
		}
		if lines := drv.Describe(Green); len(lines) != 1 || !strings.Contains(lines[0], "already points at green") {
			t.Errorf("Describe(green) when on green = %q", lines)
		}
	})

	t.Run("entry edited but not reloaded is repaired", func(t *testing.T) {
		// A crash between the rewrite and RELOAD leaves the file on blue
		// and PgBouncer on green (or the reverse): Switch finishes the job.
		data, _ := os.ReadFile(bouncer.ConfigPath)
		edit, _, err := planDatabaseEdit(data, "app", blue)
		if err != nil {
			t.Fatal(err)
		}
		if err := atomicfile.Replace(bouncer.ConfigPath, edit.content); err != nil {
			t.Fatal(err)
		}
		if side, _ := drv.Current(ctx); side != Green {
			t.Fatalf("Current = %s before the reload, want green", side)
		}
		if err := drv.Check(ctx); err == nil || !strings.Contains(err.Error(), "pending edit") {
			t.Errorf("Check with a pending edit = %v", err)
		}
		if err := drv.Switch(ctx, Blue); err != nil {
			t.Fatalf("Switch(blue): %v", err)
		}
		if side, _ := drv.Current(ctx); side != Blue {
			t.Fatalf("Current = %s after Switch(blue)", side)
		}
	})
	t.Run("entry in an included file", func(t *testing.T) {
		// Move [databases] into a file the main one includes, as packaged
		// setups often do.
		data, err := os.ReadFile(bouncer.ConfigPath)
		if err != nil {
			t.Fatal(err)
		}
		cut := strings.Index(string(data), "[pgbouncer]")
		fragment := filepath.Join(filepath.Dir(bouncer.ConfigPath), "databases.ini")
		write(t, fragment, string(data[:cut]))
		main := string(data[cut:]) + "%include " + fragment + "\n"
		if err := os.WriteFile(bouncer.ConfigPath, []byte(main), 0o640); err != nil {
			t.Fatal(err)
		}
		bouncer.Admin(t, "RELOAD")

		err = drv.Check(ctx)
		if err == nil || !strings.Contains(err.Error(), "in the included file "+fragment) {
			t.Fatalf("Check with the entry in an included file = %v, want it to name %s", err, fragment)
		}
		sw := spec.PgBouncerSwitch{AdminDSN: bouncer.AdminDSN, Config: fragment, Database: "app"}
		frag, err := New(&spec.Spec{Cutover: spec.CutoverSpec{Switch: spec.SwitchSpec{PgBouncer: &sw}}}, blue, green)
		if err != nil {
			t.Fatal(err)
		}
		defer frag.Close()
		if err := frag.Check(ctx); err != nil {
			t.Fatalf("Check given the included file: %v", err)
		}
		if err := frag.Switch(ctx, Green); err != nil {
			t.Fatalf("Switch(green) in the included file: %v", err)
		}
		if side, err := frag.Current(ctx); err != nil || side != Green {
			t.Fatalf("Current = %q, %v; want green", side, err)
		}
		if after, _ := os.ReadFile(bouncer.ConfigPath); string(after) != main {
			t.Errorf("the main file changed")
		}
		if err := frag.Switch(ctx, Blue); err != nil {
			t.Fatalf("Switch(blue): %v", err)
		}
	})
}

// pgbenchRun is pgbench writing one row per transaction through a pooler.
type pgbenchRun struct {
	cmd *exec.Cmd
	out bytes.Buffer
}

func startPgbench(t *testing.T, port int, db string, seconds int) *pgbenchRun {
	t.Helper()
	bin := pgtest.RequireClientBin(t, "pgbench")
	script := filepath.Join(t.TempDir(), "tick.sql")
	write(t, script, "INSERT INTO ticks (port) VALUES (current_setting('port')::int);\n")
	r := &pgbenchRun{}
	r.cmd = exec.Command(bin, "-n", "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "postgres",
		"-c", "4", "-j", "2", "-T", strconv.Itoa(seconds), "-f", script, db)
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("pgbench: %v", err)
	}
	t.Cleanup(func() {
		if r.cmd.ProcessState == nil {
			r.cmd.Process.Kill()
			r.cmd.Wait()
		}
	})
	return r
}

// wait waits for pgbench to end, fails on any failed transaction, and
// returns the number of transactions it committed.
func (r *pgbenchRun) wait(t *testing.T) int {
	t.Helper()
	if err := r.cmd.Wait(); err != nil {
		t.Fatalf("pgbench: %v\n%s", err, r.out.String())
	}
	out := r.out.String()
	m := regexp.MustCompile(`number of transactions actually processed: (\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("pgbench output without a transaction count:\n%s", out)
	}
	if f := regexp.MustCompile(`number of failed transactions: (\d+)`).FindStringSubmatch(out); f != nil && f[1] != "0" {
		t.Errorf("pgbench: %s failed transactions across the switches\n%s", f[1], out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// waitRows waits until a count query on a cluster returns more than zero.
func waitRows(t *testing.T, c *pgtest.Cluster, db, sql string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for c.Scalar(t, db, sql) == "0" {
		if time.Now().After(deadline) {
			t.Fatalf("no rows from %s", sql)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// queryLoop is a client issuing queries through a pooler as fast as it can,
// on one connection, recording which server answered.
type queryLoop struct {
	mu      sync.Mutex
	results []loopResult
	errs    []error
	stopCh  chan struct{}
	done    chan struct{}
}

type loopResult struct {
	start, end time.Time
	port       int
}

type loopStats struct {
	queries   int
	longest   time.Duration
	longestAt time.Time
	errs      []error
}

func startQueryLoop(t *testing.T, dsn string) *queryLoop {
	conn := connectSimple(t, dsn)
	l := &queryLoop{stopCh: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for {
			select {
			case <-l.stopCh:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			start := time.Now()
			var port int
			err := conn.QueryRow(ctx, "SELECT current_setting('port')::int").Scan(&port)
			cancel()
			l.mu.Lock()
			if err != nil {
				l.errs = append(l.errs, err)
			} else {
				l.results = append(l.results, loopResult{start: start, end: time.Now(), port: port})
			}
			l.mu.Unlock()
			if err != nil {
				time.Sleep(10 * time.Millisecond)
			}
		}
	}()
	t.Cleanup(func() { l.stopOnce() })
	return l
}

func (l *queryLoop) stopOnce() {
	select {
	case <-l.stopCh:
	default:
		close(l.stopCh)
	}
	<-l.done
}

// waitFor waits until a query answered from the given port.
func (l *queryLoop) waitFor(t *testing.T, port int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		l.mu.Lock()
		n := len(l.results)
		ok := n > 0 && l.results[n-1].port == port
		l.mu.Unlock()
		if ok {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("the client never reached port %d", port)
}

// startedAfter lists ports, other than want, that answered queries started
// after t0.
func (l *queryLoop) startedAfter(t0 time.Time, want int) []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	var bad []int
	for _, r := range l.results {
		if r.start.After(t0) && r.port != want {
			bad = append(bad, r.port)
		}
	}
	return bad
}

func (l *queryLoop) stop(t *testing.T) loopStats {
	l.stopOnce()
	l.mu.Lock()
	defer l.mu.Unlock()
	s := loopStats{queries: len(l.results), errs: l.errs}
	for _, r := range l.results {
		if d := r.end.Sub(r.start); d > s.longest {
			s.longest, s.longestAt = d, r.start
		}
	}
	return s
}

func connectSimple(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func mustExec(t *testing.T, conn *pgx.Conn, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// showConfig reads one setting from PgBouncer's SHOW CONFIG.
func showConfig(t *testing.T, b *pgtest.PgBouncer, key string) string {
	t.Helper()
	cfg, err := pgconn.ParseConfig(b.AdminDSN)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	results, err := conn.Exec(ctx, "SHOW CONFIG").ReadAll()
	if err != nil {
		t.Fatalf("SHOW CONFIG: %v", err)
	}
	for _, r := range results {
		for _, row := range r.Rows {
			if string(row[0]) == key {
				return string(row[1])
			}
		}
	}
	t.Fatalf("SHOW CONFIG has no %s", key)
	return ""
}

// waitPaused polls SHOW DATABASES until the database's paused flag is want.
func waitPaused(t *testing.T, b *pgtest.PgBouncer, db string, want bool) {
	t.Helper()
	cfg, err := pgconn.ParseConfig(b.AdminDSN)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for {
		results, err := conn.Exec(ctx, "SHOW DATABASES").ReadAll()
		if err != nil {
			t.Fatalf("SHOW DATABASES: %v", err)
		}
		for _, r := range results {
			nameCol, pausedCol := -1, -1
			for i, f := range r.FieldDescriptions {
				switch f.Name {
				case "name":
					nameCol = i
				case "paused":
					pausedCol = i
				}
			}
			for _, row := range r.Rows {
				if string(row[nameCol]) == db && (string(row[pausedCol]) == "1") == want {
					return
				}
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("database %s never became paused=%v", db, want)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func copyFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir() + "/pgbouncer.ini"
	write(t, out, string(data))
	return out
}

func testHAProxy(t *testing.T, blue, green Endpoint) {
	hostport := func(e Endpoint) string { return e.Host + ":" + strconv.Itoa(e.Port) }
	proxy := pgtest.StartHAProxy(t, pgtest.HAProxyOptions{
		Backend: "postgres",
		Servers: []pgtest.HAProxyServer{{Name: "pg13", Addr: hostport(blue)}, {Name: "pg17", Addr: hostport(green)}},
		Active:  "pg13",
	})
	sw := spec.HAProxySwitch{Socket: proxy.Socket, Backend: proxy.Backend, BlueServer: "pg13", GreenServer: "pg17"}
	drv, err := New(&spec.Spec{Cutover: spec.CutoverSpec{Switch: spec.SwitchSpec{HAProxy: &sw}}}, blue, green)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	serverPort := func(t *testing.T) int {
		t.Helper()
		conn := connectSimple(t, proxy.DSN("app"))
		var p int
		if err := conn.QueryRow(ctx, "SELECT current_setting('port')::int").Scan(&p); err != nil {
			t.Fatalf("query through HAProxy: %v", err)
		}
		conn.Close(ctx)
		return p
	}

	t.Run("check and current", func(t *testing.T) {
		if err := drv.Check(ctx); err != nil {
			t.Fatalf("Check: %v", err)
		}
		if side, err := drv.Current(ctx); err != nil || side != Blue {
			t.Fatalf("Current = %q, %v; want blue", side, err)
		}
		if got := serverPort(t); got != blue.Port {
			t.Fatalf("HAProxy sends to port %d, want blue %d", got, blue.Port)
		}
		bad := sw
		bad.GreenServer = "pg18"
		d, _ := New(&spec.Spec{Cutover: spec.CutoverSpec{Switch: spec.SwitchSpec{HAProxy: &bad}}}, blue, green)
		if err := d.Check(ctx); err == nil || !strings.Contains(err.Error(), `no server "pg18"`) {
			t.Errorf("Check with a wrong server name = %v", err)
		}
		bad = sw
		bad.Backend = "nope"
		d, _ = New(&spec.Spec{Cutover: spec.CutoverSpec{Switch: spec.SwitchSpec{HAProxy: &bad}}}, blue, green)
		if err := d.Check(ctx); err == nil {
			t.Errorf("Check with a wrong backend passed")
		}
	})

	t.Run("switch moves new connections and closes blue's", func(t *testing.T) {
		held := connectSimple(t, proxy.DSN("app"))
		mustExec(t, held, "SELECT 1")
		start := time.Now()
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := drv.Freeze(sctx); err != nil {
			t.Fatal(err)
		}
		if err := drv.Switch(sctx, Green); err != nil {
			t.Fatalf("Switch(green): %v", err)
		}
		if err := drv.Unfreeze(sctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("HAProxy Switch took %v", time.Since(start))
		if side, err := drv.Current(ctx); err != nil || side != Green {
			t.Fatalf("Current = %q, %v; want green", side, err)
		}
		if got := serverPort(t); got != green.Port {
			t.Fatalf("after the switch HAProxy sends to port %d, want green %d", got, green.Port)
		}
		qctx, qcancel := context.WithTimeout(ctx, 10*time.Second)
		defer qcancel()
		if _, err := held.Exec(qctx, "SELECT 1"); err == nil {
			t.Errorf("a connection held to blue still works after shutdown sessions")
		}
		if err := drv.Switch(ctx, Green); err != nil {
			t.Fatalf("Switch(green) again: %v", err)
		}
		if err := drv.Switch(ctx, Blue); err != nil {
			t.Fatalf("Switch(blue): %v", err)
		}
		if got := serverPort(t); got != blue.Port {
			t.Fatalf("after switching back HAProxy sends to port %d, want blue %d", got, blue.Port)
		}
	})
}

// statT is the file's owner, mode and inode.
func statT(t *testing.T, path string) *syscall.Stat_t {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t)
}
