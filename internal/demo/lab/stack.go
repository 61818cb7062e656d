package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/pgshift/pgshift/internal/pgtest"
)

// Stack is blue and green clusters and a PgBouncer in front of blue, each on
// a free loopback port in its own temporary folder, stopped when the session
// ends.
type Stack struct {
	Blue, Green *pgtest.Cluster
	Bouncer     *pgtest.PgBouncer
	DB          string
}

// StartStack starts both clusters at once, creates database db on each
// (green's stays empty: pgshift copies the schema), then PgBouncer in
// transaction pooling with db pointing at blue.
func StartStack(s *Session, blueMajor, greenMajor int, db string) *Stack {
	cs := pgtest.StartClusters(s, []int{blueMajor, greenMajor})
	st := &Stack{Blue: cs[0], Green: cs[1], DB: db}
	st.Blue.CreateDatabase(s, db)
	st.Green.CreateDatabase(s, db)
	st.Bouncer = pgtest.StartPgBouncer(s, pgtest.PgBouncerOptions{
		Databases: map[string]string{db: fmt.Sprintf("host=127.0.0.1 port=%d dbname=%s", st.Blue.Port, db)},
	})
	return st
}

// PgbenchInit fills blue's database with pgbench's tables at a scale; the
// history table has no key, so it gets REPLICA IDENTITY FULL to replicate.
func (st *Stack) PgbenchInit(s *Session, scale int) {
	bin, err := pgtest.ClientBin("pgbench")
	if err != nil {
		s.Fatalf("%v", err)
	}
	out, err := exec.CommandContext(s.Ctx, bin, "-i", "-q", "-s", fmt.Sprint(scale), st.Blue.DSN(st.DB)).CombinedOutput()
	if err != nil {
		s.Fatalf("pgbench -i on blue: %v\n%s", err, out)
	}
	st.Blue.Exec(s, st.DB, `ALTER TABLE public.pgbench_history REPLICA IDENTITY FULL`)
}

// SpecOptions are the few knobs the demo and the benchmark set.
type SpecOptions struct {
	Name         string
	PauseTimeout string // "" keeps the default
}

// WriteSpec writes the upgrade spec a user would write for this stack:
// blue and green DSNs, manual approval, PgBouncer as the switch.
func (st *Stack) WriteSpec(dir, file string, o SpecOptions) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "# Upgrade of database %q from PostgreSQL %d to %d, switched in PgBouncer.\n", st.DB, st.Blue.Major, st.Green.Major)
	fmt.Fprintf(&b, "version: 1\nname: %s\n", o.Name)
	fmt.Fprintf(&b, "source:\n  dsn: %q\n", st.Blue.DSN(st.DB))
	fmt.Fprintf(&b, "target:\n  dsn: %q\n", st.Green.DSN(st.DB))
	b.WriteString("cutover:\n  approval: manual\n")
	if o.PauseTimeout != "" {
		fmt.Fprintf(&b, "  pause_timeout: %s\n", o.PauseTimeout)
	}
	// The application's own path: pgshift writes through it after the
	// switch to confirm the write lands on green.
	fmt.Fprintf(&b, "  confirm:\n    dsn: %q\n", st.Bouncer.DSN(st.DB))
	b.WriteString("  switch:\n    pgbouncer:\n")
	fmt.Fprintf(&b, "      admin_dsn: %q\n", st.Bouncer.AdminDSN)
	fmt.Fprintf(&b, "      config: %s\n", st.Bouncer.ConfigPath)
	fmt.Fprintf(&b, "      database: %s\n", st.DB)
	path := filepath.Join(dir, file)
	return path, os.WriteFile(path, []byte(b.String()), 0o644)
}
