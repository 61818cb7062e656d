package main

import (
	"github.com/spf13/cobra"
)

// usageError marks errors in flags or arguments (exit status 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "pgshift",
		Short: "Upgrade PostgreSQL to a new major version with a sub-second write pause",
		Long: `pgshift upgrades a PostgreSQL database to a new major version: it builds a
parallel "green" cluster, fills and follows it with logical replication from
the old "blue" one, verifies both hold the same rows, then moves the
application by repointing PgBouncer or HAProxy, keeping blue current through
reverse replication so that rollback is one command.

A YAML spec is validated, compiled into a plan of steps, reviewed, then
applied with every step checkpointed to a state file.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	root.AddCommand(newVersionCommand())
	for _, add := range subcommands {
		root.AddCommand(add())
	}
	return root
}

// subcommands are added by the files that define them (validate.go, plan.go,
// ...), each in its own init, so that commands live one per file.
var subcommands []func() *cobra.Command
