package steps

import (
	"regexp"
	"strings"
	"testing"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/plans"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps/stepid"
)

// TestPreflightTargetMissingDatabase13To17: a database green lacks is the
// documented blocker naming it and the statement that creates it as blue's
// (encoding, locale, owner), not a raw driver error; running that
// statement clears it.
func TestPreflightTargetMissingDatabase13To17(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
	cs := pgtest.StartClusters(t, []int{13, 17})
	blue, green := cs[0], cs[1]
	blue.Exec(t, "postgres", `CREATE ROLE "Shop Owner" NOLOGIN`)
	blue.Exec(t, "postgres", `CREATE DATABASE "my shop" OWNER "Shop Owner" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'`)
	sp := &spec.Spec{
		Name:   "shop-pg17",
		Source: spec.Endpoint{DSN: blue.DSN("my shop")},
		Target: spec.Endpoint{DSN: green.DSN("my shop")},
		Schema: spec.SchemaSpec{Copy: true, Roles: true},
	}
	sp.SetDefaults()
	target := stepOf(t, sp, stepid.PreflightTarget)
	observe := func(t *testing.T) plans.Change {
		t.Helper()
		env := engine.NewEnv(sp, nil)
		defer env.Close()
		c, err := target.Observe(prepCtx(t), env)
		if err != nil {
			t.Fatalf("observe: %v", err)
		}
		return c
	}
	stmtRE := regexp.MustCompile(`CREATE DATABASE .*?;`)

	t.Run("the owner is not on green yet: the statement leaves it for later", func(t *testing.T) {
		c := observe(t)
		if c.Action != plans.ActionBlocker || len(c.Blockers) != 1 {
			t.Fatalf("want one blocker, got %s %q", c.Action, c.Blockers)
		}
		b := c.Blockers[0]
		for _, want := range []string{`has no database "my shop"`, "target.dsn", `CREATE DATABASE "my shop" WITH TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C';`,
			`ALTER DATABASE "my shop" OWNER TO "Shop Owner";`} {
			if !strings.Contains(b, want) {
				t.Errorf("blocker lacks %q: %s", want, b)
			}
		}
		if strings.Contains(b, "SQLSTATE") || strings.Contains(b, "failed to connect") {
			t.Errorf("blocker is a raw driver error: %s", b)
		}
		env := engine.NewEnv(sp, nil)
		defer env.Close()
		if err := target.Apply(prepCtx(t), env.ForStep(stepid.PreflightTarget)); err == nil || !strings.Contains(err.Error(), "CREATE DATABASE") {
			t.Errorf("apply: want the blocker, got %v", err)
		}
	})

	t.Run("the owner is on green: the statement creates the database as blue's", func(t *testing.T) {
		green.Exec(t, "postgres", `CREATE ROLE "Shop Owner" NOLOGIN`)
		c := observe(t)
		if len(c.Blockers) != 1 {
			t.Fatalf("want one blocker, got %q", c.Blockers)
		}
		stmt := stmtRE.FindString(c.Blockers[0])
		if !strings.Contains(stmt, `OWNER "Shop Owner"`) || strings.Contains(c.Blockers[0], "ALTER DATABASE") {
			t.Fatalf("statement %q in %s", stmt, c.Blockers[0])
		}
		green.Exec(t, "postgres", stmt)
		q := `SELECT pg_get_userbyid(datdba) || ' ' || pg_encoding_to_char(encoding) || ' ' || datcollate || ' ' || datctype FROM pg_database WHERE datname = 'my shop'`
		if b, g := blue.Scalar(t, "postgres", q), green.Scalar(t, "postgres", q); b != g {
			t.Errorf("green's database %q, blue's %q", g, b)
		}
		if c := observe(t); hasLine(c.Blockers, "has no database") || hasLine(c.Blockers, "connect") {
			t.Errorf("blockers once the database exists: %q", c.Blockers)
		}
	})
}
