package steps

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/spec"
)

// testPasswordAuth runs last on the pipeline's pair: blue now demands a
// SCRAM password from role repl, so green's subscription works only if the
// password really reaches it, from password_env or from a password file on
// green's host.
func testPasswordAuth(t *testing.T, p *replPair) {
	const password = `pa ss'w\rd`
	p.blue.Exec(t, "app", "SET password_encryption = 'scram-sha-256'; CREATE ROLE repl LOGIN SUPERUSER PASSWORD "+pg.QuoteLiteral(password))
	hba := filepath.Join(p.blue.DataDir, "pg_hba.conf")
	old, err := os.ReadFile(hba)
	if err != nil {
		t.Fatal(err)
	}
	rules := "host all repl 127.0.0.1/32 scram-sha-256\nhost replication repl 127.0.0.1/32 scram-sha-256\n"
	if err := os.WriteFile(hba, append([]byte(rules), old...), 0o600); err != nil {
		t.Fatal(err)
	}
	p.blue.Exec(t, "app", "SELECT pg_reload_conf()")
	replDSN := fmt.Sprintf("postgres://repl@%s:%d/app?sslmode=disable", p.blue.Host, p.blue.Port)
	ctx := testCtx(t)
	if c, err := pgx.Connect(ctx, replDSN); err == nil {
		c.Close(ctx)
		t.Fatal("setup: blue lets repl in without a password")
	}

	run := func(t *testing.T, source spec.Endpoint, storedConninfo func(string)) {
		spec := *p.spec
		spec.Source = source
		env := engine.NewEnv(&spec, hclog.New(&hclog.LoggerOptions{Output: p.logs}))
		defer env.Close()
		all := []engine.Step{&publicationStep{spec: &spec}, &slotStep{spec: &spec}, &subscriptionStep{spec: &spec}, &catchupStep{spec: &spec}}
		p.green.Exec(t, "app", "TRUNCATE accounts, events, notes, late")
		for _, s := range all {
			if err := s.Apply(ctx, env.ForStep(s.ID())); err != nil {
				t.Fatalf("apply %s: %v", s.ID(), err)
			}
		}
		if u := p.blue.Scalar(t, "app", "SELECT string_agg(DISTINCT usename::text, ',') FROM pg_stat_replication"); u != "repl" {
			t.Errorf("green streams as %q, want repl", u)
		}
		p.waitSame(t, replicatedTables...)
		storedConninfo(p.green.Scalar(t, "app", "SELECT subconninfo FROM pg_subscription"))
		for i := len(all) - 1; i >= 0; i-- {
			if err := all[i].Rollback(ctx, env.ForStep(all[i].ID())); err != nil {
				t.Fatalf("rollback %s: %v", all[i].ID(), err)
			}
		}
	}

	t.Run("password_env", func(t *testing.T) {
		t.Setenv("PGSHIFT_TEST_REPL_PASSWORD", password)
		run(t, spec.Endpoint{DSN: replDSN, PasswordEnv: "PGSHIFT_TEST_REPL_PASSWORD"}, func(conninfo string) {
			if !strings.Contains(conninfo, "password=") {
				t.Errorf("the password from password_env must be in green's conninfo")
			}
		})
	})

	t.Run("passfile on green's host", func(t *testing.T) {
		dir := pgtest.TempDir(t)
		passfile := filepath.Join(dir, "blue.pgpass")
		escaped := strings.NewReplacer(`\`, `\\`, `:`, `\:`).Replace(password)
		line := fmt.Sprintf("%s:%d:app:repl:%s\n", p.blue.Host, p.blue.Port, escaped)
		if err := os.WriteFile(passfile, []byte(line), 0o600); err != nil {
			t.Fatal(err)
		}
		// The server reads it as its own user, who owns the folder.
		if st, err := os.Stat(dir); err == nil {
			if sys, ok := st.Sys().(*syscall.Stat_t); ok {
				if err := os.Chown(passfile, int(sys.Uid), int(sys.Gid)); err != nil {
					t.Fatal(err)
				}
			}
		}
		run(t, spec.Endpoint{DSN: replDSN + "&passfile=" + passfile}, func(conninfo string) {
			if strings.Contains(conninfo, "password=") || !strings.Contains(conninfo, "passfile="+passfile) {
				t.Errorf("with a passfile no password is stored, the file is named: %q", conninfo)
			}
		})
	})
}
