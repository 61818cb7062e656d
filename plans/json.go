package plans

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
)

// JSON writes the plan in the versioned JSON format (docs/plan-format.md):
// two-space indent, fields in a fixed order, a trailing newline. The same
// plan gives the same bytes.
func (p *Plan) JSON(w io.Writer) error {
	p.Summarize()
	c := *p
	c.FormatVersion = FormatVersion
	for i := range c.Steps {
		if c.Steps[i].Needs == nil {
			c.Steps[i].Needs = []string{}
		}
	}
	if c.Steps == nil {
		c.Steps = []Step{}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(&c); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// Save writes the plan to path (mode 0600) for a later `pgshift apply PATH`.
func (p *Plan) Save(path string) error {
	var buf bytes.Buffer
	if err := p.JSON(&buf); err != nil {
		return err
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("save plan: %w", err)
	}
	return nil
}

// Load reads a plan saved by Save, refusing other formats and versions.
func Load(path string) (*Plan, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read plan: %w", err)
	}
	var p Plan
	// Unknown fields are accepted: newer versions add fields without a bump.
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("plan file %s: not a pgshift plan: %v", path, err)
	}
	if p.FormatVersion != FormatVersion {
		return nil, fmt.Errorf("plan file %s: format_version %d, this pgshift reads version %d: run plan again with this version", path, p.FormatVersion, FormatVersion)
	}
	return &p, nil
}
