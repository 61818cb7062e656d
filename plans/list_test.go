package plans

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// A finding's object list is complete in JSON and folded in text and
// markdown after ListFold names.
func TestObjectListFoldsInTextOnly(t *testing.T) {
	var names []string
	for i := 1; i <= 25; i++ {
		names = append(names, fmt.Sprintf("public.t%02d", i))
	}
	p := &Plan{Name: "fold", Steps: []Step{{ID: "preflight.source", Change: Change{Action: ActionBlocker,
		Blockers: []string{"25 tables have no primary key or replica identity: ALTER TABLE ... REPLICA IDENTITY FULL;" + ObjectList(names)}}}}}

	var js bytes.Buffer
	if err := p.JSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Plan
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if !strings.Contains(back.Steps[0].Blockers[0], "- "+n) {
			t.Errorf("JSON blocker lacks %s: %q", n, back.Steps[0].Blockers[0])
		}
	}
	if strings.Contains(js.String(), "more") {
		t.Errorf("JSON folds the list: %s", js.String())
	}

	for name, render := range map[string]func(*bytes.Buffer) error{
		"text":     func(b *bytes.Buffer) error { return p.Text(b, TextOptions{}) },
		"markdown": func(b *bytes.Buffer) error { return p.Markdown(b) },
	} {
		var b bytes.Buffer
		if err := render(&b); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		if !strings.Contains(out, "- public.t10\n") || strings.Contains(out, "public.t11") || !strings.Contains(out, "- and 15 more\n") {
			t.Errorf("%s: want t01..t10 then '- and 15 more':\n%s", name, out)
		}
	}
}

func TestObjectListShortIsWhole(t *testing.T) {
	got := FoldLists("2 tables:" + ObjectList([]string{"a", "b"}) + "\nfix: x")
	if got != "2 tables:\n- a\n- b\nfix: x" {
		t.Errorf("got %q", got)
	}
	names := make([]string, ListFold+1)
	for i := range names {
		names[i] = fmt.Sprint(i)
	}
	if got := FoldLists("x:" + ObjectList(names)); !strings.HasSuffix(got, "\n- 9\n- and 1 more") {
		t.Errorf("one over: %q", got)
	}
}
