package main

import (
	"fmt"

	"github.com/pgshift/pgshift/spec"
	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newRenderCommand) }

func newRenderCommand() *cobra.Command {
	var sf specFlags
	cmd := &cobra.Command{
		Use:   "render -f spec.yaml [--var k=v]... [--vars-file f] [--inventory f]",
		Short: "Print the spec with templates rendered and every default filled",
		Long: `Render prints the spec as pgshift will run it: templates rendered, every
default written out, variable declarations dropped. The output is itself a
valid spec. With --inventory it prints one YAML document per entry.

Exit status: 0 rendered, 1 invalid spec, 2 usage error.`,
		Args: specNoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			specs, err := sf.load()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for i, s := range specs {
				b, err := spec.RenderYAML(s)
				if err != nil {
					return &exitCodeError{code: exitError, err: err}
				}
				if i > 0 {
					fmt.Fprintln(out, "---")
				}
				fmt.Fprint(out, string(b))
			}
			return nil
		},
	}
	sf.register(cmd)
	return cmd
}
