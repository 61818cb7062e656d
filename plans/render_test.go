package plans

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/plans")

func samplePlan() *Plan {
	return &Plan{
		Name:  "orders-pg17",
		Blue:  Server{Address: "postgres://replicator@blue.internal:5432/orders", Version: "13.23"},
		Green: Server{Address: "postgres://postgres@green.internal:5432/orders", Version: "17.10"},
		Steps: []Step{
			{ID: "preflight.source", Change: Change{Action: ActionNone, Summary: "wal_level=logical, 2 of 10 slots free, 42 tables with replica identity"}},
			{ID: "preflight.target", Change: Change{Action: ActionNone, Summary: "PostgreSQL 17.10, empty database, extensions available"}},
			{ID: "audit", Needs: []string{"preflight.source", "preflight.target"}, Change: Change{Action: ActionWarning,
				Summary:  "1 finding",
				Warnings: []string{"table public.events has no primary key: set REPLICA IDENTITY FULL or add a key"}}},
			{ID: "target.schema", Needs: []string{"audit"}, Change: Change{Action: ActionCreate,
				Summary: "restore 42 tables, 17 sequences, 3 functions, 2 extensions",
				Details: []string{"pg_dump --schema-only --section=pre-data | psql (green)"}}},
			{ID: "source.publication", Needs: []string{"audit"}, Change: Change{Action: ActionCreate,
				Summary: "CREATE PUBLICATION pgshift_orders_pg17 FOR TABLE ... (42 tables)",
				Details: []string{"CREATE PUBLICATION \"pgshift_orders_pg17\"\n  FOR TABLE \"public\".\"orders\", \"public\".\"events\""}}},
			{ID: "source.slot", Needs: []string{"source.publication"}, Change: Change{Action: ActionChange,
				Summary: "slot pgshift_orders_pg17: plugin test_decoding -> pgoutput",
				Details: []string{"plugin: test_decoding -> pgoutput"}}},
			{ID: "legacy.trigger", Change: Change{Action: ActionDestroy, Summary: "DROP TRIGGER audit_log ON public.orders (green)"}},
			{ID: "target.subscription", Needs: []string{"source.slot", "target.schema"}, Change: Change{Action: ActionBlocker,
				Summary:  "cannot create the subscription",
				Blockers: []string{"green's max_logical_replication_workers is 0: set it to at least 4 and restart green"}},
				Preconditions: []Precondition{{Name: "wal_level", OK: true}, {Name: "green reaches blue", OK: false, Detail: "connection refused from green to blue:5432: allow it in pg_hba.conf"}}},
			{ID: "verify", Needs: []string{"target.subscription"}, Change: Change{Action: ActionUninspected, Summary: "not inspected: needs the subscription"}},
		},
		SpecHash:    "4c1d0a0c9e5b0f1b6f1e0d7f3f7a7e2e0c3b8a1d2e4f6a8b0c2d4e6f8a0b2c4d",
		Fingerprint: "sha256:9f2b8e6c4a2d0f8e6c4a2b0d8f6e4c2a0b8d6f4e2c0a8b6d4f2e0c8a6b4d2f0e",
	}
}

func noChangesPlan() *Plan {
	return &Plan{
		Name:  "orders-pg17",
		Blue:  Server{Address: "postgres://replicator@blue.internal:5432/orders", Version: "13.23"},
		Green: Server{Address: "postgres://postgres@green.internal:5432/orders", Version: "17.10"},
		Steps: []Step{
			{ID: "preflight.source", Change: Change{Action: ActionNone, Summary: "wal_level=logical"}},
			{ID: "source.publication", Change: Change{Action: ActionNone, Summary: "publication pgshift_orders_pg17 holds the 42 tables"}},
		},
	}
}

