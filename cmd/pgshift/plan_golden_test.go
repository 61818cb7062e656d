package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestOfflinePlanGolden plans the specs of testdata offline with the real
// steps, in every format, against golden files (go test -update rewrites
// them). Offline plans connect nowhere, so this needs no server.
func TestOfflinePlanGolden(t *testing.T) {
	for _, name := range []string{"minimal", "full"} {
		spec := filepath.Join("..", "..", "testdata", "specs", "valid", name+".yaml")
		for _, f := range []struct{ format, ext string }{{"text", "txt"}, {"markdown", "md"}, {"json", "json"}} {
			t.Run(name+"."+f.ext, func(t *testing.T) {
				out, stderr, code := runCLI(t, "", "plan", "--offline", "-f", spec, "--format", f.format, "--detailed-exitcode")
				if code != exitChanges {
					t.Fatalf("exit %d, want 2 (an offline plan counts as changes): %s", code, stderr)
				}
				again, _, _ := runCLI(t, "", "plan", "--offline", "-f", spec, "--format", f.format)
				if again != out {
					t.Fatal("two offline plans of the same spec differ")
				}
				path := filepath.Join("..", "..", "testdata", "plans", name+"-offline."+f.ext)
				if updateGolden() {
					if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (go test ./cmd/pgshift -run TestOfflinePlanGolden -update creates it)", err)
				}
				if !bytes.Equal([]byte(out), want) {
					t.Errorf("plan differs from %s (rerun with -update if intended):\n--- got\n%s\n--- want\n%s", path, out, want)
				}
			})
		}
	}
}
