package steps

import (
	"strings"
	"testing"
)

func TestRoleCreateSQLKeepsTheHashOutOfThePlan(t *testing.T) {
	hash := "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy"
	until := "2030-01-01 00:00:00+00"
	r := role{Name: `odd "name"`, Login: true, Inherit: true, ConnLimit: 7, ValidUntil: &until, password: &hash, Super: true}
	p := &rolesPlan{greenSuper: false, passwords: true}

	shown := r.shown(p)
	if strings.Contains(shown, hash) || strings.Contains(shown, "PASSWORD") {
		t.Fatalf("the shown statement carries the password: %s", shown)
	}
	for _, want := range []string{`CREATE ROLE "odd ""name"""`, "LOGIN", "CONNECTION LIMIT 7", "VALID UNTIL '2030-01-01 00:00:00+00'",
		"password hash copied from blue", "without SUPERUSER"} {
		if !strings.Contains(shown, want) {
			t.Errorf("shown statement lacks %q: %s", want, shown)
		}
	}
	if strings.Contains(shown, " SUPERUSER ") {
		t.Errorf("SUPERUSER given by a role that is not one: %s", shown)
	}

	run := r.createSQL(true, true)
	if !strings.Contains(run, "PASSWORD '"+hash+"'") || !strings.Contains(run, " SUPERUSER") {
		t.Errorf("executed statement: %s", run)
	}

	noPw := role{Name: "app", Login: true, ConnLimit: -1}
	if s := noPw.shown(&rolesPlan{}); !strings.Contains(s, "no password: blue's pg_authid is not readable") || strings.Contains(s, "CONNECTION LIMIT") {
		t.Errorf("role without a readable password: %s", s)
	}
	if s := noPw.shown(&rolesPlan{passwords: true}); !strings.Contains(s, "-- no password on blue") || strings.Contains(s, "pg_authid") {
		t.Errorf("role without a password on blue, whose pg_authid is readable: %s", s)
	}
}

func TestSkippedRoles(t *testing.T) {
	for name, skip := range map[string]bool{
		"pg_read_all_data": true, "rdsadmin": true, "rds_superuser": true, "cloudsqlsuperuser": true,
		"azure_pg_admin": true, "alloydbsuperuser": true, "azuresu": true, "rdstopmgr": true,
		"app": false, "postgres": false, "rdx": false, "rds_reader_app": false, "rdsx": false,
		"cloudsql_app": false, "azure_app": false, "alloydb_reports": false,
	} {
		if skippedRole(name) != skip {
			t.Errorf("skippedRole(%q) = %v", name, !skip)
		}
	}
}
