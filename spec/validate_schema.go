package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/pgshift/pgshift/schemas"
	"github.com/santhosh-tekuri/jsonschema/v5"
)

// rawSchema is the schema as plain JSON, walked for hints, defaults and the
// valid keys of each mapping.
var rawSchema = func() map[string]any {
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(schemas.UpgradeV1))
	dec.UseNumber() // bounds such as 9223372036854775807 print exactly
	if err := dec.Decode(&m); err != nil {
		panic("engine: embedded schema is not JSON: " + err.Error())
	}
	return m
}()

// schemaPointer resolves a JSON pointer ("/properties/cutover") in rawSchema.
func schemaPointer(ptr string) map[string]any {
	var cur any = rawSchema
	for _, tok := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		if tok == "" {
			continue
		}
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch c := cur.(type) {
		case map[string]any:
			cur = c[tok]
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(c) {
				return nil
			}
			cur = c[i]
		default:
			return nil
		}
	}
	m, _ := cur.(map[string]any)
	return m
}

// deref follows a local $ref, keeping the referring object's own keywords
// (description, default) in front.
func deref(s map[string]any) map[string]any {
	ref, ok := s["$ref"].(string)
	if !ok {
		return s
	}
	target := schemaPointer(strings.TrimPrefix(ref, "#"))
	if target == nil {
		return s
	}
	out := map[string]any{}
	for k, v := range deref(target) {
		out[k] = v
	}
	for k, v := range s {
		if k != "$ref" {
			out[k] = v
		}
	}
	return out
}

// schemaAt is the (dereferenced) schema of the value at a path of keys
// and list indexes, or nil where the schema says nothing.
func schemaAt(path []string) map[string]any {
	s := deref(rawSchema)
	for _, seg := range path {
		if props, ok := s["properties"].(map[string]any); ok {
			if p, ok := props[seg].(map[string]any); ok {
				s = deref(p)
				continue
			}
		}
		if ap, ok := s["additionalProperties"].(map[string]any); ok {
			s = deref(ap)
			continue
		}
		if it, ok := s["items"].(map[string]any); ok {
			if _, err := strconv.Atoi(seg); err == nil {
				s = deref(it)
				continue
			}
		}
		return nil
	}
	return s
}

// schemaTypes lists the JSON types a schema allows.
func schemaTypes(s map[string]any) []string {
	switch t := s["type"].(type) {
	case string:
		return []string{t}
	case []any:
		var out []string
		for _, x := range t {
			if str, ok := x.(string); ok {
				out = append(out, str)
			}
		}
		return out
	}
	return nil
}

