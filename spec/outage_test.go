package spec

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestOutageTimeout: replication.outage_timeout bounds how long catch-up
// and verify wait for a lost server; left out it is 5m and leaves the
// spec's hash as it was before the field existed; a value that is not a
// positive duration is refused at its line, with the fix.
func TestOutageTimeout(t *testing.T) {
	base := `version: 1
name: o
source: {dsn: "host=a dbname=x"}
target: {dsn: "host=b dbname=x"}
cutover:
  switch: {exec: {switch: [a], back: [b]}}
`
	load := func(extra string) ([]*Spec, error) {
		return LoadBytes("o.yaml", []byte(base+extra), LoadOptions{})
	}
	got, err := load("")
	if err != nil {
		t.Fatal(err)
	}
	if d := got[0].Replication.Outage(); d != 5*time.Minute {
		t.Errorf("outage bound left out = %s, want 5m", d)
	}
	if strings.Contains(string(mustJSON(t, got[0])), "outage_timeout") {
		t.Errorf("a spec without replication.outage_timeout marshals it (its hash would change with this version)")
	}
	got, err = load("replication: {outage_timeout: 90s}\n")
	if err != nil {
		t.Fatal(err)
	}
	if d := got[0].Replication.Outage(); d != 90*time.Second {
		t.Errorf("outage bound set to 90s = %s", d)
	}
	for value, want := range map[string]string{
		"5 minutes": `replication.outage_timeout: "5 minutes" is not a duration`,
		"0s":        "replication.outage_timeout: must be longer than zero",
	} {
		_, err := load("replication: {outage_timeout: \"" + value + "\"}\n")
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "o.yaml:7:") {
			t.Errorf("outage_timeout %q: error %v, want one at o.yaml:7 containing %q", value, err, want)
		}
	}
}

func mustJSON(t *testing.T, s *Spec) []byte {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
