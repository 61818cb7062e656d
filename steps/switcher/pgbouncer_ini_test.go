package switcher

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

var green5433 = Endpoint{Host: "127.0.0.1", Port: 5433, DBName: "orders"}

// Golden files hold the expected edit of each tricky input; a diff outside
// the entry's host/port/dbname is a failure.
func TestRewriteDatabaseGolden(t *testing.T) {
	cases := []struct {
		file string
		to   Endpoint
	}{
		{"commented.ini", green5433},
		{"crlf.ini", green5433},
		{"quoted.ini", Endpoint{Host: "db2.internal", Port: 5432, DBName: "orders_v17"}},
		{"minimal.ini", green5433},
		{"fragment.ini", green5433},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join("testdata/ini", c.file))
			if err != nil {
				t.Fatal(err)
			}
			edit, _, err := planDatabaseEdit(in, "orders", c.to)
			if err != nil {
				t.Fatalf("planDatabaseEdit: %v", err)
			}
			if !edit.changed {
				t.Fatalf("edit reports no change")
			}
			golden := filepath.Join("testdata/ini", c.file+".golden")
			if *update {
				if err := os.WriteFile(golden, edit.content, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestRewriteDatabaseGolden -update to create it)", err)
			}
			if !bytes.Equal(edit.content, want) {
				t.Errorf("edit of %s differs from %s:\n--- got\n%s\n--- want\n%s", c.file, golden, edit.content, want)
			}
			assertOnlyEntryLineChanged(t, in, edit.content, "orders")

			// The edit reads back as the new target, and a second edit is a no-op.
			again, _, err := planDatabaseEdit(edit.content, "orders", c.to)
			if err != nil {
				t.Fatalf("re-plan: %v", err)
			}
			if again.changed || !bytes.Equal(again.content, edit.content) {
				t.Errorf("second edit changed the file again")
			}
			if !again.before.is(c.to) {
				t.Errorf("after the edit the entry points at %s, want %s", again.before, c.to)
			}
		})
	}
}

// assertOnlyEntryLineChanged checks that every line but the entry's is
// byte-identical, line endings included.
func assertOnlyEntryLineChanged(t *testing.T, before, after []byte, name string) {
	t.Helper()
	bl := bytes.SplitAfter(before, []byte("\n"))
	al := bytes.SplitAfter(after, []byte("\n"))
	if len(bl) != len(al) {
		t.Fatalf("line count changed: %d -> %d", len(bl), len(al))
	}
	changed := 0
	for i := range bl {
		if bytes.Equal(bl[i], al[i]) {
			continue
		}
		changed++
		trimmed := strings.TrimLeft(string(bl[i]), " \t")
		if !strings.HasPrefix(trimmed, name+" ") && !strings.HasPrefix(trimmed, name+"=") {
			t.Errorf("line %d changed but is not the %s entry: %q -> %q", i+1, name, bl[i], al[i])
		}
		if bytes.HasSuffix(bl[i], []byte("\r\n")) != bytes.HasSuffix(al[i], []byte("\r\n")) {
			t.Errorf("line %d: line ending changed", i+1)
		}
	}
	if changed != 1 {
		t.Errorf("%d lines changed, want exactly 1", changed)
	}
}

func TestRewriteKeepsOtherKeys(t *testing.T) {
	in := []byte("[databases]\norders = host=127.0.0.1 port=5432 dbname=orders pool_size=20 user=app auth_user=pgbouncer\n")
	edit, _, err := planDatabaseEdit(in, "orders", green5433)
	if err != nil {
		t.Fatal(err)
	}
	want := "[databases]\norders = host=127.0.0.1 port=5433 dbname=orders pool_size=20 user=app auth_user=pgbouncer\n"
	if string(edit.content) != want {
		t.Errorf("got %q\nwant %q", edit.content, want)
	}
	if got := edit.before.String(); got != "host=127.0.0.1 port=5432 dbname=orders" {
		t.Errorf("before = %s", got)
	}
}

func TestRewriteAddsMissingKeys(t *testing.T) {
	cases := []struct {
		in, want string
		to       Endpoint
	}{
		// PgBouncer's defaults: Unix socket, port 5432, dbname = entry name.
		{"orders = pool_size=5", "orders = host=127.0.0.1 port=5433 pool_size=5", green5433},
		{"orders =", "orders = host=127.0.0.1 port=5433", green5433},
		{"orders = port=5432", "orders = host=10.1.1.1 dbname=orders17 port=5432", Endpoint{"10.1.1.1", 5432, "orders17"}},
	}
	for _, c := range cases {
		edit, _, err := planDatabaseEdit([]byte("[databases]\n"+c.in+"\n"), "orders", c.to)
		if err != nil {
			t.Fatalf("%q: %v", c.in, err)
		}
		if got := strings.TrimPrefix(string(edit.content), "[databases]\n"); got != c.want+"\n" {
			t.Errorf("%q -> %q, want %q", c.in, got, c.want+"\n")
		}
	}
}

