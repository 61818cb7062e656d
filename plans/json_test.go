package plans

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadDamagedPlans: a saved plan cut short, emptied, replaced by
// something else or from a future version is refused naming the file,
// never a panic.
func TestLoadDamagedPlans(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	p := &Plan{FormatVersion: FormatVersion, Name: "orders", Fingerprint: "abc", SpecHash: "def",
		Steps: []Step{{ID: "source.slot", Needs: []string{}, Change: Change{Action: ActionCreate, Summary: "slot"}}}}
	if err := p.Save(good); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	if back, err := Load(good); err != nil || back.Fingerprint != "abc" || len(back.Steps) != 1 {
		t.Fatalf("a saved plan does not load back: %+v, %v", back, err)
	}
	for name, content := range map[string]string{
		"truncated": string(data[:len(data)/2]),
		"empty":     "",
		"a list":    "[]",
		"future":    `{"format_version": 99, "name": "orders"}`,
		"no format": `{"name": "orders"}`,
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".json")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path)
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s plan: %v, want an error naming %s", name, err, path)
		}
	}
}
