package spec

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"

	"gopkg.in/yaml.v3"
)

var (
	tmplNoKeyRE  = regexp.MustCompile(`map has no entry for key "([^"]*)"`)
	tmplParseRE  = regexp.MustCompile(`^template: t:[0-9]+: `)
	tmplExecRE   = regexp.MustCompile(`^template: t:[0-9:]+ executing "t" at <[^>]*>: `)
	tmplPrefixRE = regexp.MustCompile(`^template: t:[0-9:]+ ?`)
)

// renderTemplates executes every string value that holds "{{" as a Go
// text/template over the variables (missingkey=error), in place. The vars
// mapping itself is not rendered. pending are variables declared without a
// value: their absence was reported at the declaration, so uses of them are
// not reported again.
func renderTemplates(doc *document, vals map[string]string, declared map[string]bool, pending map[string]bool) errList {
	if doc.root == nil {
		return nil
	}
	var errs errList
	data := make(map[string]string, len(vals))
	for k, v := range vals {
		data[k] = v
	}
	var walk func(n *yaml.Node, path []string)
	walk = func(n *yaml.Node, path []string) {
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i].Value
				if len(path) == 0 && k == "vars" {
					continue
				}
				walk(n.Content[i+1], append(path, k))
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, append(path, strconv.Itoa(i)))
			}
		case yaml.ScalarNode:
			if !isString(n) || !strings.Contains(n.Value, "{{") {
				return
			}
			out, err := execTemplate(n.Value, data)
			if err != nil {
				if doc.unrendered == nil {
					doc.unrendered = map[*yaml.Node]bool{}
				}
				doc.unrendered[n] = true
				if e := templateError(doc.file, n, displayPath(path), err, declared, pending); e != nil {
					errs = append(errs, e)
				}
				return
			}
			n.Value = out
			retype(n, path)
		}
	}
	walk(doc.root, nil)
	return errs
}

// maxRendered bounds what one template may produce.
const maxRendered = 64 << 10

var wideVerbRE = regexp.MustCompile(`%[-+# 0]*[0-9]{4,}|%[-+# 0]*[0-9]*\.[0-9]{4,}|%\*`)

// templateFuncs replaces the formatting builtins with ones that refuse
// absurd widths: a spec is data, rendering it must stay cheap.
var templateFuncs = template.FuncMap{
	"printf": func(format string, args ...any) (string, error) {
		if wideVerbRE.MatchString(format) {
			return "", errors.New("printf widths above 999 are not supported")
		}
		return fmt.Sprintf(format, args...), nil
	},
}

func execTemplate(text string, data map[string]string) (string, error) {
	t, err := template.New("t").Option("missingkey=error").Funcs(templateFuncs).Parse(text)
	if err != nil {
		return "", err
	}
	if err := checkTemplate(t.Tree.Root); err != nil {
		return "", err
	}
	w := &limitedWriter{max: maxRendered}
	if err := t.Execute(w, data); err != nil {
		return "", err
	}
	return w.b.String(), nil
}

// checkTemplate allows variables, functions, if and with; not range,
// template, define or block, which have no use in a spec and can loop.
func checkTemplate(n parse.Node) error {
	switch x := n.(type) {
	case *parse.ListNode:
		if x == nil {
			return nil
		}
		for _, c := range x.Nodes {
			if err := checkTemplate(c); err != nil {
				return err
			}
		}
	case *parse.IfNode:
		if err := checkTemplate(x.List); err != nil {
			return err
		}
		return checkTemplate(x.ElseList)
	case *parse.WithNode:
		if err := checkTemplate(x.List); err != nil {
			return err
		}
		return checkTemplate(x.ElseList)
	case *parse.RangeNode:
		return errors.New("range is not supported in a spec")
	case *parse.TemplateNode:
		return errors.New("template calls are not supported in a spec")
	}
	return nil
}

type limitedWriter struct {
	b   strings.Builder
	max int
}

func (w *limitedWriter) Write(p []byte) (int, error) {
	if w.b.Len()+len(p) > w.max {
		return 0, fmt.Errorf("renders more than %d bytes", w.max)
	}
	return w.b.Write(p)
}

// templateError explains a failed template at the string holding it.
func templateError(file string, n *yaml.Node, path string, err error, declared, pending map[string]bool) *Error {
	e := &Error{File: file, Line: n.Line, Col: n.Column, Path: path, Entry: -1}
	msg := err.Error()
	if m := tmplNoKeyRE.FindStringSubmatch(msg); m != nil {
		name := m[1]
		if pending[name] {
			return nil
		}
		e.Msg = "template uses {{ ." + name + " }}, which is not declared under vars"
		if near := nearest(name, slices.Sorted(maps.Keys(declared))); near != "" {
			e.Hint = "did you mean " + near + "?"
		} else {
			e.Hint = "declare it: vars: {" + name + ": {description: ...}}"
		}
		return e
	}
	switch {
	case tmplExecRE.MatchString(msg):
		msg = tmplExecRE.ReplaceAllString(msg, "")
	case tmplParseRE.MatchString(msg):
		msg = tmplParseRE.ReplaceAllString(msg, "")
	default:
		msg = tmplPrefixRE.ReplaceAllString(msg, "")
	}
	e.Msg = "template error: " + msg
	e.Hint = "variables are written {{ .name }}"
	return e
}

// retype gives a rendered value the YAML type its field wants: a template
// is always a quoted string, but "{{ .workers }}" may fill an integer.
func retype(n *yaml.Node, path []string) {
	s := schemaAt(path)
	if s == nil {
		return
	}
	types := schemaTypes(s)
	if hasString(types, "string") {
		return
	}
	v := strings.TrimSpace(n.Value)
	switch {
	case (hasString(types, "integer") || hasString(types, "number")) && isInteger(v):
		n.Tag, n.Value, n.Style = "!!int", v, 0
	case hasString(types, "number") && isFloat(v):
		n.Tag, n.Value, n.Style = "!!float", v, 0
	case hasString(types, "boolean") && (v == "true" || v == "false"):
		n.Tag, n.Value, n.Style = "!!bool", v, 0
	}
}

func isInteger(s string) bool {
	_, err := strconv.ParseInt(s, 10, 64)
	return err == nil
}

func isFloat(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

// displayPath writes path segments as a.b[2].c.
func displayPath(path []string) string {
	var b strings.Builder
	for _, seg := range path {
		if _, err := strconv.Atoi(seg); err == nil && b.Len() > 0 {
			b.WriteString("[" + seg + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(seg)
	}
	return b.String()
}