func offlinePlan() *Plan {
	return &Plan{
		Name:    "orders-pg17",
		Blue:    Server{Address: "postgres://replicator@blue.internal:5432/orders"},
		Green:   Server{Address: "postgres://postgres@green.internal:5432/orders"},
		Offline: true,
		Steps: []Step{
			{ID: "preflight.source", Change: Change{Action: ActionUninspected, Summary: "not inspected (offline)"}},
			{ID: "source.publication", Needs: []string{"preflight.source"}, Change: Change{Action: ActionUninspected,
				Summary: "create publication pgshift_orders_pg17", Details: []string{"CREATE PUBLICATION \"pgshift_orders_pg17\" FOR TABLE ..."}}},
		},
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("..", "testdata", "plans", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./plans -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run go test ./plans -update if the change is intended):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func render(t *testing.T, p *Plan, format string) []byte {
	t.Helper()
	var buf bytes.Buffer
	var err error
	switch format {
	case "txt":
		err = p.Text(&buf, TextOptions{})
	case "color.txt":
		err = p.Text(&buf, TextOptions{Color: true})
	case "md":
		err = p.Markdown(&buf)
	case "json":
		err = p.JSON(&buf)
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRenderGolden(t *testing.T) {
	cases := map[string]func() *Plan{"sample": samplePlan, "no-changes": noChangesPlan, "offline": offlinePlan,
		"no-steps": func() *Plan {
			return &Plan{Name: "empty", Blue: Server{Version: "15.10"}, Green: Server{Version: "17.10"}}
		}}
	for name, mk := range cases {
		for _, format := range []string{"txt", "color.txt", "md", "json"} {
			t.Run(name+"."+format, func(t *testing.T) {
				first := render(t, mk(), format)
				// Deterministic: a second render of an equal plan gives the same bytes.
				if again := render(t, mk(), format); !bytes.Equal(first, again) {
					t.Fatal("two renders of the same plan differ")
				}
				golden(t, name+"."+format, first)
			})
		}
	}
}

func TestSummaryLine(t *testing.T) {
	p := samplePlan()
	want := "Plan: 2 to create, 1 to change, 1 to destroy. 1 warning, 2 blockers. 1 not inspected."
	if got := p.SummaryLine(); got != want {
		t.Fatalf("summary %q, want %q", got, want)
	}
	if got := noChangesPlan().SummaryLine(); got != "No changes. blue and green already match the spec." {
		t.Fatalf("empty plan: %q", got)
	}
	if !p.Summary.HasChanges() || noChangesPlan().Summarize().HasChanges() {
		t.Fatal("HasChanges")
	}
}

func TestTextColourOnlyWhenAsked(t *testing.T) {
	if bytes.Contains(render(t, samplePlan(), "txt"), []byte("\x1b[")) {
		t.Fatal("plain text holds ANSI escapes")
	}
	if !bytes.Contains(render(t, samplePlan(), "color.txt"), []byte("\x1b[32m+\x1b[0m")) {
		t.Fatal("colour text lacks a green +")
	}
}

func TestMarkdownMarkerAndFence(t *testing.T) {
	p := samplePlan()
	p.Steps[0].Details = []string{"a detail with ``` inside"}
	md := string(render(t, p, "md"))
	if !strings.HasPrefix(md, "<!-- pgshift:plan name=orders-pg17 -->\n") {
		t.Fatalf("markdown does not open with the marker:\n%s", md)
	}
	if !strings.Contains(md, "````diff\n") {
		t.Fatalf("a detail holding ``` must get a longer fence:\n%s", md)
	}
}

func TestJSONRoundTripAndSave(t *testing.T) {
	p := samplePlan()
	var doc map[string]any
	if err := json.Unmarshal(render(t, p, "json"), &doc); err != nil {
		t.Fatal(err)
	}
	if doc["format_version"] != float64(1) {
		t.Fatalf("format_version %v", doc["format_version"])
	}
	path := filepath.Join(t.TempDir(), "plan.json")
	if err := p.Save(path); err != nil {
		t.Fatal(err)
	}
	back, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if back.Fingerprint != p.Fingerprint || len(back.Steps) != len(p.Steps) || back.Steps[7].Preconditions[1].OK {
		t.Fatalf("round trip lost data: %+v", back)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("saved plan mode %v", fi.Mode().Perm())
	}
	os.WriteFile(path, []byte(`{"format_version": 7}`), 0o600)
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "format_version 7") {
		t.Fatalf("future format: %v", err)
	}
}
