package spec

import (
	"fmt"

	"gopkg.in/yaml.v3"
)

// QueryEntry is one statement of a YAML queries file (compare_queries'
// queries_file, or compare-queries --queries): its name, SQL and parameter
// values as text (nil for NULL), and the line it starts on.
type QueryEntry struct {
	Name   string
	SQL    string
	Params []*string
	Line   int
}

type queryEntryYAML struct {
	Name   string      `yaml:"name"`
	SQL    string      `yaml:"sql"`
	Params []yaml.Node `yaml:"params"`
}

// DecodeQueries reads a YAML queries file: a list of {name, sql, params}.
// Unknown keys are refused; errors name the file and the line.
func DecodeQueries(path string, data []byte) ([]QueryEntry, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%s: %w (want a YAML list of {name, sql, params})", path, err)
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		return nil, fmt.Errorf("%s: no statements: want a YAML list of {name, sql, params}", path)
	}
	list := root.Content[0]
	if list.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("%s:%d: want a YAML list of {name, sql, params}", path, list.Line)
	}
	var out []QueryEntry
	for i, item := range list.Content {
		if item.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("%s:%d: entry %d: want a map of name, sql and params", path, item.Line, i+1)
		}
		for k := 0; k+1 < len(item.Content); k += 2 {
			if key := item.Content[k]; key.Value != "name" && key.Value != "sql" && key.Value != "params" {
				return nil, fmt.Errorf("%s:%d: entry %d: unknown key %q: the keys are name, sql and params", path, key.Line, i+1, key.Value)
			}
		}
		var e queryEntryYAML
		if err := item.Decode(&e); err != nil {
			return nil, fmt.Errorf("%s:%d: entry %d: %w", path, item.Line, i+1, err)
		}
		params, err := scalarsOf(e.Params)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: entry %d: %w", path, item.Line, i+1, err)
		}
		out = append(out, QueryEntry{Name: e.Name, SQL: e.SQL, Params: params, Line: item.Line})
	}
	return out, nil
}

// DecodeParams reads parameter values written as a YAML flow list, such as
// [42, 'abc', null].
func DecodeParams(text string) ([]*string, error) {
	var nodes []yaml.Node
	if err := yaml.Unmarshal([]byte(text), &nodes); err != nil {
		return nil, fmt.Errorf("%w (want a list such as [42, 'abc', null])", err)
	}
	return scalarsOf(nodes)
}

// scalarsOf turns YAML scalars into parameter text: the value as written
// (42, 2024-01-31, abc), null or ~ as NULL.
func scalarsOf(nodes []yaml.Node) ([]*string, error) {
	var out []*string
	for i, n := range nodes {
		if n.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("params[%d]: want a scalar (a number, a string, null), not a list or map; pass arrays as PostgreSQL text, e.g. '{1,2,3}'", i)
		}
		if n.Tag == "!!null" {
			out = append(out, nil)
			continue
		}
		v := n.Value
		out = append(out, &v)
	}
	return out, nil
}
