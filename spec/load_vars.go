package spec

import (
	"maps"
	"os"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// varDecl is a variable declared under vars: in the spec.
type varDecl struct {
	key         *yaml.Node
	def         *string
	description string
}

// varValue is a variable given by a vars file, an inventory entry or the
// command line, with where it was given.
type varValue struct {
	value string
	file  string
	key   *yaml.Node // nil on the command line
}

// declaredVars reads the declarations under vars:. Malformed declarations
// are skipped here: the schema reports them.
func declaredVars(doc *document) map[string]varDecl {
	decls := map[string]varDecl{}
	_, vars := mapGet(doc.root, "vars")
	if vars == nil || vars.Kind != yaml.MappingNode {
		return decls
	}
	for i := 0; i+1 < len(vars.Content); i += 2 {
		k, v := vars.Content[i], vars.Content[i+1]
		d := varDecl{key: k}
		if _, def := mapGet(v, "default"); def != nil && def.Kind == yaml.ScalarNode && def.ShortTag() != "!!null" {
			s := def.Value
			d.def = &s
		}
		if _, desc := mapGet(v, "description"); desc != nil && desc.Kind == yaml.ScalarNode {
			d.description = desc.Value
		}
		decls[k.Value] = d
	}
	return decls
}

// readVarsMap reads a YAML mapping of variable: scalar (a vars file or one
// inventory entry).
func readVarsMap(file string, n *yaml.Node, path string) (map[string]varValue, errList) {
	vals := map[string]varValue{}
	if n == nil {
		return vals, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, errList{{File: file, Line: n.Line, Col: n.Column, Path: path, Entry: -1,
			Msg: "is not a mapping of variables", Hint: "write name: value, one per line"}}
	}
	var errs errList
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		p := joinPath(path, k.Value)
		if v.Kind != yaml.ScalarNode {
			errs = append(errs, &Error{File: file, Line: v.Line, Col: v.Column, Path: p, Entry: -1,
				Msg: "a variable's value must be a string, number or boolean", Hint: "templates fill strings"})
			continue
		}
		if _, dup := vals[k.Value]; dup {
			errs = append(errs, &Error{File: file, Line: k.Line, Col: k.Column, Path: p, Entry: -1,
				Msg: "duplicate variable", Hint: "keep one " + k.Value})
			continue
		}
		val := v.Value
		if v.ShortTag() == "!!null" {
			val = ""
		}
		vals[k.Value] = varValue{value: val, file: file, key: k}
	}
	return vals, errs
}

// readVarsFile reads --vars-file.
func readVarsFile(path string) (map[string]varValue, errList) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, errList{{File: path, Entry: -1, Msg: "cannot read the vars file: " + osReason(err)}}
	}
	doc, errs := parseYAML(path, data, "a vars file")
	if errs != nil {
		return nil, errs
	}
	return readVarsMap(path, doc.root, "")
}

// inventoryEntry is one database of an inventory.
type inventoryEntry struct {
	node *yaml.Node
	vars map[string]varValue
}

// readInventory reads --inventory: a list of variable mappings.
func readInventory(path string) ([]inventoryEntry, errList) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, errList{{File: path, Entry: -1, Msg: "cannot read the inventory: " + osReason(err)}}
	}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	var top yaml.Node
	if err := dec.Decode(&top); err != nil {
		if err.Error() == "EOF" {
			return nil, errList{{File: path, Entry: -1, Msg: "the inventory lists no entries", Hint: "write a list: - {db: orders}"}}
		}
		return nil, errList{yamlSyntaxError(path, data, err)}
	}
	n := &top
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	budget := maxNodes
	n, err = expandAliases(n, &budget, 0)
	if err != nil {
		return nil, errList{{File: path, Line: top.Line, Col: top.Column, Entry: -1, Msg: err.Error()}}
	}
	if n.Kind != yaml.SequenceNode {
		return nil, errList{{File: path, Line: n.Line, Col: n.Column, Entry: -1,
			Msg: "an inventory is a list of variable mappings", Hint: "write one entry per database: - {db: orders}"}}
	}
	if len(n.Content) == 0 {
		return nil, errList{{File: path, Line: n.Line, Col: n.Column, Entry: -1, Msg: "the inventory lists no entries", Hint: "write a list: - {db: orders}"}}
	}
	var errs errList
	entries := make([]inventoryEntry, len(n.Content))
	for i, e := range n.Content {
		vals, es := readVarsMap(path, e, "")
		for _, x := range es {
			x.Entry = i
		}
		errs = append(errs, es...)
		entries[i] = inventoryEntry{node: e, vars: vals}
	}
	return entries, errs
}

// resolveVars merges the layers, lowest first: declared defaults, the vars
// file, the inventory entry, --var. A variable given but not declared is an
// error (typos must not pass silently); so is a declared one without value.
func resolveVars(specFile string, decls map[string]varDecl, layers []map[string]varValue, cli map[string]string, entry *inventoryEntry, invFile string) (vals map[string]string, pending map[string]bool, errs errList) {
	vals = map[string]string{}
	pending = map[string]bool{}
	declNames := slices.Sorted(maps.Keys(decls))
	for name, d := range decls {
		if d.def != nil {
			vals[name] = *d.def
		}
	}
	undeclared := func(name string, v varValue, flag string) {
		hint := "remove it, or declare it under the spec's vars:"
		if near := nearest(name, declNames); near != "" {
			hint = "did you mean " + near + "?"
		}
		e := &Error{File: v.file, Path: name, Entry: -1, Msg: "variable is not declared under vars: in " + specFile, Hint: hint}
		if v.key != nil {
			e.Line, e.Col = v.key.Line, v.key.Column
		} else {
			e.File = flag
		}
		errs = append(errs, e)
	}
	for _, layer := range layers {
		for _, name := range slices.Sorted(maps.Keys(layer)) {
			v := layer[name]
			if _, ok := decls[name]; !ok {
				undeclared(name, v, "")
				continue
			}
			vals[name] = v.value
		}
	}
	for _, name := range slices.Sorted(maps.Keys(cli)) {
		if _, ok := decls[name]; !ok {
			undeclared(name, varValue{}, "--var")
			continue
		}
		vals[name] = cli[name]
	}
	for _, name := range declNames {
		if _, ok := vals[name]; ok {
			continue
		}
		d := decls[name]
		pending[name] = true
		hint := "give --var " + name + "=VALUE, a --vars-file or an inventory entry"
		if d.description != "" {
			hint = d.description + "; " + hint
		}
		if entry != nil {
			errs = append(errs, &Error{File: invFile, Line: entry.node.Line, Col: entry.node.Column, Path: name, Entry: -1,
				Msg: "no value for variable " + name, Hint: strings.Replace(hint, "give --var "+name+"=VALUE, a --vars-file or an inventory entry", "add "+name+" to this entry, or give --var "+name+"=VALUE or a --vars-file", 1)})
			continue
		}
		errs = append(errs, &Error{File: specFile, Line: d.key.Line, Col: d.key.Column, Path: "vars." + name, Entry: -1,
			Msg: "no value given", Hint: hint})
	}
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
	return vals, pending, errs
}
