package engine

import (
	"bytes"
	"strings"
	"testing"
)

func TestTerminalProgressDrawsDetailAndFinishes(t *testing.T) {
	var out bytes.Buffer
	bar := TerminalProgress{W: &out}.Start("copy", 4<<20, true)
	bar.Set(1<<20, "1/4 parts, 10 rows")
	bar.Set(5<<20, "4/4 parts, 40 rows") // more than the estimate: the bar grows, never overflows
	bar.Finish()
	got := out.String()
	for _, want := range []string{"copy (4/4 parts, 40 rows)", "100%", "MiB"} {
		if !strings.Contains(got, want) {
			t.Errorf("progress output lacks %q:\n%q", want, got)
		}
	}
	if !strings.HasSuffix(got, "\n") {
		t.Errorf("a finished bar must end its line: %q", got)
	}
}

func TestStartProgressWithoutTerminalDrawsNothing(t *testing.T) {
	var env *Env
	env.StartProgress("copy", 10, false).Set(5, "x") // nil env: no panic
	e := &Env{}
	bar := e.StartProgress("copy", 10, false)
	bar.Set(5, "half")
	bar.Finish()
	if _, ok := bar.(noBar); !ok {
		t.Fatalf("an Env without Progress got %T, want the silent bar", bar)
	}
}
