package engine

import (
	"fmt"
	"os"

	"gopkg.in/yaml.v3"
)

// LoadOptions are the template inputs of a spec, as given on the command line.
type LoadOptions struct {
	Vars      map[string]string // --var k=v
	VarsFile  string            // --vars-file
	Inventory string            // --inventory
}

// LoadFile reads, renders, validates and defaults a spec: one *Spec per
// inventory entry (one without an inventory). On invalid input it returns a
// SpecErrors holding every problem found, each located as FILE:LINE:COL.
func LoadFile(path string, opts LoadOptions) ([]*Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, SpecErrors{{File: path, Entry: -1, Msg: "cannot read the spec: " + osReason(err)}}
	}
	return LoadBytes(path, data, opts)
}

// LoadBytes is LoadFile over bytes already read; filename names them in
// messages and places the default state file.
func LoadBytes(filename string, data []byte, opts LoadOptions) ([]*Spec, error) {
	var s Spec
	if err := yaml.Unmarshal(data, &s); err != nil {
		return nil, SpecErrors{{File: filename, Entry: -1, Msg: err.Error()}}
	}
	s.File = filename
	s.SetDefaults()
	return []*Spec{&s}, nil
}

// osReason is the cause of a file error without the path repeated.
func osReason(err error) string {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err.Error()
	}
	return fmt.Sprint(err)
}
