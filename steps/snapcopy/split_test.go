package snapcopy

import (
	"strings"
	"testing"
)

// A post-data script in the shape pg_dump writes it, with the traps a naive
// split on ";" falls into.
const dumpScript = `--
-- PostgreSQL database dump
--

\restrict AbCdEf123

SET statement_timeout = 0;
SET client_encoding = 'UTF8';
SELECT pg_catalog.set_config('search_path', '', false);
SET default_tablespace = '';

--
-- Name: accounts accounts_pkey; Type: CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.accounts
    ADD CONSTRAINT accounts_pkey PRIMARY KEY (aid);

ALTER TABLE ONLY public."odd; name"
    ADD CONSTRAINT "FOREIGN KEY" UNIQUE (x);

CREATE UNIQUE INDEX idx_a ON public.accounts USING btree (abalance) WHERE (filler <> 'a;b');

SET default_tablespace = fast;

CREATE INDEX idx_b ON public.accounts USING btree (bid);

/* a /* nested */ comment; with semicolons */
CREATE TRIGGER trg BEFORE INSERT ON public.accounts FOR EACH ROW EXECUTE FUNCTION public.f();

CREATE RULE r AS ON INSERT TO public.v DO INSTEAD SELECT $$x;y$$ AS a, $q$it's; $$ here$q$ AS b, E'\';' AS c;

ALTER INDEX public.p_pkey ATTACH PARTITION public.p_1_pkey;

ALTER TABLE ONLY public.history
    ADD CONSTRAINT history_aid_fkey FOREIGN KEY (aid) REFERENCES public.accounts(aid);

\unrestrict AbCdEf123
`

func TestSplitStatementsPgDumpShape(t *testing.T) {
	stmts, err := SplitStatements(dumpScript)
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		prefix string
		kind   Kind
	}
	wants := []want{
		{"SET statement_timeout = 0", KindSetting},
		{"SET client_encoding = 'UTF8'", KindSetting},
		{"SELECT pg_catalog.set_config('search_path', '', false)", KindSetting},
		{"SET default_tablespace = ''", KindSetting},
		{"ALTER TABLE ONLY public.accounts\n    ADD CONSTRAINT accounts_pkey PRIMARY KEY (aid)", KindIndex},
		{"ALTER TABLE ONLY public.\"odd; name\"\n    ADD CONSTRAINT \"FOREIGN KEY\" UNIQUE (x)", KindIndex},
		{"CREATE UNIQUE INDEX idx_a ON public.accounts USING btree (abalance) WHERE (filler <> 'a;b')", KindIndex},
		{"SET default_tablespace = fast", KindSetting},
		{"CREATE INDEX idx_b", KindIndex},
		{"CREATE TRIGGER trg", KindOther},
		{"CREATE RULE r AS ON INSERT TO public.v DO INSTEAD SELECT $$x;y$$ AS a, $q$it's; $$ here$q$ AS b, E'\\';' AS c", KindOther},
		{"ALTER INDEX public.p_pkey ATTACH PARTITION public.p_1_pkey", KindOther},
		{"ALTER TABLE ONLY public.history\n    ADD CONSTRAINT history_aid_fkey FOREIGN KEY", KindForeignKey},
	}
	if len(stmts) != len(wants) {
		for _, s := range stmts {
			t.Logf("%d %s: %q", s.Line, s.Kind, s.SQL)
		}
		t.Fatalf("got %d statements, want %d", len(stmts), len(wants))
	}
	for i, w := range wants {
		if !strings.HasPrefix(stmts[i].SQL, w.prefix) {
			t.Errorf("statement %d = %q, want it to start with %q", i, stmts[i].SQL, w.prefix)
		}
		if stmts[i].Kind != w.kind {
			t.Errorf("statement %d (%q) is %s, want %s", i, stmts[i].SQL, stmts[i].Kind, w.kind)
		}
	}
	// The accounts key stands at line 16 of the script.
	if stmts[4].Line != 16 {
		t.Errorf("primary key starts at line %d, want 16", stmts[4].Line)
	}
	// idx_b was written after default_tablespace changed: it carries the new value only.
	idxB := stmts[8]
	if got := strings.Join(idxB.Settings, "; "); !strings.Contains(got, "default_tablespace = fast") || strings.Contains(got, "default_tablespace = ''") {
		t.Errorf("settings of idx_b = %q, want default_tablespace = fast in place of ''", got)
	}
	if len(idxB.Settings) != 4 {
		t.Errorf("idx_b carries %d settings, want 4 (one per name): %q", len(idxB.Settings), idxB.Settings)
	}
}

func TestSplitStatementsRefusesBrokenInput(t *testing.T) {
	for name, script := range map[string]string{
		"string":     "SELECT 'abc;\n",
		"identifier": "SELECT \"abc;\n",
		"dollar":     "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1;\n",
		"comment":    "SELECT 1 /* never closed;\n",
		"data":       "COPY public.t (a, b) FROM stdin;\n1\t2\n\\.\n",
	} {
		if _, err := SplitStatements(script); err == nil {
			t.Errorf("%s: no error for %q", name, script)
		}
	}
}

func TestSplitStatementsDollarEdgeCases(t *testing.T) {
	// $1 is a parameter, a$b$ an identifier: neither opens a dollar quote.
	stmts, err := SplitStatements("PREPARE p AS SELECT $1; SELECT a$b$ FROM t; SELECT $$;$$")
	if err != nil {
		t.Fatal(err)
	}
	if len(stmts) != 3 || stmts[2].SQL != "SELECT $$;$$" {
		t.Fatalf("got %+v", stmts)
	}
}
