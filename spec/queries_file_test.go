package spec

import (
	"strings"
	"testing"
)

func TestDecodeQueries(t *testing.T) {
	entries, err := DecodeQueries("q.yaml", []byte(`
- name: by id
  sql: SELECT * FROM accounts WHERE id = $1
  params: [42]
- sql: SELECT count(*) FROM accounts WHERE owner = $1 AND note = $2
  params: [abc, null]
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[0].Name != "by id" || entries[0].Line != 2 || entries[1].Line != 5 {
		t.Fatalf("entries = %+v", entries)
	}
	if p := entries[1].Params; len(p) != 2 || p[0] == nil || *p[0] != "abc" || p[1] != nil {
		t.Fatalf("params of entry 2 = %v, want abc and NULL", p)
	}

	for _, c := range []struct{ name, text, want string }{
		{"unknown key", "- name: a\n  sql: SELECT 1\n  parms: [1]\n", `q.yaml:3: entry 1: unknown key "parms": the keys are name, sql and params`},
		{"not a list", "name: a\nsql: SELECT 1\n", "q.yaml:1: want a YAML list of {name, sql, params}"},
		{"entry not a map", "- SELECT 1\n", "q.yaml:1: entry 1: want a map of name, sql and params"},
		{"nested param", "- sql: SELECT $1\n  params: [[1, 2]]\n", "q.yaml:1: entry 1: params[0]: want a scalar"},
		{"empty", "", "q.yaml: no statements"},
	} {
		_, err := DecodeQueries("q.yaml", []byte(c.text))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to contain %q", c.name, err, c.want)
		}
	}
}

func TestDecodeParams(t *testing.T) {
	p, err := DecodeParams("[42, 'a b', ~]")
	if err != nil || len(p) != 3 || *p[0] != "42" || *p[1] != "a b" || p[2] != nil {
		t.Fatalf("DecodeParams = %v, %v", p, err)
	}
	if _, err := DecodeParams("[1, {a: 2}]"); err == nil || !strings.Contains(err.Error(), "params[1]: want a scalar") {
		t.Fatalf("a map as a value: err = %v", err)
	}
}
