package steps

import (
	"strings"
	"testing"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/plans"
	"github.com/pgshift/pgshift/spec"
	"github.com/pgshift/pgshift/steps/stepid"
)

// auditBlue is what the catalog checks are about, on blue 13: each object
// fails green's schema restore (or the copy) for some major pairs.
const auditBlue = `
CREATE FUNCTION public.fact(bigint) RETURNS numeric LANGUAGE sql IMMUTABLE AS 'SELECT $1::numeric';
CREATE OPERATOR public.!!! (LEFTARG = bigint, FUNCTION = public.fact);
CREATE AGGREGATE public.my_agg(anyelement) (SFUNC = array_append, STYPE = anyarray);
CREATE OPERATOR public.@+ (LEFTARG = anyarray, RIGHTARG = anyelement, FUNCTION = array_append);
CREATE FUNCTION public.my_conv_fn(integer, integer, cstring, internal, integer) RETURNS void
  AS '$libdir/utf8_and_iso8859_1', 'utf8_to_iso8859_1' LANGUAGE C STRICT;
CREATE CONVERSION public.my_conv FOR 'UTF8' TO 'LATIN1' FROM public.my_conv_fn;
CREATE DOMAIN public.fn_ref AS regproc;
CREATE TABLE public.catalog_refs (id int PRIMARY KEY, tbl regclass, hook public.fn_ref, kinds regtype[]);
CREATE TABLE public.parent (id int NOT NULL, v int);
CREATE TABLE public.child () INHERITS (public.parent);
ALTER TABLE public.child ALTER COLUMN id DROP NOT NULL;
CREATE SEQUENCE public.seq_end MAXVALUE 100;
SELECT setval('public.seq_end', 95);
CREATE SEQUENCE public.seq_cycle MAXVALUE 100 CYCLE;
SELECT setval('public.seq_cycle', 99);
CREATE SEQUENCE public.seq_fresh;
CREATE EXTENSION adminpack;
CREATE EXTENSION hstore;
CREATE TABLE public.lang_snapshots (id int PRIMARY KEY, lang pg_catalog.pg_language);
CREATE FUNCTION public.on_truncate() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';
CREATE TABLE public.truncated (id int PRIMARY KEY);
CREATE TRIGGER log_truncate AFTER TRUNCATE ON public.truncated FOR EACH STATEMENT EXECUTE FUNCTION public.on_truncate();
`

func auditSpec(blue, green *pgtest.Cluster, greenDB string) *spec.Spec {
	s := &spec.Spec{
		Name:   "audit",
		Source: spec.Endpoint{DSN: blue.DSN("app")},
		Target: spec.Endpoint{DSN: green.DSN(greenDB)},
		Schema: spec.SchemaSpec{Copy: true},
	}
	s.SetDefaults()
	return s
}

func auditEnv(t *testing.T, blue, green *pgtest.Cluster, greenDB string) *engine.Env {
	t.Helper()
	env := engine.NewEnv(auditSpec(blue, green, greenDB), nil)
	t.Cleanup(env.Close)
	return env.ForStep(stepid.Audit)
}

// restoreSchema runs target.schema from blue into green's app: what the
// audit's blockers predict.
func restoreSchema(t *testing.T, blue, green *pgtest.Cluster) error {
	t.Helper()
	s := auditSpec(blue, green, "app")
	env := engine.NewEnv(s, nil)
	defer env.Close()
	step := stepOf(t, s, stepid.Schema)
	return step.Apply(prepCtx(t), env.ForStep(step.ID()))
}

func observeAudit(t *testing.T, env *engine.Env) plans.Change {
	t.Helper()
	c, err := (inspecting{audit{}}).Observe(prepCtx(t), env)
	if err != nil {
		t.Fatalf("observe audit: %v", err)
	}
	return c
}

// findingWith is the one finding holding every part, or "".
func findingWith(lines []string, parts ...string) string {
	for _, l := range lines {
		if hasLine([]string{l}, parts...) {
			return l
		}
	}
	return ""
}

