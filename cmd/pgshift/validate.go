package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newValidateCommand) }

func newValidateCommand() *cobra.Command {
	var sf specFlags
	cmd := &cobra.Command{
		Use:   "validate -f spec.yaml [--var k=v]... [--vars-file f] [--inventory f]",
		Short: "Check a spec: YAML, templates, schema and the rules between fields",
		Long: `Validate renders the spec's templates and checks the result against the
spec's JSON Schema and the rules the schema cannot express. It connects to
nothing. Every problem is printed, one per line, as

  FILE:LINE:COL: PATH: what is wrong (how to fix it)

Exit status: 0 valid, 1 invalid, 2 usage error.`,
		Args: specNoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			specs, err := sf.load()
			if err != nil {
				return err
			}
			names := make([]string, len(specs))
			for i, s := range specs {
				names[i] = s.Name
			}
			if sf.inventory != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: valid: %d specs from %s: %s\n", sf.file, len(specs), sf.inventory, strings.Join(names, ", "))
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: valid: %s\n", sf.file, names[0])
			return nil
		},
	}
	sf.register(cmd)
	return cmd
}