// propertyNames lists the keys a mapping schema defines, sorted.
func propertyNames(s map[string]any) []string {
	props, _ := s["properties"].(map[string]any)
	names := make([]string, 0, len(props))
	for k := range props {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// hintFor is the schema's hint for a keyword: x-hints[keyword], else x-hint.
func hintFor(s map[string]any, keyword string) string {
	if hs, ok := s["x-hints"].(map[string]any); ok {
		if h, ok := hs[keyword].(string); ok {
			return h
		}
	}
	h, _ := s["x-hint"].(string)
	return h
}

// validateSchema checks the tree against the embedded JSON Schema and
// translates every failure into a located Error.
func validateSchema(t *tree) errList {
	sch, err := schemas.CompiledUpgradeV1()
	if err != nil {
		panic("engine: embedded schema does not compile: " + err.Error())
	}
	err = sch.Validate(t.value)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return errList{{File: t.doc.file, Entry: -1, Msg: err.Error()}}
	}
	var out errList
	for _, leaf := range leaves(ve) {
		out = append(out, t.translate(leaf)...)
	}
	return out
}

// leaves are the innermost failures: the ones that say what is wrong.
func leaves(ve *jsonschema.ValidationError) []*jsonschema.ValidationError {
	if len(ve.Causes) == 0 {
		return []*jsonschema.ValidationError{ve}
	}
	var out []*jsonschema.ValidationError
	for _, c := range ve.Causes {
		out = append(out, leaves(c)...)
	}
	return out
}

// pointerSegments splits an instance pointer into unescaped keys.
func pointerSegments(ptr string) []string {
	if ptr == "" || ptr == "/" {
		return nil
	}
	segs := strings.Split(strings.TrimPrefix(ptr, "/"), "/")
	for i, s := range segs {
		segs[i] = strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~")
	}
	return segs
}

// errAt builds an error at a place: the value node, or the key node when
// atKey (unknown keys, bad key names).
func (t *tree) errAt(p place, atKey bool, path, msg, hint string) *Error {
	e := &Error{File: t.doc.file, Path: path, Msg: msg, Hint: hint, Entry: -1}
	n := p.val
	if atKey && p.key != nil {
		n = p.key
	}
	if n == nil && t.doc.root != nil {
		n = t.doc.root
	}
	if n != nil {
		e.Line, e.Col = n.Line, n.Column
	} else {
		e.Line, e.Col = 1, 1
	}
	return e
}

func (t *tree) valueAt(ptr string) any {
	var cur = t.value
	for _, seg := range pointerSegments(ptr) {
		switch c := cur.(type) {
		case map[string]any:
			cur = c[seg]
		case []any:
			i, _ := strconv.Atoi(seg)
			if i < 0 || i >= len(c) {
				return nil
			}
			cur = c[i]
		default:
			return nil
		}
	}
	return cur
}

func (t *tree) translate(ve *jsonschema.ValidationError) errList {
	kwPtr := ve.AbsoluteKeywordLocation
	if i := strings.IndexByte(kwPtr, '#'); i >= 0 {
		kwPtr = kwPtr[i+1:]
	}
	toks := strings.Split(kwPtr, "/")
	keyword := toks[len(toks)-1]
	parentPtr := strings.Join(toks[:len(toks)-1], "/")
	s := schemaPointer(parentPtr)
	if s == nil {
		s = map[string]any{}
	}
	inNames := len(toks) >= 2 && toks[len(toks)-2] == "propertyNames"
	p, ok := t.places[ve.InstanceLocation]
	if !ok {
		p = place{}
	}
	path := p.path
	val := t.valueAt(ve.InstanceLocation)
	secret, _ := s["x-secret"].(bool)
	kind, _ := s["x-kind"].(string)

	if inNames {
		segs := pointerSegments(ve.InstanceLocation)
		name := ""
		if len(segs) > 0 {
			name = segs[len(segs)-1]
		}
		return errList{t.errAt(p, true, path, fmt.Sprintf("%s is not %s", strconv.Quote(name), article(orDefault(kind, "valid key"))), hintFor(s, keyword))}
	}

	switch keyword {
	case "additionalProperties":
		obj, _ := val.(map[string]any)
		known := propertyNames(s)
		var out errList
		var unknown []string
		for k := range obj {
			if !hasString(known, k) {
				unknown = append(unknown, k)
			}
		}
		sort.Strings(unknown)
		for _, k := range unknown {
			kp := t.places[ve.InstanceLocation+"/"+escapePointer(k)]
			out = append(out, t.errAt(kp, true, joinPath(path, k), "unknown key", unknownKeyHint(k, known, pointerSegments(ve.InstanceLocation))))
		}
		return out
	case "required":
		obj, _ := val.(map[string]any)
		var out errList
		req, _ := s["required"].([]any)
		for _, r := range req {
			name, _ := r.(string)
			if _, ok := obj[name]; ok {
				continue
			}
			ps := deref(mapOf(mapOf(s["properties"])[name]))
			hint := ""
			if hs, ok := ps["x-hints"].(map[string]any); ok {
				hint, _ = hs["required"].(string)
			}
			if hint == "" {
				hint = firstSentence(ps["description"])
			}
			out = append(out, t.errAt(p, true, joinPath(path, name), "is required", hint))
		}
		return out
	case "type":
		if num, ok := val.(json.Number); ok && kind == "duration" {
			return errList{t.errAt(p, false, path, num.String()+" is not a duration", "try "+num.String()+"s")}
		}
		want := schemaTypes(s)
		for i, w := range want {
			want[i] = typeName(w)
		}
		return errList{t.errAt(p, false, path, fmt.Sprintf("%s is not %s", describe(val, secret), joinOr(want)), hintFor(s, keyword))}
	case "const":
		return errList{t.errAt(p, false, path, fmt.Sprintf("%s is not supported", describe(val, secret)), hintFor(s, keyword))}
	case "enum":
		var opts []string
		enum, _ := s["enum"].([]any)
		for _, e := range enum {
			opts = append(opts, fmt.Sprint(e))
		}
		hint := ""
		if str, ok := val.(string); ok {
			if near := nearest(str, opts); near != "" {
				hint = "did you mean " + near + "?"
			}
		}
		return errList{t.errAt(p, false, path, fmt.Sprintf("%s is not one of %s", describe(val, secret), strings.Join(opts, ", ")), hint)}
	case "pattern":
		str, _ := val.(string)
		what := describe(val, secret)
		if kind == "" {
			kind = "valid value"
		}
		hint := hintFor(s, keyword)
		switch kind {
		case "duration":
			if sug := suggestDuration(str); sug != "" && !secret {
				hint = "try " + sug
			} else {
				hint = "use a Go duration such as 10s, 2m or 1m30s"
			}
		case "size":
			if sug := suggestSize(str); sug != "" && !secret {
				hint = "try " + sug
			} else {
				hint = "use a size such as 1GiB, 512MiB or a number of bytes"
			}
		}
		return errList{t.errAt(p, false, path, fmt.Sprintf("%s is not %s", what, article(kind)), hint)}
	case "minLength":
		return errList{t.errAt(p, false, path, "is empty", hintFor(s, keyword))}
	case "maxLength":
		str, _ := val.(string)
		return errList{t.errAt(p, false, path, fmt.Sprintf("is %d characters long, at most %v allowed", len([]rune(str)), s["maxLength"]), hintFor(s, keyword))}
	case "minimum":
		return errList{t.errAt(p, false, path, fmt.Sprintf("%s is less than the minimum %v", describe(val, secret), s["minimum"]), hintFor(s, keyword))}
	case "maximum":
		return errList{t.errAt(p, false, path, fmt.Sprintf("%s is more than the maximum %v", describe(val, secret), s["maximum"]), hintFor(s, keyword))}
	case "minItems":
		return errList{t.errAt(p, false, path, "is an empty list", hintFor(s, keyword))}
	case "minProperties":
		return errList{t.errAt(p, false, path, "names no driver", "set exactly one of "+joinOr(propertyNames(s)))}
	case "maxProperties":
		obj, _ := val.(map[string]any)
		var set []string
		for k := range obj {
			set = append(set, k)
		}
		sort.Strings(set)
		return errList{t.errAt(p, false, path, "names "+strconv.Itoa(len(set))+" drivers: "+strings.Join(set, ", "), "keep exactly one of "+joinOr(propertyNames(s)))}
	}
	msg := ve.Message
	if secret {
		msg = "is not valid"
	}
	return errList{t.errAt(p, false, path, msg, hintFor(s, keyword))}
}

// article puts a or an before a noun phrase.
func article(s string) string {
	if s != "" && strings.ContainsRune("aeiouAEIOU", rune(s[0])) {
		return "an " + s
	}
	return "a " + s
}

func mapOf(v any) map[string]any {
	m, _ := v.(map[string]any)
	if m == nil {
		return map[string]any{}
	}
	return m
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func hasString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func firstSentence(v any) string {
	s, _ := v.(string)
	if i := strings.Index(s, ". "); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimSuffix(s, ".")
	if s != "" {
		s = strings.ToLower(s[:1]) + s[1:]
	}
	return s
}

func typeName(t string) string {
	switch t {
	case "object":
		return "a mapping"
	case "array":
		return "a list"
	case "integer":
		return "an integer"
	case "boolean":
		return "a boolean (true or false)"
	case "null":
		return "empty"
	default:
		return "a " + t
	}
}

// joinOr writes a, b or c.
func joinOr(items []string) string {
	switch len(items) {
	case 0:
		return ""
	case 1:
		return items[0]
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}

// describe names a value for a message; secrets (connection strings) are
// described by their type only, never their text.
func describe(v any, secret bool) string {
	switch x := v.(type) {
	case nil:
		return "an empty value"
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case bool:
		if secret {
			return "a boolean"
		}
		return strconv.FormatBool(x)
	case json.Number:
		if secret {
			return "a number"
		}
		return x.String()
	case string:
		if secret {
			return "the value"
		}
		if len(x) > 60 {
			x = x[:57] + "..."
		}
		return strconv.Quote(x)
	}
	return fmt.Sprint(v)
}
