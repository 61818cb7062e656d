package spec

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"

	"gopkg.in/yaml.v3"
)

// LoadOptions are the template inputs of a spec, as given on the command line.
type LoadOptions struct {
	Vars      map[string]string // --var k=v
	VarsFile  string            // --vars-file
	Inventory string            // --inventory
}

// LoadFile reads, renders, validates and defaults a spec: one *Spec per
// inventory entry (one without an inventory). On invalid input it returns a
// errList holding every problem found, each located as FILE:LINE:COL.
// path appears in messages as given.
func LoadFile(path string, opts LoadOptions) ([]*Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Errors{Errors: errList{{File: path, Entry: -1, Msg: "cannot read the spec: " + osReason(err)}}}
	}
	return LoadBytes(path, data, opts)
}

// LoadBytes is LoadFile over bytes already read; filename names them in
// messages and places the default state file.
func LoadBytes(filename string, data []byte, opts LoadOptions) ([]*Spec, error) {
	specs, errs := loadBytes(filename, data, opts)
	if len(errs) > 0 {
		return nil, &Errors{Errors: errs.sorted()}
	}
	return specs, nil
}

func loadBytes(filename string, data []byte, opts LoadOptions) ([]*Spec, errList) {
	doc, errs := parseYAML(filename, data, "a spec")
	if errs != nil {
		return nil, errs
	}
	if doc.root != nil && doc.root.Kind != yaml.MappingNode {
		return nil, errList{{File: filename, Line: doc.root.Line, Col: doc.root.Column, Entry: -1,
			Msg: "a spec is a mapping of keys such as version, name, source, target", Hint: "see docs/spec.md for a minimal spec"}}
	}
	if doc.root == nil {
		return nil, errList{{File: filename, Line: 1, Col: 1, Entry: -1, Msg: "the spec is empty",
			Hint: "a minimal spec sets version, name, source.dsn, target.dsn and one cutover.switch driver; see docs/spec.md"}}
	}
	decls := declaredVars(doc)

	var layers []map[string]varValue
	if opts.VarsFile != "" {
		vf, es := readVarsFile(opts.VarsFile)
		errs = append(errs, es...)
		if vf != nil {
			layers = append(layers, vf)
		}
	}
	if opts.Inventory == "" {
		vals, pending, es := resolveVars(filename, decls, layers, opts.Vars, nil, "")
		errs = append(errs, es...)
		spec, es := loadRendered(cloneDoc(doc), vals, decls, pending)
		errs = append(errs, es...)
		if len(errs) > 0 {
			return nil, errs
		}
		return []*Spec{spec}, nil
	}

	entries, es := readInventory(opts.Inventory)
	errs = append(errs, es...)
	if entries == nil {
		return nil, errs
	}
	var specs []*Spec
	byName := map[string]int{}
	for i := range entries {
		entry := &entries[i]
		vals, pending, es := resolveVars(filename, decls, append(layers[:len(layers):len(layers)], entry.vars), opts.Vars, entry, opts.Inventory)
		spec, es2 := loadRendered(cloneDoc(doc), vals, decls, pending)
		if len(es) > 0 {
			spec = nil // a variable is missing: templates that use it were left as written
		}
		es = append(es, es2...)
		name := entryName(doc, vals)
		if spec != nil {
			name = spec.Name
		}
		for _, e := range es {
			// Problems in the vars file or on the command line are the same
			// for every entry: report them once, untagged.
			if e.File == opts.VarsFile && opts.VarsFile != "" || e.File == "--var" {
				if i == 0 {
					errs = append(errs, e)
				}
				continue
			}
			e.Entry, e.EntryName = i, name
			errs = append(errs, e)
		}
		if spec == nil {
			continue
		}
		if j, dup := byName[spec.Name]; dup {
			errs = append(errs, &Error{File: opts.Inventory, Line: entry.node.Line, Col: entry.node.Column, Entry: i, EntryName: spec.Name,
				Msg:  fmt.Sprintf("renders the name %s, like entry %d", spec.Name, j),
				Hint: "names must be unique: make name depend on a variable, such as name: \"{{ .db }}-pg17\""})
			continue
		}
		byName[spec.Name] = i
		specs = append(specs, spec)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return specs, nil
}

// entryName is the rendered name of a spec, best effort, to label the
// problems of an inventory entry.
func entryName(doc *document, vals map[string]string) string {
	_, n := mapGet(doc.root, "name")
	if !isString(n) {
		return ""
	}
	out, err := execTemplate(n.Value, vals)
	if err != nil || !nameRE.MatchString(out) {
		return ""
	}
	return out
}

var nameRE = regexp.MustCompile(`^[a-z0-9_-]+$`)

// loadRendered renders templates in doc, then validates and decodes it.
func loadRendered(doc *document, vals map[string]string, decls map[string]varDecl, pending map[string]bool) (*Spec, errList) {
	declared := map[string]bool{}
	for k := range decls {
		declared[k] = true
	}
	errs := renderTemplates(doc, vals, declared, pending)
	t := toTree(doc)
	var later errList
	later = append(later, t.errs...)
	later = append(later, validateSchema(t)...)
	later = append(later, semanticChecks(doc)...)
	// A string whose template failed was reported already; what the schema
	// or the checks say about its raw template text is noise.
	skip := map[[2]int]bool{}
	for n := range doc.unrendered {
		skip[[2]int{n.Line, n.Column}] = true
	}
	for _, e := range later {
		if !skip[[2]int{e.Line, e.Col}] {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	spec, err := decodeSpec(t)
	if err != nil {
		return nil, errList{{File: doc.file, Line: 1, Col: 1, Entry: -1, Msg: err.Error()}}
	}
	spec.File = doc.file
	if len(vals) > 0 {
		spec.VarValues = vals
	}
	return spec, nil
}

// decodeSpec fills the schema's defaults into the validated tree and decodes
// it into a Spec.
func decodeSpec(t *tree) (*Spec, error) {
	root := t.value.(map[string]any)
	// Freezing through PgBouncer needs a PgBouncer: with another switch
	// the freeze defaults to read-only.
	if co, ok := root["cutover"].(map[string]any); ok {
		if _, set := co["freeze"]; !set {
			if sw, ok := co["switch"].(map[string]any); ok && sw["pgbouncer"] == nil {
				co["freeze"] = "read-only"
			}
		}
	}
	applyDefaults(t.value, rawSchema)
	// Variable defaults and subscription options may be written as numbers
	// or booleans; the Spec holds them as strings.
	for _, d := range mapOf(root["vars"]) {
		if m, ok := d.(map[string]any); ok && m["default"] != nil {
			m["default"] = scalarString(m["default"])
		}
	}
	if repl, ok := root["replication"].(map[string]any); ok {
		if opts, ok := repl["options"].(map[string]any); ok {
			for k, v := range opts {
				opts[k] = scalarString(v)
			}
		}
	}
	b, err := json.Marshal(root)
	if err != nil {
		return nil, fmt.Errorf("cannot encode the spec: %v", err)
	}
	var s Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("cannot decode the spec: %v", err)
	}
	s.fillNames()
	return &s, nil
}

func scalarString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case json.Number:
		return x.String()
	}
	return fmt.Sprint(v)
}

