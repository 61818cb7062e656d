package spec

import (
	"bytes"

	"gopkg.in/yaml.v3"
)

// RenderYAML writes the spec as YAML with every field, in the order of the
// contract, without the variable declarations: the output is a valid spec
// that needs no variables.
func RenderYAML(s *Spec) ([]byte, error) {
	c := *s
	c.Vars = nil
	var doc yaml.Node
	if err := doc.Encode(&c); err != nil {
		return nil, err
	}
	// Subscription options are held as strings; write booleans as
	// booleans so that the output validates again.
	if _, opts := nodeAt(&doc, "replication", "options"); opts != nil && opts.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(opts.Content); i += 2 {
			retype(opts.Content[i+1], []string{"replication", "options", opts.Content[i].Value})
		}
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
