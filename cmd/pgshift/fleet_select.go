package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/plans"
	"github.com/pgshift/pgshift/spec"
	"github.com/spf13/cobra"
)

// envJobIndex is the variable a Kubernetes Indexed Job sets in each pod:
// the pod's completion index, 0-based. With --inventory and neither
// --index nor --only, it picks the pod's database.
const envJobIndex = "JOB_COMPLETION_INDEX"

// selectEntries picks the databases of a fleet run from the inventory's
// specs (in inventory order): --index N the N-th (0-based), or else
// JOB_COMPLETION_INDEX when set; --only NAME the entries rendering those
// names; nothing given: all. getenv is os.Getenv outside tests.
func selectEntries(specs []*spec.Spec, f *fleetFlags, getenv func(string) string) ([]*spec.Spec, error) {
	index, from := f.index, "--index"
	if !f.indexGiven {
		index, from = -1, ""
		if v := strings.TrimSpace(getenv(envJobIndex)); v != "" && len(f.only) == 0 {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return nil, &usageError{fmt.Errorf("%s=%q: want the completion index of an Indexed Job, a number from 0; unset it to run the whole inventory", envJobIndex, v)}
			}
			index, from = n, envJobIndex
		}
	}
	if f.indexGiven && len(f.only) > 0 {
		return nil, &usageError{fmt.Errorf("--index and --only both pick databases: give one of them")}
	}
	if index >= 0 {
		if index >= len(specs) {
			return nil, &usageError{fmt.Errorf("%s %d: the inventory has %d entries (indexes 0 to %d); with an Indexed Job, set completions to %d",
				from, index, len(specs), len(specs)-1, len(specs))}
		}
		return specs[index : index+1], nil
	}
	if len(f.only) == 0 {
		return specs, nil
	}
	byName := map[string]*spec.Spec{}
	var names []string
	for _, s := range specs {
		byName[s.Name] = s
		names = append(names, s.Name)
	}
	want := map[string]bool{}
	for _, n := range f.only {
		if byName[n] == nil {
			return nil, &usageError{fmt.Errorf("--only %s: no inventory entry renders that name; the names are %s", n, strings.Join(names, ", "))}
		}
		want[n] = true
	}
	var out []*spec.Spec
	for _, s := range specs {
		if want[s.Name] {
			out = append(out, s)
		}
	}
	return out, nil
}

// fleetStatePath is where one database of a fleet keeps its state:
// <name>.pgshift-state.json in --state-dir, the row keyed by its name when
// --state-dir is a postgres:// state location, or the spec's default.
func fleetStatePath(dir string, sp *spec.Spec) string {
	switch {
	case dir == "":
		return statePathOf("", sp)
	case engine.IsPostgresState(dir):
		return engine.WithStateName(dir, sp.Name)
	}
	return filepath.Join(dir, sp.Name+".pgshift-state.json")
}

// registerSelect adds --only and --index alone (plan takes them, not the
// run flags).
func (f *fleetFlags) registerSelect(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringArrayVar(&f.only, flagOnly, nil, "with --inventory: only the entry rendering this spec name (repeatable)")
	fl.IntVar(&f.index, flagIndex, -1, "with --inventory: only entry N, 0-based in inventory order (default: $"+envJobIndex+" when set, as in a Kubernetes Indexed Job)")
}

// selectForPlan applies --only and --index to the specs plan renders;
// without --inventory they are a usage error.
func selectForPlan(cmd *cobra.Command, sf *specFlags, f *fleetFlags, specs []*spec.Spec) ([]*spec.Spec, error) {
	if sf.inventory == "" {
		for _, name := range []string{flagOnly, flagIndex} {
			if fl := cmd.Flags().Lookup(name); fl != nil && fl.Changed {
				return nil, &usageError{fmt.Errorf("--%s %v: pass --inventory with it", name, errFleetUsage)}
			}
		}
		return specs, nil
	}
	f.indexGiven = cmd.Flags().Changed(flagIndex)
	return selectEntries(specs, f, os.Getenv)
}

// renderFleetPlan writes the plans of several databases as one markdown
// comment (plans.FleetMarkdown).
func renderFleetPlan(w io.Writer, ps []*plans.Plan, a *planArgs) error {
	extra := []string{"--format", "markdown"}
	if a.offline {
		extra = append([]string{"--offline"}, extra...)
	}
	extra = append(extra, "--only", "NAME")
	return plans.FleetMarkdown(w, ps, plans.FleetMarkdownOptions{Inventory: a.spec.inventory, OneCommand: commandLine("plan", &a.spec, extra...)})
}
