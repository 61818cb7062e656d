package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/pgshift/pgshift/engine"
	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newForceUnlockCommand) }

// forceUnlockArgs are the parsed flags of `pgshift force-unlock`.
type forceUnlockArgs struct {
	spec  specFlags
	state string
	yes   bool
}

func newForceUnlockCommand() *cobra.Command {
	var a forceUnlockArgs
	cmd := &cobra.Command{
		Use:   "force-unlock -f spec.yaml",
		Short: "Free the state's lock: a lock file no process holds, or the session holding the postgres backend's lock",
		Long: `force-unlock frees the lock of a spec's state.

With the state in a file, it removes <state>.lock only when no process holds
its flock (the kernel releases that lock when its holder exits, so this is
only needed on a filesystem without flock); a lock held by a live process is
refused, naming that process.

With the state in PostgreSQL (state.backend: postgres, or --state
postgres://...), it names the session holding the advisory lock (pid, host,
operation, since, server backend) and, once you confirm (or with --yes),
ends that session with pg_terminate_backend: the run it belongs to stops at
its next checkpoint. A killed run needs none of this: its session ends with
it, and so does its lock.

Exit status: 0 the lock is free; 1 refused, cancelled or failed; 2 usage error.`,
		Args: specNoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runForceUnlock(cmd, &a) },
	}
	a.spec.registerOne(cmd)
	fl := cmd.Flags()
	fl.StringVar(&a.state, "state", "", "state location: a file (default <name>.pgshift-state.json beside the spec) or a postgres:// URL")
	fl.BoolVar(&a.yes, "yes", false, "end the session holding the postgres backend's lock without asking")
	return cmd
}

func runForceUnlock(cmd *cobra.Command, a *forceUnlockArgs) error {
	sp, err := a.spec.loadOne()
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	loc := statePathOf(a.state, sp)
	where := engine.StateWhere(loc)
	resume := commandLine("apply", &a.spec, stateFlag(a.state)...)
	info, held, err := engine.LockStatus(loc)
	if err != nil {
		return &exitCodeError{code: exitError, err: fmt.Errorf("force-unlock: cannot tell who holds the lock of %s: %w", where, err)}
	}

	if !engine.IsPostgresState(loc) {
		lockFile := engine.LockPath(loc)
		if held {
			return &exitCodeError{code: exitError, err: fmt.Errorf("%s is locked by %s, which is alive (it holds the flock on %s): "+
				"the lock is not stale, so it stays; wait for that run to finish, or stop that process", where, info, lockFile)}
		}
		if _, err := os.Stat(lockFile); errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(out, "No lock: %s does not exist. Nothing to do.\n", lockFile)
			return nil
		}
		if err := engine.ForceUnlock(loc, nil); err != nil {
			return &exitCodeError{code: exitError, err: err}
		}
		fmt.Fprintf(out, "Removed %s: no process held it. Go on with:\n  %s\n", lockFile, resume)
		return nil
	}

	if !held {
		if err := engine.ForceUnlock(loc, nil); err != nil {
			return &exitCodeError{code: exitError, err: err}
		}
		fmt.Fprintf(out, "No run holds the lock of %s: nothing to end. Go on with:\n  %s\n", where, resume)
		return nil
	}
	fmt.Fprintf(out, "The lock of %s is held by %s.\n", where, info)
	if !a.yes {
		ok, err := confirm(cmd.InOrStdin(), out, fmt.Sprintf("End server backend %d and free the lock? The run it belongs to stops at its next checkpoint.", info.Backend))
		if err != nil {
			return err
		}
		if !ok {
			return &exitCodeError{code: exitError, err: errors.New("force-unlock cancelled: nothing was ended (answer yes, or pass --yes to skip the question)")}
		}
	}
	if err := engine.ForceUnlock(loc, info); err != nil {
		return &exitCodeError{code: exitError, err: err}
	}
	fmt.Fprintf(out, "Ended server backend %d (%s); the lock of %s is free.\n"+
		"A step that run had started stays running in the state and is applied again by the next apply:\n  %s\n", info.Backend, info, where, resume)
	return nil
}
