package querycompare

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/pgshift/pgshift/spec"
)

// LoadFile reads the statements of a --queries file: YAML (.yaml, .yml), a
// list of {name, sql, params}, or SQL (.sql), statements ended by ';' with
// optional "-- name: NAME" and "-- params: [v1, v2]" comment lines before
// each. docs/compare-queries.md describes both.
func LoadFile(path string) ([]Statement, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml":
		return parseYAML(path, data)
	case ".sql":
		return parseSQL(path, string(data))
	}
	return nil, fmt.Errorf("%s: unknown queries file type: name it .yaml (a list of {name, sql, params}) or .sql (statements ended by ';')", path)
}

func parseYAML(path string, data []byte) ([]Statement, error) {
	entries, err := spec.DecodeQueries(path, data)
	if err != nil {
		return nil, err
	}
	var out []Statement
	seen := map[string]bool{}
	for i, e := range entries {
		where := fmt.Sprintf("%s:%d: entry %d", path, e.Line, i+1)
		if e.Name != "" {
			where += fmt.Sprintf(" (%q)", e.Name)
		}
		if strings.TrimSpace(e.SQL) == "" {
			return nil, fmt.Errorf("%s: sql is empty", where)
		}
		if e.Name == "" {
			e.Name = fmt.Sprintf("%s #%d", filepath.Base(path), i+1)
		}
		if seen[e.Name] {
			return nil, fmt.Errorf("%s: name used twice: names tell statements apart in the report", where)
		}
		seen[e.Name] = true
		s := Statement{Name: e.Name, SQL: strings.TrimSpace(e.SQL), Origin: FromFile, Params: e.Params}
		if err := checkParams(s); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no statements: want a YAML list of {name, sql, params}", path)
	}
	return out, nil
}

// checkParams refuses values that do not match the placeholders.
func checkParams(s Statement) error {
	n := Placeholders(s.SQL)
	// No values at all is allowed: the statement is then compared by its
	// generic plan only, as pg_stat_statements' statements are.
	if len(s.Params) > 0 && len(s.Params) != n {
		return fmt.Errorf("%d params for a statement that uses %d placeholders: give one value per placeholder ($1..$%d)", len(s.Params), n, n)
	}
	return nil
}

// parseSQL splits a SQL file at the semicolons outside quotes and
// comments; "-- name:" and "-- params:" lines before a statement name it
// and give its values (a YAML flow list).
func parseSQL(path, text string) ([]Statement, error) {
	var parts []string
	last := 0
	scanSQL(text, nil, func(i int) {
		parts = append(parts, text[last:i])
		last = i + 1
	})
	if strings.TrimSpace(stripComments(text[last:])) != "" {
		parts = append(parts, text[last:])
	}
	var out []Statement
	seen := map[string]bool{}
	for _, p := range parts {
		var name, params string
		var body []string
		for _, line := range strings.Split(p, "\n") {
			t := strings.TrimSpace(line)
			if v, ok := strings.CutPrefix(t, "-- name:"); ok && len(body) == 0 {
				name = strings.TrimSpace(v)
				continue
			}
			if v, ok := strings.CutPrefix(t, "-- params:"); ok && len(body) == 0 {
				params = strings.TrimSpace(v)
				continue
			}
			if len(body) == 0 && (t == "" || strings.HasPrefix(t, "--")) {
				continue
			}
			body = append(body, line)
		}
		sql := strings.TrimSpace(strings.Join(body, "\n"))
		if sql == "" {
			continue
		}
		if name == "" {
			name = fmt.Sprintf("%s #%d", filepath.Base(path), len(out)+1)
		}
		where := fmt.Sprintf("%s: statement %d (%q)", path, len(out)+1, name)
		if seen[name] {
			return nil, fmt.Errorf("%s: name used twice: names tell statements apart in the report", where)
		}
		seen[name] = true
		s := Statement{Name: name, SQL: sql, Origin: FromFile}
		if params != "" {
			var err error
			if s.Params, err = spec.DecodeParams(params); err != nil {
				return nil, fmt.Errorf("%s: -- params: %w", where, err)
			}
		}
		if err := checkParams(s); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no statements: want SQL statements ended by ';'", path)
	}
	return out, nil
}

func stripComments(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "--") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}
