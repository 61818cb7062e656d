package pg

import (
	"strings"
	"testing"
)

func TestParseConninfoURL(t *testing.T) {
	kv, err := ParseConninfo("postgres://repl%20user@10.0.0.5:5433/orders%27db?sslmode=require&pool_max_conns=4&application_name=x")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"user": "repl user", "host": "10.0.0.5", "port": "5433", "dbname": "orders'db", "sslmode": "require", "application_name": "x"}
	for k, v := range want {
		if kv[k] != v {
			t.Errorf("%s = %q, want %q", k, kv[k], v)
		}
	}
	if _, ok := kv["pool_max_conns"]; ok {
		t.Errorf("pgx-only pool_max_conns must not reach libpq on green: %v", kv)
	}
}

func TestParseConninfoMultiHostURL(t *testing.T) {
	kv, err := ParseConninfo("postgresql://u@h1:5432,h2:5433/db")
	if err != nil {
		t.Fatal(err)
	}
	if kv["host"] != "h1,h2" || kv["port"] != "5432,5433" {
		t.Fatalf("host=%q port=%q", kv["host"], kv["port"])
	}
}

func TestParseConninfoKeywords(t *testing.T) {
	kv, err := ParseConninfo(`host=127.0.0.1 port = 5432 dbname='my db' user=o\'brien passfile='/etc/pg\\pass'`)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"host": "127.0.0.1", "port": "5432", "dbname": "my db", "user": "o'brien", "passfile": `/etc/pg\pass`}
	for k, v := range want {
		if kv[k] != v {
			t.Errorf("%s = %q, want %q", k, kv[k], v)
		}
	}
	if _, err := ParseConninfo(`host='unterminated`); err == nil {
		t.Error("an unterminated quote must be an error")
	}
	if _, err := ParseConninfo(`host`); err == nil {
		t.Error("a keyword without a value must be an error")
	}
}

func TestSubscriptionConninfoQuotingAndRedaction(t *testing.T) {
	secret := `p'a\ss word`
	full, redacted, err := SubscriptionConninfo("postgres://repl@127.0.0.1:5432/db", secret)
	if err != nil {
		t.Fatal(err)
	}
	wantFull := `host=127.0.0.1 port=5432 dbname=db user=repl password='p\'a\\ss word'`
	if full != wantFull {
		t.Errorf("conninfo:\n got %s\nwant %s", full, wantFull)
	}
	if strings.Contains(redacted, "ss word") || !strings.Contains(redacted, "password=********") {
		t.Errorf("redacted conninfo leaks or hides the password marker: %s", redacted)
	}
	// Round trip: what libpq would read back is what we meant.
	kv, err := ParseConninfo(full)
	if err != nil {
		t.Fatal(err)
	}
	if kv["password"] != secret {
		t.Errorf("round trip password = %q", kv["password"])
	}
}

func TestSubscriptionConninfoNoPassword(t *testing.T) {
	full, redacted, err := SubscriptionConninfo("host=blue.internal dbname=orders user=repl passfile=/var/lib/postgresql/.pgpass", "")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(full, "password=") || full != redacted {
		t.Errorf("without a password the conninfo has no password and nothing to redact: %s / %s", full, redacted)
	}
	if !strings.Contains(full, `passfile=/var/lib/postgresql/.pgpass`) {
		t.Errorf("passfile must pass through to green: %s", full)
	}
}

// A password written into the DSN (no password_env) is as secret as one
// from the environment: an error that echoes the conninfo or the statement
// must not show it, raw or escaped.
func TestRedactConninfoErrDSNPassword(t *testing.T) {
	const secret = `it's\hidden`
	dsn := "host=blue.internal dbname=orders user=repl password='it\\'s\\\\hidden'"
	full, _, err := SubscriptionConninfo(dsn, "")
	if err != nil {
		t.Fatal(err)
	}
	stmt := "CREATE SUBSCRIPTION s CONNECTION " + QuoteLiteral(full) + " PUBLICATION p"
	for _, msg := range []string{
		"invalid connection string: " + full,
		"syntax error in: " + stmt,
		"password " + secret + " rejected",
	} {
		got := RedactConninfoErr(msg, dsn, "")
		if strings.Contains(got, "hidden") {
			t.Errorf("password left in %q", got)
		}
	}
	got := RedactConninfoErr("auth failed for env-secret", "postgres://repl@blue/db", "env-secret")
	if strings.Contains(got, "env-secret") {
		t.Errorf("password_env password left in %q", got)
	}
}

// A password with a space left unquoted must not come back in the parse
// error as a "keyword".
func TestParseConninfoKeywordsNeverEchoesStrayWords(t *testing.T) {
	_, err := parseConninfoKeywords("host=blue user=repl password=open sesame")
	if err == nil {
		t.Fatal("want an error for a stray word")
	}
	if strings.Contains(err.Error(), "sesame") {
		t.Errorf("error echoes a fragment of the password: %v", err)
	}
}

// The client key's passphrase is a secret as much as the password.
func TestSubscriptionConninfoHidesSSLPassword(t *testing.T) {
	dsn := "host=blue dbname=orders user=repl sslcert=/c.crt sslkey=/c.key sslpassword=keyPass1"
	full, redacted, err := SubscriptionConninfo(dsn, "pw")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(full, "sslpassword=keyPass1") || !strings.Contains(full, "password=pw") {
		t.Errorf("full conninfo lacks a secret: %s", full)
	}
	if strings.Contains(redacted, "keyPass1") || !strings.Contains(redacted, "sslpassword=********") {
		t.Errorf("redacted conninfo: %s", redacted)
	}
	if got := RedactConninfoErr("bad key passphrase keyPass1", dsn, ""); strings.Contains(got, "keyPass1") {
		t.Errorf("error keeps the passphrase: %s", got)
	}
}
