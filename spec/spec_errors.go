package spec

import (
	"fmt"
	"sort"
	"strings"
)

// Error is one problem in a spec, a vars file or an inventory, located
// at the YAML node that holds it.
type Error struct {
	File string // as the user named it (command-line path)
	Line int    // 1-based; 0 when the problem has no place in a file
	Col  int    // 1-based
	Path string // like cutover.switch.pgbouncer.config
	Msg  string // what is wrong
	Hint string // how to fix it; may be ""

	// Entry is the inventory entry the spec was rendered for (-1: none),
	// EntryName its rendered name when known.
	Entry     int
	EntryName string
}

// Error formats the problem as FILE:LINE:COL: PATH: message (hint).
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Col)
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Hint != "" {
		b.WriteString(" (")
		b.WriteString(e.Hint)
		b.WriteString(")")
	}
	if e.Entry >= 0 {
		fmt.Fprintf(&b, " [inventory entry %d", e.Entry)
		if e.EntryName != "" {
			fmt.Fprintf(&b, ": %s", e.EntryName)
		}
		b.WriteString("]")
	}
	return b.String()
}

// Errors is every problem found while loading a spec; LoadFile and
// LoadBytes return it (as *Errors) for invalid input.
type Errors struct {
	Errors []*Error
}

// Error is one problem per line.
func (e *Errors) Error() string { return errList(e.Errors).Error() }

// Lines is each problem formatted, in order.
func (e *Errors) Lines() []string { return errList(e.Errors).Lines() }

// errList collects problems while loading.
type errList []*Error

// Error is one problem per line.
func (es errList) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Lines is each problem formatted, in order.
func (es errList) Lines() []string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return lines
}

// sorted orders problems by inventory entry, file, position and path, and
// drops exact duplicates (a value the schema and a semantic check both
// refuse is reported once, by the first).
func (es errList) sorted() errList {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i], es[j]
		if a.Entry != b.Entry {
			return a.Entry < b.Entry
		}
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Col != b.Col {
			return a.Col < b.Col
		}
		return a.Path < b.Path
	})
	out := es[:0]
	seen := map[string]bool{}
	for _, e := range es {
		k := fmt.Sprintf("%d\x00%s\x00%d\x00%d\x00%s", e.Entry, e.File, e.Line, e.Col, e.Path)
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, e)
	}
	return out
}
