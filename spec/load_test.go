package spec

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/specs/invalid")

// specDir is where the spec fixtures live, relative to the repository root;
// tests run from there so that file names in messages are stable.
const specDir = "testdata/specs"

// loadOptionsFor reads a fixture's sidecar files: NAME.vars.yaml
// (--vars-file), NAME.inventory.yaml (--inventory) and NAME.args (one
// --var k=v per line).
func loadOptionsFor(t *testing.T, specPath string) LoadOptions {
	t.Helper()
	base := strings.TrimSuffix(specPath, ".yaml")
	var opts LoadOptions
	if _, err := os.Stat(base + ".vars.yaml"); err == nil {
		opts.VarsFile = base + ".vars.yaml"
	}
	if _, err := os.Stat(base + ".inventory.yaml"); err == nil {
		opts.Inventory = base + ".inventory.yaml"
	}
	if b, err := os.ReadFile(base + ".args"); err == nil {
		opts.Vars = map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			k, v, _ := strings.Cut(line, "=")
			opts.Vars[k] = v
		}
	}
	return opts
}

// specFixtures lists the specs of a folder, leaving out sidecar files.
func specFixtures(t *testing.T, dir string) []string {
	t.Helper()
	all, err := filepath.Glob(filepath.Join(specDir, dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range all {
		if strings.HasSuffix(p, ".vars.yaml") || strings.HasSuffix(p, ".inventory.yaml") {
			continue
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		t.Fatalf("no specs in %s/%s", specDir, dir)
	}
	return out
}

func TestInvalidSpecsGolden(t *testing.T) {
	t.Chdir("..")
	specs := specFixtures(t, "invalid")
	if len(specs) < 30 {
		t.Errorf("only %d invalid specs; keep at least 30", len(specs))
	}
	for _, path := range specs {
		name := strings.TrimSuffix(filepath.Base(path), ".yaml")
		t.Run(name, func(t *testing.T) {
			got, err := LoadFile(path, loadOptionsFor(t, path))
			if err == nil {
				t.Fatalf("loaded %d spec(s) from %s; want errors", len(got), path)
			}
			var se *Errors
			if !errors.As(err, &se) {
				t.Fatalf("error is %T, want Errors: %v", err, err)
			}
			for _, e := range se.Errors {
				if e.Line == 0 && e.File != "--var" && !strings.HasPrefix(e.Msg, "cannot read") && !strings.HasPrefix(e.Msg, "invalid YAML") {
					t.Errorf("error without a position: %s", e)
				}
			}
			out := err.Error() + "\n"
			golden := strings.TrimSuffix(path, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./spec -run TestInvalidSpecsGolden -update)", err)
			}
			if out != string(want) {
				t.Errorf("errors for %s differ from %s\n--- got\n%s--- want\n%s", path, golden, out, want)
			}
		})
	}
}
