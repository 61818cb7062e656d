package main

import (
	"io"
	"os"
	"strings"
	"testing"

	"github.com/pgshift/pgshift/spec"
)

// runSpecCommand runs the CLI in-process through run, as main does,
// capturing what it prints.
func runSpecCommand(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	outR, outW, _ := os.Pipe()
	errR, errW, _ := os.Pipe()
	oldOut, oldErr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = outW, errW
	outC, errC := make(chan string), make(chan string)
	go func() { b, _ := io.ReadAll(outR); outC <- string(b) }()
	go func() { b, _ := io.ReadAll(errR); errC <- string(b) }()
	code = run(args)
	os.Stdout, os.Stderr = oldOut, oldErr
	outW.Close()
	errW.Close()
	return code, <-outC, <-errC
}

const specs = "../../testdata/specs/"

func TestValidateExitCodes(t *testing.T) {
	cases := []struct {
		name   string
		args   []string
		code   int
		stdout string   // substring
		stderr []string // each a substring
	}{
		{"valid", []string{"validate", "-f", specs + "valid/minimal.yaml"}, 0, "minimal.yaml: valid: orders-pg17", nil},
		{"valid with vars file", []string{"validate", "-f", specs + "valid/templated.yaml", "--vars-file", specs + "valid/templated.vars.yaml"}, 0, "valid: invoices-pg17", nil},
		{"valid inventory", []string{"validate", "-f", specs + "valid/fleet.yaml", "--inventory", specs + "valid/fleet.inventory.yaml"}, 0, "3 specs", nil},
		{"invalid prints every error", []string{"validate", "-f", specs + "invalid/many-problems.yaml"}, 1, "", []string{
			"many-problems.yaml:2:7: name:", "many-problems.yaml:5:3: source.pasword_env: unknown key (did you mean password_env?)",
			"many-problems.yaml:11:18: cutover.pause_timeout: \"5 min\" is not a duration (try 5m)"}},
		{"required var missing", []string{"validate", "-f", specs + "valid/templated.yaml"}, 1, "", []string{"vars.db: no value given"}},
		{"undeclared --var", []string{"validate", "-f", specs + "valid/minimal.yaml", "--var", "db=orders"}, 1, "", []string{"--var: db: variable is not declared"}},
		{"missing file", []string{"validate", "-f", specs + "valid/nope.yaml"}, 1, "", []string{"nope.yaml: cannot read the spec"}},
		{"no -f", []string{"validate"}, 2, "", []string{"no spec given"}},
		{"bad --var", []string{"validate", "-f", specs + "valid/minimal.yaml", "--var", "novalue"}, 2, "", []string{"want name=value"}},
		{"unknown flag", []string{"validate", "--nope"}, 2, "", []string{"unknown flag"}},
		{"extra argument", []string{"validate", "-f", specs + "valid/minimal.yaml", "extra"}, 2, "", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runSpecCommand(t, c.args...)
			if code != c.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, c.code, out, errOut)
			}
			if !strings.Contains(out, c.stdout) {
				t.Errorf("stdout %q lacks %q", out, c.stdout)
			}
			for _, s := range c.stderr {
				if !strings.Contains(errOut, s) {
					t.Errorf("stderr lacks %q:\n%s", s, errOut)
				}
			}
			if c.code == 1 && strings.Contains(errOut, "Error:") {
				t.Errorf("spec errors must print as FILE:LINE:COL lines only:\n%s", errOut)
			}
		})
	}
}

// render prints every default, and with an inventory one document per entry.
func TestRenderPrintsDefaultsAndInventory(t *testing.T) {
	code, out, errOut := runSpecCommand(t, "render", "-f", specs+"valid/minimal.yaml")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"pause_timeout: 10s", "split_tables_larger_than: 1GiB", "mode: checksum", "publication: pgshift_orders_pg17", "reverse_replication: true", "include:\n    - '*.*'"} {
		if !strings.Contains(out, want) {
			t.Errorf("render output lacks %q:\n%s", want, out)
		}
	}
	back, err := spec.LoadBytes("rendered.yaml", []byte(out), spec.LoadOptions{})
	if err != nil {
		t.Fatalf("render output is not a valid spec: %v", err)
	}
	orig, _ := spec.LoadFile(specs+"valid/minimal.yaml", spec.LoadOptions{})
	if back[0].Hash() != orig[0].Hash() {
		t.Errorf("render output loads to a different spec")
	}

	code, out, errOut = runSpecCommand(t, "render", "-f", specs+"valid/fleet.yaml", "--inventory", specs+"valid/fleet.inventory.yaml")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if n := strings.Count(out, "\n---\n"); n != 2 {
		t.Errorf("%d document separators, want 2 (three documents):\n%s", n, out)
	}
	for _, name := range []string{"name: orders-pg17", "name: invoices-pg17", "name: customers-pg17"} {
		if !strings.Contains(out, name) {
			t.Errorf("render output lacks %q", name)
		}
	}
	if strings.Contains(out, "vars:") {
		t.Error("render output keeps the vars declarations")
	}
}

func TestLoadOneRefusesInventory(t *testing.T) {
	sf := &specFlags{file: specs + "valid/fleet.yaml", inventory: specs + "valid/fleet.inventory.yaml"}
	_, err := sf.loadOne()
	if _, ok := err.(*usageError); !ok {
		t.Fatalf("loadOne with an inventory: %v (%T), want a usage error", err, err)
	}
	sf = &specFlags{file: specs + "valid/fleet.yaml", vars: []string{"db=orders", "host=h"}}
	s, err := sf.loadOne()
	if err != nil || s.Name != "orders-pg17" {
		t.Fatalf("loadOne: %v, %v", s, err)
	}
}
