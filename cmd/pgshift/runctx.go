package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/spec"
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

// loadRun is how apply and rollback start: the one spec, its step graph
// and the logger the log flags ask for (on the command's stderr).
func loadRun(cmd *cobra.Command, sf *specFlags, lf *logFlags) (*spec.Spec, *engine.Graph, hclog.Logger, error) {
	spec, err := sf.loadOne()
	if err != nil {
		return nil, nil, nil, err
	}
	g, err := compileSpec(spec)
	if err != nil {
		return nil, nil, nil, err
	}
	log, err := lf.logger(cmd.ErrOrStderr())
	if err != nil {
		return nil, nil, nil, err
	}
	return spec, g, log, nil
}

// openState locks and opens the state for a run; its refusals (locked,
// another spec, a changed spec) exit 1.
func openState(path string, spec *spec.Spec, g *engine.Graph, opts engine.StateOptions) (*engine.StateStore, error) {
	store, err := engine.OpenState(path, spec, g, opts)
	if err != nil {
		return nil, &exitCodeError{code: exitError, err: err}
	}
	return store, nil
}

// statePathOf is the state's location: the --state flag (a file, or a
// postgres:// URL of the postgres backend, given the spec's name as its
// row), or the default beside the spec.
func statePathOf(flag string, spec *spec.Spec) string {
	if flag != "" {
		return engine.WithStateName(flag, spec.Name)
	}
	return spec.StatePath()
}

// serveMetrics serves env's metrics at the --metrics-listen address, or
// the spec's metrics.listen, during the run; neither set: nothing.
func serveMetrics(ctx context.Context, env *engine.Env, flag string, spec *spec.Spec, log hclog.Logger) (stop func(), err error) {
	listen := flag
	if listen == "" {
		listen = spec.Metrics.Listen
	}
	if listen == "" {
		return func() {}, nil
	}
	stop, err = env.Metrics.Serve(ctx, listen)
	if err != nil {
		return nil, &exitCodeError{code: exitError, err: err}
	}
	log.Info("serving metrics", "url", "http://"+listen+"/metrics")
	return stop, nil
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
