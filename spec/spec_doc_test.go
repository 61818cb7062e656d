package spec

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
)

const (
	specDoc       = "../docs/spec.md"
	fieldsBegin   = "<!-- fields:begin (generated from schemas/upgrade.v1.schema.json by go test ./spec -run TestSpecDocMatchesSchema -update) -->"
	fieldsEnd     = "<!-- fields:end -->"
	varNamedField = "vars.NAME"
)

// docField is one row of the field reference.
type docField struct {
	path, typ, def, meaning string
}

// schemaFields walks the schema: every field, in document order of the
// contract (properties sorted within a mapping, parents before children).
func schemaFields() []docField {
	var out []docField
	var walk func(s map[string]any, path string, required []string)
	walk = func(s map[string]any, path string, _ []string) {
		s = deref(s)
		props, _ := s["properties"].(map[string]any)
		req := map[string]bool{}
		if r, ok := s["required"].([]any); ok {
			for _, x := range r {
				req[x.(string)] = true
			}
		}
		names := make([]string, 0, len(props))
		for k := range props {
			names = append(names, k)
		}
		sort.SliceStable(names, func(i, j int) bool { return fieldOrder(path, names[i]) < fieldOrder(path, names[j]) })
		for _, name := range names {
			ps := deref(props[name].(map[string]any))
			p := joinPath(path, name)
			out = append(out, docField{path: p, typ: docType(ps), def: docDefault(ps, req[name]), meaning: docMeaning(ps)})
			walk(ps, p, nil)
		}
		if ap, ok := s["additionalProperties"].(map[string]any); ok && path == "vars" {
			aps := deref(ap)
			out = append(out, docField{path: varNamedField, typ: "mapping", def: "—", meaning: "Declares the variable NAME: letters, digits and _, not starting with a digit."})
			walk(aps, varNamedField, nil)
		}
	}
	walk(rawSchema, "", nil)
	return out
}

// fieldOrder keeps the contract's order at the top level (as DESIGN and
// every example write it); nested keys sort by name.
func fieldOrder(path, name string) string {
	if path != "" {
		return name
	}
	order := []string{"version", "name", "vars", "source", "target", "schema", "tables", "replication", "sequences", "verify", "cutover", "metrics"}
	for i, o := range order {
		if o == name {
			return fmt.Sprintf("%02d", i)
		}
	}
	return "99" + name
}

func docType(s map[string]any) string {
	if kind, ok := s["x-kind"].(string); ok && (kind == "duration" || kind == "size") {
		return kind
	}
	if enum, ok := s["enum"].([]any); ok {
		var vals []string
		for _, e := range enum {
			vals = append(vals, "`"+fmt.Sprint(e)+"`")
		}
		return strings.Join(vals, " \\| ")
	}
	if s["x-secret"] == true {
		return "connection string"
	}
	types := schemaTypes(s)
	for i, t := range types {
		switch t {
		case "object":
			types[i] = "mapping"
		case "array":
			it := deref(mapOf(s["items"]))
			types[i] = "list of " + strings.Join(schemaTypes(it), ", ")
		}
	}
	return strings.Join(types, " or ")
}

func docDefault(s map[string]any, required bool) string {
	if required {
		return "required"
	}
	def, ok := s["default"]
	if !ok {
		return "none"
	}
	if m, ok := def.(map[string]any); ok && len(m) == 0 {
		if s["type"] == "object" {
			return "—"
		}
	}
	b, _ := json.Marshal(def)
	return "`" + string(b) + "`"
}

func docMeaning(s map[string]any) string {
	d, _ := s["description"].(string)
	d = strings.ReplaceAll(d, "|", "\\|")
	return strings.NewReplacer("<", "&lt;", ">", "&gt;").Replace(d)
}

// fieldsTable is the generated field reference.
func fieldsTable() string {
	var b strings.Builder
	b.WriteString("| field | type | default | meaning |\n| --- | --- | --- | --- |\n")
	for _, f := range schemaFields() {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", f.path, f.typ, f.def, f.meaning)
	}
	return b.String()
}

var docFieldRE = regexp.MustCompile("(?m)^\\| `([a-zA-Z_.A-Z]+)` \\|")

// docs/spec.md documents every field of the schema and no other: its field
// reference is generated from the schema, and every example in it is a
// valid spec.
func TestSpecDocMatchesSchema(t *testing.T) {
	b, err := os.ReadFile(specDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i, j := strings.Index(doc, fieldsBegin), strings.Index(doc, fieldsEnd)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the markers %q and %q around the field reference", specDoc, fieldsBegin, fieldsEnd)
	}
	want := fieldsTable()
	got := doc[i+len(fieldsBegin)+1 : j]
	if *update {
		doc = doc[:i+len(fieldsBegin)] + "\n" + want + doc[j:]
		if err := os.WriteFile(specDoc, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if got != want {
		t.Errorf("the field reference in %s is out of date with the schema: run go test ./spec -run TestSpecDocMatchesSchema -update", specDoc)
	}
	documented := map[string]bool{}
	for _, m := range docFieldRE.FindAllStringSubmatch(got, -1) {
		documented[m[1]] = true
	}
	inSchema := map[string]bool{}
	for _, f := range schemaFields() {
		inSchema[f.path] = true
		if !documented[f.path] {
			t.Errorf("schema field %s is not documented in %s", f.path, specDoc)
		}
		if f.meaning == "" {
			t.Errorf("schema field %s has no description", f.path)
		}
	}
	for p := range documented {
		if !inSchema[p] {
			t.Errorf("%s documents %s, which the schema does not have", specDoc, p)
		}
	}
	// The doc's YAML examples marked as specs load.
	for n, ex := range regexp.MustCompile("(?s)```yaml\n# spec\n(.*?)```").FindAllStringSubmatch(doc, -1) {
		var opts LoadOptions
		if strings.Contains(ex[1], "{{ .db }}") {
			opts.Vars = map[string]string{"db": "orders"}
		}
		if _, err := LoadBytes(fmt.Sprintf("docs/spec.md example %d", n+1), []byte(ex[1]), opts); err != nil {
			t.Errorf("example %d in %s does not load: %v", n+1, specDoc, err)
		}
	}
}
