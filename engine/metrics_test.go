package engine

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

func TestMetricsDuringApply(t *testing.T) {
	r := &recorder{failApply: map[string]bool{"b": true}}
	g := mustCompile(t, r.step("a"), r.step("b", "a"), r.step("c"))
	spec := testSpec()
	env := NewEnv(spec, nil)
	store := openStore(t, filepath.Join(t.TempDir(), "s.json"), spec, g)
	if _, err := Apply(context.Background(), g, env, store, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}

	// Serve on a free port and scrape like Prometheus would.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	stop, err := env.Metrics.Serve(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for _, want := range []string{
		`pgshift_step_status{status="done",step="a"} 1`,
		`pgshift_step_status{status="running",step="a"} 0`,
		`pgshift_step_status{status="failed",step="b"} 1`,
		`pgshift_step_runs_total{operation="apply",result="error",step="b"} 1`,
		`pgshift_step_duration_seconds{operation="apply",step="c"}`,
		"pgshift_apply_steps 3",
		"pgshift_apply_steps_done 2",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(text)
	}

	// A taken address fails at once, naming the fix.
	if _, err := NewMetrics().Serve(context.Background(), addr); err == nil || !strings.Contains(err.Error(), "--metrics-listen") {
		t.Fatalf("taken address: %v", err)
	}
	var m *Metrics
	m.SetStepStatus("a", StatusDone) // nil-safe
	m.StepFinished("a", "apply", 0, errors.New("x"))
}
