// Package schemas holds the JSON Schema of the pgshift spec, embedded in the
// binary so that validation needs no file at run time.
package schemas

import (
	"bytes"
	_ "embed"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v5"
)

// UpgradeV1 is the JSON Schema (draft 2020-12) of spec version 1.
//
//go:embed upgrade.v1.schema.json
var UpgradeV1 []byte

// UpgradeV1URL is the schema's $id; compiled schemas and errors refer to it.
const UpgradeV1URL = "https://pgshift.dev/schemas/upgrade.v1.schema.json"

var (
	compileOnce sync.Once
	compiled    *jsonschema.Schema
	compileErr  error
)

// CompiledUpgradeV1 is UpgradeV1 compiled (once) for validation.
func CompiledUpgradeV1() (*jsonschema.Schema, error) {
	compileOnce.Do(func() {
		c := jsonschema.NewCompiler()
		c.Draft = jsonschema.Draft2020
		if err := c.AddResource(UpgradeV1URL, bytes.NewReader(UpgradeV1)); err != nil {
			compileErr = err
			return
		}
		compiled, compileErr = c.Compile(UpgradeV1URL)
	})
	return compiled, compileErr
}
