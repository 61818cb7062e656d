package spec

import (
	"encoding/json"
	"errors"
	"io"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// A document is one YAML file held as yaml.v3 nodes, so that every value and
// key keeps its line and column for messages.
type document struct {
	file string
	root *yaml.Node // the top-level mapping (nil when the file is empty)

	// unrendered holds the strings whose template failed: other checks
	// skip them, having only the template text to look at.
	unrendered map[*yaml.Node]bool
}

// maxNodes bounds alias expansion ("billion laughs") and absurd inputs.
const maxNodes = 100000

var yamlLineRE = regexp.MustCompile(`^yaml: line ([0-9]+): (.*)$`)

// parseYAML reads one YAML document whose top level must be a mapping.
func parseYAML(file string, data []byte, what string) (*document, errList) {
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	var top yaml.Node
	err := dec.Decode(&top)
	if errors.Is(err, io.EOF) {
		return &document{file: file}, nil
	}
	if err != nil {
		return nil, errList{yamlSyntaxError(file, data, err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, errList{{File: file, Line: extra.Line, Col: extra.Column, Entry: -1,
			Msg: "a second YAML document", Hint: what + " holds one document: remove the '---' and what follows"}}
	} else if !errors.Is(err, io.EOF) {
		return nil, errList{yamlSyntaxError(file, data, err)}
	}
	n := &top
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return &document{file: file}, nil
		}
		n = n.Content[0]
	}
	budget := maxNodes
	n, err = expandAliases(n, &budget, 0)
	if err != nil {
		return nil, errList{{File: file, Line: top.Line, Col: top.Column, Entry: -1, Msg: err.Error(),
			Hint: "write the values out instead of repeating anchors"}}
	}
	return &document{file: file, root: n}, nil
}

// yamlSyntaxError turns a yaml.v3 error ("yaml: line 3: ...") into a located
// one. Some yaml.v3 errors carry no line: those are placed where the input
// ends, or at its first bad byte.
func yamlSyntaxError(file string, data []byte, err error) *Error {
	msg := err.Error()
	line := 0
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else if m := yamlLineRE.FindStringSubmatch("yaml: " + msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	col := 1
	if line == 0 {
		line, col = unlocatedYAMLError(data, msg)
	}
	switch {
	case strings.Contains(msg, "did not find expected key"), strings.Contains(msg, "mapping values are not allowed"),
		strings.Contains(msg, "did not find expected '-' indicator"), strings.Contains(msg, "block sequence entries are not allowed"):
		if l, c := indentationFault(data, line); l > 0 {
			line, col = l, c
		}
	case strings.Contains(msg, "did not find expected ',' or ']'"), strings.Contains(msg, "did not find expected ',' or '}'"):
		if l, c := unclosedFlow(data, line); l > 0 {
			line, col = l, c
		}
	}
	return &Error{File: file, Line: line, Col: col, Entry: -1, Msg: "invalid YAML: " + msg,
		Hint: "check indentation and quote values holding ':', '{' or '#'"}
}

// unlocatedYAMLError guesses the place of a yaml.v3 error that names none.
func unlocatedYAMLError(data []byte, msg string) (line, col int) {
	at := func(off int) (int, int) {
		l, c := 1, 1
		for _, r := range string(data[:off]) {
			if r == '\n' {
				l, c = l+1, 1
			} else {
				c++
			}
		}
		return l, c
	}
	switch {
	case strings.Contains(msg, "end of stream"):
		return at(len(data))
	case strings.Contains(msg, "control characters"), strings.Contains(msg, "UTF-8"), strings.Contains(msg, "UTF-16"):
		for off, r := range string(data) {
			if r == utf8.RuneError || (r < 0x20 && r != '\t' && r != '\n' && r != '\r') || r == 0x7f {
				return at(off)
			}
		}
	}
	return 1, 1
}

// expandAliases copies the tree with every alias replaced by a copy of its
// anchor's node, so that each value has exactly one place (and templates are
// rendered once per place).
func expandAliases(n *yaml.Node, budget *int, depth int) (*yaml.Node, error) {
	*budget--
	if *budget < 0 {
		return nil, errors.New("the document is too large once its aliases are expanded")
	}
	if depth > 200 {
		return nil, errors.New("the document nests too deeply")
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return nil, errors.New("an alias refers to no anchor")
		}
		c, err := expandAliases(n.Alias, budget, depth+1)
		if err != nil {
			return nil, err
		}
		// The copy keeps the anchor's content but points at the alias, where
		// the user sees this value.
		cc := *c
		cc.Line, cc.Column = n.Line, n.Column
		return &cc, nil
	}
	c := *n
	c.Anchor = ""
	if len(n.Content) > 0 {
		c.Content = make([]*yaml.Node, len(n.Content))
		for i, k := range n.Content {
			e, err := expandAliases(k, budget, depth+1)
			if err != nil {
				return nil, err
			}
			c.Content[i] = e
		}
	}
	return &c, nil
}

// place is where a value sits: its key node (nil for list items and the
// root) and its value node.
type place struct {
	key, val *yaml.Node
	path     string // dotted display path: cutover.switch.pgbouncer.config, tables.include[1]
}

// tree is a document converted to plain values for schema validation, with
// an index from JSON pointer to place.
type tree struct {
	doc    *document
	value  any
	places map[string]place
	errs   errList
}

// toTree converts the nodes to map[string]any / []any / string / bool /
// json.Number / nil, recording the place of every value.
func toTree(doc *document) *tree {
	t := &tree{doc: doc, places: map[string]place{}}
	if doc.root == nil {
		t.value = map[string]any{}
		t.places[""] = place{}
		return t
	}
	t.value = t.convert(doc.root, nil, "", "")
	return t
}

func (t *tree) convert(n *yaml.Node, key *yaml.Node, ptr, path string) any {
	t.places[ptr] = place{key: key, val: n, path: path}
	switch n.Kind {
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				t.errs = append(t.errs, &Error{File: t.doc.file, Line: k.Line, Col: k.Column, Entry: -1,
					Path: path, Msg: "a key must be a plain string", Hint: "write key: value"})
				continue
			}
			name := k.Value
			child := joinPath(path, name)
			if _, dup := m[name]; dup {
				t.errs = append(t.errs, &Error{File: t.doc.file, Line: k.Line, Col: k.Column, Entry: -1,
					Path: child, Msg: "duplicate key", Hint: "keep one " + name + " in this mapping"})
				continue
			}
			m[name] = t.convert(v, k, ptr+"/"+escapePointer(name), child)
		}
		return m
	case yaml.SequenceNode:
		s := make([]any, len(n.Content))
		for i, v := range n.Content {
			s[i] = t.convert(v, nil, ptr+"/"+strconv.Itoa(i), path+"["+strconv.Itoa(i)+"]")
		}
		return s
	case yaml.ScalarNode:
		return scalarValue(n)
	}
	return nil
}