func TestEntryDefaults(t *testing.T) {
	doc, err := parseINI([]byte("[databases]\norders = pool_size=5\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := doc.databaseEntries("orders")[0]
	pairs, _ := parseConnString(e.value(doc))
	tgt, err := targetOf("orders", pairs)
	if err != nil {
		t.Fatal(err)
	}
	if tgt != (connTarget{Host: "", Port: 5432, DBName: "orders"}) {
		t.Errorf("defaults: %+v", tgt)
	}
}

func TestRewriteRefuses(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"missing", "[databases]\norders_archive = host=x\n[pgbouncer]\norders = host=x\n", `no [databases] entry "orders"`},
		{"fallback only", "[databases]\n* = host=x\n", `fallback entry "*"`},
		{"twice", "[databases]\norders = host=a\n[databases]\norders = host=b\n", "appears 2 times"},
		{"duplicate key", "[databases]\norders = host=a host=b\n", "host is given twice"},
		{"bad port", "[databases]\norders = host=a port=x\n", `port "x" is not a port number`},
		{"unterminated quote", "[databases]\norders = host=a password='abc\n", "unterminated quote"},
		{"syntax", "[databases]\norders host=a\n", "expected '='"},
		{"text after header", "[databases] orders = host=a\n", "text after the section header"},
		{"no bracket", "[databases\norders = host=a\n", "without ']'"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := planDatabaseEdit([]byte(c.in), "orders", green5433)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestRewriteRefusesUnsafeValues(t *testing.T) {
	_, _, err := planDatabaseEdit([]byte("[databases]\norders = host=a\n"), "orders", Endpoint{Host: "a b", Port: 5432, DBName: "orders"})
	if err == nil || !strings.Contains(err.Error(), "host") {
		t.Errorf("err = %v, want a refusal naming host", err)
	}
}

func TestIncludeReported(t *testing.T) {
	in, err := os.ReadFile("testdata/ini/include.ini")
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = planDatabaseEdit(in, "orders", green5433)
	var notHere *errEntryNotHere
	if !errors.As(err, &notHere) {
		t.Fatalf("err = %v, want errEntryNotHere", err)
	}
	if len(notHere.includes) != 1 || notHere.includes[0] != "/etc/pgbouncer/databases.ini" {
		t.Errorf("includes = %v", notHere.includes)
	}
}

// The driver names the included file that holds the entry, and refuses an
// entry that an included file defines again.
func TestIncludedEntryLocated(t *testing.T) {
	dir := t.TempDir()
	frag := filepath.Join(dir, "databases.ini")
	write(t, frag, "[databases]\norders = host=127.0.0.1 port=5432\n")
	main := filepath.Join(dir, "pgbouncer.ini")
	write(t, main, "[pgbouncer]\nlisten_port = 6432\n%include "+frag+"\n")
	p := &pgBouncer{config: main, database: "orders", blue: Endpoint{"127.0.0.1", 5432, "orders"}, green: green5433}
	_, err := p.planEdit(Green)
	if err == nil || !strings.Contains(err.Error(), "included file "+frag) || !strings.Contains(err.Error(), "set cutover.switch.pgbouncer.config to that file") {
		t.Errorf("err = %v", err)
	}

	write(t, main, "[databases]\norders = host=127.0.0.1 port=5432\n%include databases.ini\n")
	_, err = p.planEdit(Green)
	if err == nil || !strings.Contains(err.Error(), "also in the included file databases.ini") {
		t.Errorf("err = %v", err)
	}

	// Given the fragment itself, the edit goes through.
	p.config = frag
	edit, err := p.planEdit(Green)
	if err != nil || !edit.changed {
		t.Fatalf("edit of the fragment: %v", err)
	}
}

func TestParseRoundTrip(t *testing.T) {
	files, _ := filepath.Glob("testdata/ini/*.ini")
	for _, f := range files {
		in, _ := os.ReadFile(f)
		doc, err := parseINI(in)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if !bytes.Equal(doc.render(), in) {
			t.Errorf("%s: render differs from the input", f)
		}
	}
}

func TestParseConnString(t *testing.T) {
	pairs, err := parseConnString(`host=a  password='it''s' application_name='x''y z' connect_query='a\b' port = 5432`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, p := range pairs {
		got[p.key] = p.value
	}
	want := map[string]string{"host": "a", "password": "it's", "application_name": "x'y z", "connect_query": `a\b`, "port": "5432"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
