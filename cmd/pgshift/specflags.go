package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/pgshift/pgshift/spec"
	"github.com/spf13/cobra"
)

// specFlags are the flags of every command that reads a spec:
// -f/--file, --var k=v (repeatable), --vars-file and --inventory.
type specFlags struct {
	file      string
	vars      []string
	varsFile  string
	inventory string

	cmd *cobra.Command // where spec errors are printed
}

// register adds the spec flags to a command.
func (f *specFlags) register(cmd *cobra.Command) {
	f.cmd = cmd
	fl := cmd.Flags()
	fl.StringVarP(&f.file, "file", "f", "", "the upgrade spec (YAML)")
	fl.StringArrayVar(&f.vars, "var", nil, "set a template variable declared under vars: (k=v, repeatable)")
	fl.StringVar(&f.varsFile, "vars-file", "", "YAML file of template variables (a map of name: value)")
	fl.StringVar(&f.inventory, "inventory", "", "YAML list of variable maps: render one spec per entry")
}

// registerOne adds the spec flags to a command that acts on one database:
// --inventory stays parsed (loadOne refuses it with the way out) but is left
// out of the help, which lists only what the command accepts.
func (f *specFlags) registerOne(cmd *cobra.Command) {
	f.register(cmd)
	_ = cmd.Flags().MarkHidden("inventory")
}

// options turns the flags into load options; a malformed flag is a usage error.
func (f *specFlags) options() (spec.LoadOptions, error) {
	if f.file == "" {
		return spec.LoadOptions{}, &usageError{errors.New("no spec given: use -f spec.yaml")}
	}
	opts := spec.LoadOptions{VarsFile: f.varsFile, Inventory: f.inventory}
	for _, kv := range f.vars {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return opts, &usageError{fmt.Errorf("--var %q: want name=value", kv)}
		}
		if opts.Vars == nil {
			opts.Vars = map[string]string{}
		}
		opts.Vars[k] = v
	}
	return opts, nil
}

// load reads, renders and validates the spec: one per inventory entry. On
// invalid input it prints every problem, one per line, to the command's
// stderr and returns an error that exits 1 without printing more.
func (f *specFlags) load() ([]*spec.Spec, error) {
	opts, err := f.options()
	if err != nil {
		return nil, err
	}
	specs, err := spec.LoadFile(f.file, opts)
	if err != nil {
		var se *spec.Errors
		if errors.As(err, &se) {
			w := io.Writer(os.Stderr)
			if f.cmd != nil {
				w = f.cmd.ErrOrStderr()
			}
			for _, line := range se.Lines() {
				fmt.Fprintln(w, line)
			}
			return nil, &exitCodeError{code: exitError}
		}
		return nil, &exitCodeError{code: exitError, err: err}
	}
	return specs, nil
}

// loadOne is load for commands that act on one database: an inventory is a
// usage error there.
func (f *specFlags) loadOne() (*spec.Spec, error) {
	if f.inventory != "" {
		return nil, &usageError{errors.New("--inventory renders one spec per database, and this command acts on one: pass that entry's variables with --var or --vars-file")}
	}
	specs, err := f.load()
	if err != nil {
		return nil, err
	}
	if len(specs) != 1 {
		return nil, &usageError{fmt.Errorf("%s rendered %d specs; this command acts on one", f.file, len(specs))}
	}
	return specs[0], nil
}

// forEntry is the flags that name spec alone: with --inventory, the file
// and the entry's variables as --var (the commands that change a database
// refuse an inventory); otherwise the flags as given.
func (f *specFlags) forEntry(spec *spec.Spec) specFlags {
	if f.inventory == "" {
		return *f
	}
	one := specFlags{file: f.file, cmd: f.cmd}
	for _, k := range slices.Sorted(maps.Keys(spec.VarValues)) {
		one.vars = append(one.vars, k+"="+spec.VarValues[k])
	}
	return one
}

// specNoArgs refuses positional arguments as a usage error (exit 2): the
// spec is given with -f.
func specNoArgs(_ *cobra.Command, args []string) error {
	if len(args) > 0 {
		return &usageError{fmt.Errorf("unexpected argument %q: give the spec with -f", args[0])}
	}
	return nil
}
