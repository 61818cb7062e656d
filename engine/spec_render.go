package engine

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
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&c); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
