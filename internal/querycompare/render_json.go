package querycompare

import (
	"bytes"
	"encoding/json"
	"io"
)

// JSON renders the whole report, plans included as EXPLAIN printed them.
func JSON(w io.Writer, r *Report) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}
