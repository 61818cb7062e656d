package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/pgshift/pgshift/engine"
	"github.com/spf13/cobra"
)

// interruptContext ends on the first SIGINT or SIGTERM, so that steps stop
// and the state is checkpointed. A second signal gets the default behaviour
// and ends the process at once (the state stays consistent: a step left
// running is taken up again by the next run).
func interruptContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(cmdContext(cmd), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	return ctx, stop
}

// cmdContext is the command's context, or Background outside Execute.
func cmdContext(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}

// statePathOf is the --state flag, or the default beside the spec.
func statePathOf(flag string, spec *engine.Spec) string {
	if flag != "" {
		return flag
	}
	return spec.StatePath()
}

// confirm prints question on out and reads the answer from in; only "yes"
// agrees.
func confirm(in io.Reader, out io.Writer, question string) (bool, error) {
	io.WriteString(out, "\n"+question+" Only 'yes' will be accepted: ")
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && err != io.EOF {
		return false, err
	}
	io.WriteString(out, "\n")
	return strings.TrimSpace(line) == "yes", nil
}
