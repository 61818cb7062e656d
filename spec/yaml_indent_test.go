package spec

import (
	"os"
	"path/filepath"
	"testing"
)

// TestIndentationFaultNoFalsePositive: on every valid spec of the repo
// (lists, nested mappings, comments, flow collections, block scalars) the
// checker finds nothing.
func TestIndentationFaultNoFalsePositive(t *testing.T) {
	files, _ := filepath.Glob("../testdata/specs/valid/*.yaml")
	more, _ := filepath.Glob("../plans/testdata/*.yaml")
	files = append(files, more...)
	if len(files) == 0 {
		t.Fatal("no valid specs found under testdata/specs/valid")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if l, c := indentationFault(data, 1); l != 0 {
			t.Errorf("%s: a fault reported at %d:%d in a valid spec", f, l, c)
		}
	}
}

func TestIndentationFault(t *testing.T) {
	for _, tc := range []struct {
		doc       string
		line, col int
	}{
		{"a:\n  b: 1\n c: 2\n", 3, 2},                         // dedent to no level
		{"a:\n  b: 1\n    c: 2\n", 3, 5},                      // deeper under a value
		{"a:\n  b: 1\n  - c\n", 3, 3},                         // an item among keys
		{"a:\n  - b: 1\n    c: 2\n  - d: 3\n   e: 4\n", 5, 4}, // item keys misaligned
		{"a: |\n  text\n     more text\nb: 1\n", 0, 0},        // block scalar
		{"a:\n- b\n- c\nd: [1, 2] # x: y\n", 0, 0},            // list at the key's indentation
		{"a:\n  b:\n    - c: 1\n      d: 2\n  e: 3\n", 0, 0},  // nested
	} {
		if l, c := indentationFault([]byte(tc.doc), 1); l != tc.line || c != tc.col {
			t.Errorf("%q: fault at %d:%d, want %d:%d", tc.doc, l, c, tc.line, tc.col)
		}
	}
}