// applyDefaults inserts the schema's default for every absent property,
// recursing into mappings (present or just defaulted).
func applyDefaults(v any, s map[string]any) {
	s = deref(s)
	obj, ok := v.(map[string]any)
	if !ok {
		return
	}
	props, _ := s["properties"].(map[string]any)
	names := make([]string, 0, len(props))
	for k := range props {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		ps := deref(props[name].(map[string]any))
		if _, present := obj[name]; !present {
			if def, has := ps["default"]; has {
				obj[name] = cloneJSON(def)
			}
		}
		if child, ok := obj[name]; ok {
			applyDefaults(child, ps)
		}
	}
}

// cloneJSON deep-copies a default so that no two specs share it.
func cloneJSON(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = cloneJSON(e)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = cloneJSON(e)
		}
		return s
	case float64:
		return json.Number(strconv.FormatFloat(x, 'g', -1, 64))
	}
	return v
}

// cloneDoc deep-copies a document: rendering writes into its nodes.
func cloneDoc(d *document) *document {
	if d.root == nil {
		return &document{file: d.file}
	}
	return &document{file: d.file, root: cloneNode(d.root)}
}

func cloneNode(n *yaml.Node) *yaml.Node {
	c := *n
	if len(n.Content) > 0 {
		c.Content = make([]*yaml.Node, len(n.Content))
		for i, k := range n.Content {
			c.Content[i] = cloneNode(k)
		}
	}
	return &c
}

// osReason is the cause of a file error without the path repeated.
func osReason(err error) string {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err.Error()
	}
	return fmt.Sprint(err)
}
