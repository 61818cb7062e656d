package layout

import (
	"go/build"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/pgshift/pgshift/"

// allowed lists, for the packages whose place in the layout matters, every
// package of pgshift they may import (non-test files). docs/architecture.md,
// "Import direction", draws the same.
var allowed = map[string][]string{
	"engine":              {"spec", "plans", "internal/pg", "internal/atomicfile"},
	"spec":                {"schemas"},
	"plans":               {"internal/words"},
	"schemas":             {},
	"internal/pg":         {},
	"internal/words":      {},
	"internal/atomicfile": {},
	"internal/pgtest":     {},
}

// The engine knows steps only through its interface; only spec reads YAML.
func TestImportDirection(t *testing.T) {
	root := filepath.Join("..", "..")
	imports := map[string][]string{}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
			return filepath.SkipDir
		}
		pkg, err := build.ImportDir(path, 0)
		if err != nil {
			return nil // no Go files here
		}
		rel, _ := filepath.Rel(root, path)
		imports[filepath.ToSlash(rel)] = pkg.Imports
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for pkg := range allowed {
		if _, ok := imports[pkg]; !ok {
			t.Errorf("package %s is gone: update the layout test and docs/architecture.md", pkg)
		}
	}
	for pkg, imps := range imports {
		for _, imp := range imps {
			if imp == "gopkg.in/yaml.v3" && pkg != "spec" {
				t.Errorf("%s imports gopkg.in/yaml.v3: only spec reads YAML (add a decoder there, as spec.DecodeQueries)", pkg)
			}
			own, ok := strings.CutPrefix(imp, module)
			if !ok {
				continue
			}
			if list, ruled := allowed[pkg]; ruled && !slices.Contains(list, own) {
				t.Errorf("%s imports %s: the layout allows it only %v (docs/architecture.md, Import direction)", pkg, own, list)
			}
		}
	}
}