// scalarValue is a scalar as JSON would hold it, following YAML 1.2 core
// tags as yaml.v3 resolves them.
func scalarValue(n *yaml.Node) any {
	switch n.ShortTag() {
	case "!!null":
		return nil
	case "!!bool":
		var b bool
		if n.Decode(&b) == nil {
			return b
		}
	case "!!int":
		var i int64
		if n.Decode(&i) == nil {
			return json.Number(strconv.FormatInt(i, 10))
		}
		var u uint64
		if n.Decode(&u) == nil {
			return json.Number(strconv.FormatUint(u, 10))
		}
	case "!!float":
		var f float64
		if n.Decode(&f) == nil {
			s := strconv.FormatFloat(f, 'g', -1, 64)
			if _, err := strconv.ParseFloat(s, 64); err == nil && !strings.ContainsAny(s, "IN") {
				return json.Number(s)
			}
		}
	}
	return n.Value
}

// joinPath appends a key to a dotted display path.
func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// mapGet returns the value node under key in a mapping node, or nil.
func mapGet(n *yaml.Node, key string) (k, v *yaml.Node) {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key && n.Content[i].Kind == yaml.ScalarNode {
			return n.Content[i], n.Content[i+1]
		}
	}
	return nil, nil
}

// nodeAt follows dotted keys from the root; nil when absent.
func nodeAt(root *yaml.Node, keys ...string) (key, val *yaml.Node) {
	val = root
	for _, k := range keys {
		key, val = mapGet(val, k)
		if val == nil {
			return nil, nil
		}
	}
	return key, val
}

// isString reports whether n is a plain string scalar.
func isString(n *yaml.Node) bool {
	return n != nil && n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str"
}
