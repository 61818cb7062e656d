package spec

import (
	"strings"
	"testing"
)

// target.settings takes numbers and booleans as YAML writes them and keeps
// the text PostgreSQL reads; the schema refuses settings under source and a
// name that is no parameter name.
func TestTargetSettings(t *testing.T) {
	const cut = "cutover: {switch: {exec: {switch: [a], back: [b]}}}\n"
	const base = cut + "version: 1\nname: s\nsource: {dsn: \"host=a dbname=d\"}\n"
	got, err := LoadBytes("s.yaml", []byte(base+`target:
  dsn: "host=b dbname=d"
  settings: {work_mem: 64MB, max_connections: 200, jit: off, ssl: true, random_page_cost: 1.1, pg_stat_statements.max: 10000}
`), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"work_mem": "64MB", "max_connections": "200", "jit": "off", "ssl": "true",
		"random_page_cost": "1.1", "pg_stat_statements.max": "10000"}
	s := got[0].Target.Settings
	if len(s) != len(want) {
		t.Errorf("settings %v, want %v", s, want)
	}
	for k, v := range want {
		if s[k] != v {
			t.Errorf("settings[%s] = %q, want %q", k, s[k], v)
		}
	}

	for name, doc := range map[string]string{
		"under source": cut + "version: 1\nname: s\nsource: {dsn: \"host=a dbname=d\", settings: {work_mem: 64MB}}\ntarget: {dsn: \"host=b dbname=d\"}\n",
		"odd name":     base + "target: {dsn: \"host=b dbname=d\", settings: {\"Work Mem\": 64MB}}\n",
		"list value":   base + "target: {dsn: \"host=b dbname=d\", settings: {work_mem: [64MB]}}\n",
	} {
		if _, err := LoadBytes("s.yaml", []byte(doc), LoadOptions{}); err == nil ||
			!strings.Contains(err.Error(), "settings") && !strings.Contains(err.Error(), "is not a parameter name") {
			t.Errorf("%s: err = %v, want a problem naming settings or the parameter name", name, err)
		}
	}
}
