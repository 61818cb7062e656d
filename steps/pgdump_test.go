package steps

import (
	"context"
	"strings"
	"testing"

	"github.com/pgshift/pgshift/internal/pg"
)

func TestParseClientMajor(t *testing.T) {
	for out, want := range map[string]int{
		"pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)\n": 15,
		"pg_dump (PostgreSQL) 17.2\n":                           17,
		"psql (PostgreSQL) 9.6.24\n":                            9,
	} {
		got, err := parseClientMajor(out)
		if err != nil || got != want {
			t.Errorf("parseClientMajor(%q) = %d, %v; want %d", out, got, err, want)
		}
	}
	if _, err := parseClientMajor("something else"); err == nil {
		t.Error("parseClientMajor accepted output without a version")
	}
}

func TestChoosePgDump(t *testing.T) {
	found := []ClientTool{{"/a/13", 13}, {"/a/15", 15}, {"/a/17", 17}, {"/a/18", 18}}
	cases := []struct {
		blue, green int
		want        string
		ok          bool
	}{
		{13, 17, "/a/17", true}, // newest not newer than green
		{13, 16, "/a/15", true},
		{16, 16, "/a/17", true}, // none fits green: the least too new
		{15, 0, "/a/18", true},  // green unknown: newest
		{19, 19, "", false},
	}
	for _, c := range cases {
		got, ok := choosePgDump(found, c.blue, c.green)
		if ok != c.ok || got.Path != c.want {
			t.Errorf("choosePgDump(blue %d, green %d) = %q, %v; want %q, %v", c.blue, c.green, got.Path, ok, c.want, c.ok)
		}
	}
}

func TestFindPgDumpTooOldNamesThePackage(t *testing.T) {
	// No pg_dump of major 99 exists anywhere: the error must say what to install.
	_, err := FindPgDump(context.Background(), "", 99, 100)
	if err == nil {
		t.Fatal("FindPgDump found a pg_dump for PostgreSQL 99")
	}
	if !strings.Contains(err.Error(), "apt-get install postgresql-client-99") {
		t.Errorf("error does not name the package to install: %v", err)
	}
}

func TestFindPgDumpConfiguredMissing(t *testing.T) {
	_, err := FindPgDump(context.Background(), "/nonexistent/pg_dump", 13, 17)
	if err == nil || !strings.Contains(err.Error(), "schema.pg_dump /nonexistent/pg_dump") {
		t.Errorf("want an error naming schema.pg_dump, got %v", err)
	}
}

func TestQuoteLiteral(t *testing.T) {
	for in, want := range map[string]string{
		"plain":   "'plain'",
		"it's":    "'it''s'",
		`back\sl`: `E'back\\sl'`,
		`a'\b`:    `E'a''\\b'`,
	} {
		if got := pg.QuoteLiteral(in); got != want {
			t.Errorf("QuoteLiteral(%q) = %s; want %s", in, got, want)
		}
	}
}

func TestVersionFromNum(t *testing.T) {
	if v := pg.VersionFromNum(130023); v.Major != 13 || v.String() != "13.23" {
		t.Errorf("130023 -> %+v %s", v, v)
	}
	if v := pg.VersionFromNum(90624); v.Major != 9 || v.String() != "9.6.24" {
		t.Errorf("90624 -> %+v %s", v, v)
	}
}
