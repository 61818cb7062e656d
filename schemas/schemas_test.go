package schemas

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestUpgradeV1Compiles(t *testing.T) {
	s, err := CompiledUpgradeV1()
	if err != nil {
		t.Fatal(err)
	}
	if s == nil {
		t.Fatal("nil schema")
	}
	var m map[string]any
	if err := json.Unmarshal(UpgradeV1, &m); err != nil {
		t.Fatal(err)
	}
	if m["$schema"] != "https://json-schema.org/draft/2020-12/schema" || m["$id"] != UpgradeV1URL {
		t.Errorf("$schema %v, $id %v", m["$schema"], m["$id"])
	}
}

// Every mapping refuses unknown keys, and every field says what it is: a
// type (or a $ref to a definition that has one) and a description.
func TestEveryFieldTypedAndClosed(t *testing.T) {
	var m map[string]any
	if err := json.Unmarshal(UpgradeV1, &m); err != nil {
		t.Fatal(err)
	}
	defs := m["$defs"].(map[string]any)
	var walk func(s map[string]any, path string, isField bool)
	walk = func(s map[string]any, path string, isField bool) {
		if ref, ok := s["$ref"].(string); ok {
			target := defs[strings.TrimPrefix(ref, "#/$defs/")]
			if target == nil {
				t.Errorf("%s: $ref %s resolves to nothing", path, ref)
				return
			}
			if isField && s["description"] == nil {
				t.Errorf("%s: no description", path)
			}
			walk(target.(map[string]any), path, false)
			return
		}
		if s["type"] == nil {
			t.Errorf("%s: no type", path)
		}
		if isField && s["description"] == nil {
			t.Errorf("%s: no description", path)
		}
		if props, ok := s["properties"].(map[string]any); ok {
			if s["additionalProperties"] != false {
				t.Errorf("%s: additionalProperties is not false", path)
			}
			for name, p := range props {
				walk(p.(map[string]any), path+"."+name, true)
			}
		} else if s["type"] == "object" {
			ap, ok := s["additionalProperties"].(map[string]any)
			if !ok {
				t.Errorf("%s: a mapping without properties must constrain its values", path)
			} else {
				walk(ap, path+".*", false)
			}
		}
	}
	walk(m, "", false)
}