// TestAuditPerMajorPair runs the audit of one blue 13 against greens 15, 17
// and 18: the findings that depend on green's major appear only for the
// pairs they concern, each naming the object and the fix for that pair.
func TestAuditPerMajorPair(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts servers")
	}
	pgtest.RequireClientBin(t, "pg_dump")
	cs := pgtest.StartClusters(t, []int{13, 15, 17, 18})
	blue, g15, g17, g18 := cs[0], cs[1], cs[2], cs[3]
	for _, c := range cs {
		c.CreateDatabase(t, "app")
	}
	blue.Exec(t, "app", auditBlue)

	t.Run("13 to 17", func(t *testing.T) {
		c := observeAudit(t, auditEnv(t, blue, g17, "app"))
		if c.Action != plans.ActionBlocker {
			t.Fatalf("action %s, want blocker", c.Action)
		}
		for _, want := range [][]string{
			{"postfix operator", "PostgreSQL 14 removed", "green is 17", "public.!!! (bigint, NONE)", "DROP OPERATOR public.!!! (bigint, NONE);", "prefix operator"},
			{"anycompatiblearray", "aggregate public.my_agg(anyelement) (SFUNC = array_append)", "operator public.@+ (anyarray, anyelement)", "CREATE AGGREGATE", "my_array_append"},
			{"encoding conversion", "public.my_conv", "DROP CONVERSION public.my_conv;", "PostgreSQL 14"},
			{"extension adminpack no longer exists in PostgreSQL 17", "DROP EXTENSION adminpack;", "before the upgrade"},
		} {
			if findingWith(c.Blockers, want...) == "" {
				t.Errorf("no blocker with %q in\n%s", want, strings.Join(c.Blockers, "\n"))
			}
		}
		if b := findingWith(c.Blockers, "adminpack"); strings.Contains(b, "postgresql-17-adminpack") || strings.Contains(b, "install") {
			t.Errorf("adminpack: a package is suggested for a removed extension: %s", b)
		}
		if findingWith(c.Blockers, "NOT NULL") != "" {
			t.Errorf("the NOT NULL inheritance check of 18 blocks 13 -> 17: %q", c.Blockers)
		}
		if w := findingWith(c.Warnings, "reg* type"); w == "" || !strings.Contains(w, "public.catalog_refs.tbl (regclass)") ||
			!strings.Contains(w, "public.catalog_refs.hook (fn_ref)") || !strings.Contains(w, "public.catalog_refs.kinds (regtype[])") {
			t.Errorf("reg* columns (direct, through a domain, an array): %q", w)
		}
		if w := findingWith(c.Warnings, "will run out"); w == "" || !strings.Contains(w, "public.seq_end: last value 95 of 1 to 100") {
			t.Errorf("a sequence near its bound: %q", c.Warnings)
		}
		if findingWith(c.Warnings, "system catalog's row type", "public.lang_snapshots.lang (pg_language)", "to_jsonb") == "" {
			t.Errorf("a column of a system row type: %q", c.Warnings)
		}
		if findingWith(c.Details, "ON TRUNCATE triggers", "public.truncated") == "" {
			t.Errorf("an ON TRUNCATE trigger: %q", c.Details)
		}
		if findingWith(c.Warnings, "seq_cycle") != "" || findingWith(c.Warnings, "seq_fresh") != "" {
			t.Errorf("a cycling (or unused) sequence is said to run out: %q", c.Warnings)
		}
		if findingWith(c.Warnings, "sorts text") != "" || findingWith(c.Blockers, "encoding") != "" && findingWith(c.Blockers, "is UTF8 and") != "" {
			t.Errorf("same encoding and locale reported as different: %q %q", c.Warnings, c.Blockers)
		}
		// apply refuses, naming every blocker.
		err := (inspecting{audit{}}).Apply(prepCtx(t), auditEnv(t, blue, g17, "app"))
		if err == nil || !strings.Contains(err.Error(), "public.!!!") || !strings.Contains(err.Error(), "adminpack") {
			t.Errorf("apply: want an error naming the blockers, got %v", err)
		}

	})

	t.Run("13 to 15", func(t *testing.T) {
		c := observeAudit(t, auditEnv(t, blue, g15, "app"))
		if findingWith(c.Blockers, "anycompatiblearray", "green is 15", "public.my_agg") == "" ||
			findingWith(c.Blockers, "postfix", "green is 15") == "" {
			t.Errorf("13 -> 15 crosses 14: want the postfix and polymorphic blockers, got\n%s", strings.Join(c.Blockers, "\n"))
		}
		if findingWith(c.Blockers, "adminpack") != "" {
			t.Errorf("adminpack exists in 15 and blocks: %q", c.Blockers)
		}
		// What the blockers predict: green's schema restore fails (on the
		// first of them in the dump: the aggregate).
		if err := restoreSchema(t, blue, g15); err == nil || !strings.Contains(err.Error(), "array_append(anyarray, anyelement) does not exist") {
			t.Errorf("the schema restore into 15: want the aggregate on array_append to fail it, got %v", err)
		}
	})

	t.Run("13 to 18", func(t *testing.T) {
		c := observeAudit(t, auditEnv(t, blue, g18, "app"))
		if b := findingWith(c.Blockers, "NOT NULL", "PostgreSQL 18"); !strings.Contains(b, "public.child.id: ALTER TABLE public.child ALTER COLUMN id SET NOT NULL;") {
			t.Errorf("13 -> 18: want the child column without its parent's NOT NULL, got\n%s", strings.Join(c.Blockers, "\n"))
		}
	})

	t.Run("encoding and locale of green's database", func(t *testing.T) {
		g17.Exec(t, "postgres", `CREATE DATABASE "app latin1" TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'`)
		g17.Exec(t, "postgres", `CREATE DATABASE app_sorted TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'`)
		c := observeAudit(t, auditEnv(t, blue, g17, "app latin1"))
		if findingWith(c.Blockers, "blue's database app is UTF8", `green's "app latin1" is LATIN1`,
			`DROP DATABASE "app latin1"; CREATE DATABASE "app latin1" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' LOCALE_PROVIDER libc;`) == "" {
			t.Errorf("an encoding mismatch: want a blocker naming both and the CREATE DATABASE, got\n%s", strings.Join(c.Blockers, "\n"))
		}
		c = observeAudit(t, auditEnv(t, blue, g17, "app_sorted"))
		if findingWith(c.Blockers, "is UTF8 and") != "" {
			t.Errorf("the same encoding blocks: %q", c.Blockers)
		}
		if findingWith(c.Warnings, "sorts text by libc C and green's by libc C.UTF-8", "CREATE DATABASE app_sorted") == "" {
			t.Errorf("another collation: want a warning, got %q", c.Warnings)
		}
	})

	t.Run("the fixes clear the blockers", func(t *testing.T) {
		blue.Exec(t, "app", `
DROP OPERATOR public.!!! (bigint, NONE);
CREATE FUNCTION public.my_array_append(anyarray, anyelement) RETURNS anyarray LANGUAGE sql IMMUTABLE AS 'SELECT array_append($1, $2)';
DROP AGGREGATE public.my_agg(anyelement);
CREATE AGGREGATE public.my_agg(anyelement) (SFUNC = public.my_array_append, STYPE = anyarray);
DROP OPERATOR public.@+ (anyarray, anyelement);
DROP CONVERSION public.my_conv;
DROP EXTENSION adminpack;
ALTER TABLE public.child ALTER COLUMN id SET NOT NULL`)
		for _, green := range []*pgtest.Cluster{g15, g17, g18} {
			c := observeAudit(t, auditEnv(t, blue, green, "app"))
			if len(c.Blockers) > 0 {
				t.Errorf("green %d: blockers left after the fixes:\n%s", green.Major, strings.Join(c.Blockers, "\n"))
			}
		}
		// The fixes are right: the restore into 17 now passes, and the
		// aggregate kept on blue through a function of its own works there.
		if err := restoreSchema(t, blue, g17); err != nil {
			t.Fatalf("the schema restore into 17 after the fixes: %v", err)
		}
		if got := g17.Scalar(t, "app", `SELECT public.my_agg(x)::text FROM (VALUES (1), (2)) v(x)`); got != "{1,2}" {
			t.Errorf("my_agg on green: %s", got)
		}
	})
}
