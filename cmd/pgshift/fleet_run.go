package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/spec"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// dbResult is how one database's command of a fleet run ended.
type dbResult struct {
	err    error
	kind   failureKind
	output string // what the command printed on stdout
	took   time.Duration
	// unreachable says which side of the database could not be reached
	// after it failed, and why (the failure is then transient).
	unreachable string
}

// unreachableSide connects to blue and then green, each within 10 seconds,
// and says which could not be reached for a reason a retry may not meet
// (refused, timed out, the server starting or shutting down), and why;
// "" when both answer or a side refuses for a reason a person must fix (a
// password, a database that does not exist).
func unreachableSide(ctx context.Context, sp *spec.Spec) string {
	env := engine.NewEnv(sp, nil)
	defer env.Close()
	for _, db := range []*engine.Database{env.Source, env.Target} {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		conn, err := db.Connect(cctx)
		cancel()
		if err != nil {
			if classify(err) == failTransient {
				return fmt.Sprintf("%s unreachable (%s)", db.Role, leafError(err))
			}
			continue
		}
		conn.Close(ctx)
	}
	return ""
}

// leafError is the innermost message of a chain of wrapped errors
// ("connection refused").
func leafError(err error) string {
	for {
		next := errors.Unwrap(err)
		if m, ok := err.(interface{ Unwrap() []error }); ok && len(m.Unwrap()) > 0 {
			next = m.Unwrap()[0]
		}
		if next == nil {
			return err.Error()
		}
		err = next
	}
}

// runFleetOne runs verb on one database of the fleet as its own pgshift
// command, in this process: -f and the entry's variables as --var, its
// state file, and the flags the user gave the fleet command. Its stdout is
// kept for printFleetOutput; its logs go to logs, each line under the
// database's name.
func runFleetOne(ctx context.Context, verb string, sf *specFlags, sp *spec.Spec, fwd []string, stateDir string, logs io.Writer) *dbResult {
	one := sf.forEntry(sp)
	args := []string{verb, "-f", one.file}
	for _, v := range one.vars {
		args = append(args, "--var", v)
	}
	if stateDir != "" {
		args = append(args, "--state", fleetStatePath(stateDir, sp))
	}
	args = append(args, fwd...)

	root := newRootCommand()
	var out bytes.Buffer
	pw := &prefixWriter{w: logs, name: sp.Name}
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(pw)
	root.SetIn(strings.NewReader("")) // a fleet never asks: --yes is required
	start := time.Now()
	err := root.ExecuteContext(ctx)
	pw.flush()
	r := &dbResult{err: err, took: time.Since(start), output: out.String(), kind: classify(err)}
	switch {
	case err != nil && ctx.Err() != nil:
		r.kind = failTransient // interrupted: the same command resumes it
	case r.kind == failPerson && verb != "status":
		// Steps report an unreachable server as a blocker in words; a
		// side that cannot be reached now makes the failure one a retry
		// may not meet.
		if down := unreachableSide(ctx, sp); down != "" {
			r.kind, r.unreachable = failTransient, down
		}
	}
	if msg := errorText(err); msg != "" {
		fmt.Fprintf(&out, "Error: %s\n", msg)
		r.output = out.String()
	}
	return r
}

// errorText is what main would print for err ("" for an exit status
// whose message was already printed).
func errorText(err error) string {
	if err == nil {
		return ""
	}
	var ec *exitCodeError
	if errors.As(err, &ec) && ec.err == nil {
		return ""
	}
	return err.Error()
}

// forwardedArgs are the flags the user set on the fleet command that each
// database's command takes as they are: all but the spec flags (each
// database gets -f and its own --var), --state and the fleet's own.
func forwardedArgs(cmd *cobra.Command) []string {
	skip := []string{"file", "var", "vars-file", "inventory", "state", "help"}
	skip = append(skip, fleetOnlyFlags...)
	var out []string
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if slices.Contains(skip, f.Name) {
			return
		}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			for _, v := range sv.GetSlice() {
				out = append(out, "--"+f.Name+"="+v)
			}
			return
		}
		if f.Value.Type() == "bool" && f.Value.String() == "true" {
			out = append(out, "--"+f.Name)
			return
		}
		out = append(out, "--"+f.Name+"="+f.Value.String())
	})
	return out
}

// printFleetOutput prints what one database's command printed, each line
// under its name, once it has finished (so that databases running at once
// do not interleave their reports).
func printFleetOutput(w io.Writer, name string, r *dbResult) {
	text := strings.Trim(r.output, "\n")
	if text == "" {
		return
	}
	var b strings.Builder
	for _, line := range strings.Split(text, "\n") {
		b.WriteString("[" + name + "] " + line + "\n")
	}
	b.WriteString("\n")
	io.WriteString(w, b.String())
}

// lockedWriter serializes writes of several goroutines to one writer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// prefixWriter writes whole lines to w, each under the database's name:
// "[orders-pg17] " before a human log line, a "database" field first in a
// JSON one (--log-format json stays one JSON object per line).
type prefixWriter struct {
	w    io.Writer
	name string
	mu   sync.Mutex
	buf  []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		if _, err := p.w.Write(p.prefixed(p.buf[:i+1])); err != nil {
			return len(b), err
		}
		p.buf = p.buf[i+1:]
	}
}

func (p *prefixWriter) prefixed(line []byte) []byte {
	if len(line) > 1 && line[0] == '{' {
		name, _ := json.Marshal(p.name)
		rest := line[1:]
		sep := ","
		if len(bytes.TrimSpace(rest)) > 0 && bytes.TrimSpace(rest)[0] == '}' {
			sep = ""
		}
		return slices.Concat([]byte(`{"database":`), name, []byte(sep), rest)
	}
	return slices.Concat([]byte("["+p.name+"] "), line)
}

// flush writes a last line without its newline.
func (p *prefixWriter) flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.buf) > 0 {
		p.w.Write(p.prefixed(append(p.buf, '\n')))
		p.buf = nil
	}
}
