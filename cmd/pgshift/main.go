// Command pgshift upgrades PostgreSQL to a new major version through logical
// replication and a pooler switch. This package is thin: flags, exit codes
// and output formats; the work lives in engine and steps.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Exit codes shared by every command.
const (
	exitOK      = 0
	exitError   = 1 // the command ran and failed (invalid spec, failed step)
	exitUsage   = 2 // bad flags or arguments
	exitChanges = 2 // plan --detailed-exitcode: changes pending
)

// exitCodeError carries a specific exit status up to main.
type exitCodeError struct {
	code int
	err  error
}

func (e *exitCodeError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}
func (e *exitCodeError) Unwrap() error { return e.err }

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	root := newRootCommand()
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	var ec *exitCodeError
	if errors.As(err, &ec) {
		if ec.err != nil {
			fmt.Fprintln(os.Stderr, "Error:", ec.err)
		}
		return ec.code
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintln(os.Stderr, "Error:", ue.err)
		return exitUsage
	}
	fmt.Fprintln(os.Stderr, "Error:", err)
	// cobra reports an unknown command with a plain error: it is a usage error all the same.
	if strings.HasPrefix(err.Error(), "unknown command ") {
		fmt.Fprintln(os.Stderr, "Run 'pgshift --help' for the commands.")
		return exitUsage
	}
	return exitError
}
