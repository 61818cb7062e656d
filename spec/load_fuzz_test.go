package spec

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to the loader: it never panics, and returns
// either specs or errors that each carry a file position; a spec it accepts
// renders to YAML that loads again to the same spec.
func FuzzLoad(f *testing.F) {
	for _, dir := range []string{"valid", "invalid"} {
		paths, _ := filepath.Glob(filepath.Join("..", specDir, dir, "*.yaml"))
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		specs, err := LoadBytes("fuzz.yaml", data, LoadOptions{})
		if err != nil {
			var se *Errors
			if !errors.As(err, &se) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			if len(se.Errors) == 0 {
				t.Fatal("empty Errors")
			}
			for _, e := range se.Errors {
				if e.File != "fuzz.yaml" || e.Line <= 0 || e.Col <= 0 || e.Msg == "" {
					t.Fatalf("error without a position: %q (line %d col %d)", e.Error(), e.Line, e.Col)
				}
			}
			return
		}
		if len(specs) != 1 || specs[0].Name == "" {
			t.Fatalf("got %d specs, first %+v", len(specs), specs)
		}
		out, err := RenderYAML(specs[0])
		if err != nil {
			t.Fatalf("render: %v", err)
		}
		again, err := LoadBytes("fuzz.yaml", out, LoadOptions{})
		if err != nil {
			t.Fatalf("rendered spec does not load: %v\n%s", err, out)
		}
		if again[0].Hash() != specs[0].Hash() {
			t.Fatalf("rendered spec loads differently:\n%s", out)
		}
	})
}
