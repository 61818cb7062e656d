// Package layout holds no code: its test keeps the package layout that
// docs/architecture.md describes (which package may import which, and that
// only spec knows YAML), so that the drawing cannot drift from the code.
package layout
