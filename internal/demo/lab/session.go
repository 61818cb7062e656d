package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Session stands in for a *testing.T so that the rig (internal/pgtest) can
// start servers from a program: Cleanup stacks the stops, Fatal ends the run
// through Run, which stops everything started, also on Ctrl-C.
//
// Only the methods the rig calls are implemented; the embedded interface is
// nil and any other method would panic.
type Session struct {
	testing.TB

	Ctx context.Context // canceled on SIGINT or SIGTERM
	Out io.Writer       // where rig messages go

	mu       sync.Mutex
	cleanups []func()
	failed   bool
}

// fatal unwinds the main goroutine to Run.
type fatal struct{ msg string }

// ErrInterrupted is returned by Run after SIGINT or SIGTERM.
var ErrInterrupted = errors.New("interrupted")

// Run calls body with a new session and then runs its cleanups in reverse
// order, whether body returned, failed through Fatal, or a signal came. Rig
// helpers that fail the session (Fatal) must be called on body's goroutine.
func Run(body func(s *Session) error) (err error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s := &Session{Ctx: ctx, Out: os.Stderr}
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(fatal)
			if !ok {
				s.runCleanups()
				panic(r)
			}
			err = errors.New(f.msg)
		}
		s.runCleanups()
		if err == nil && ctx.Err() != nil {
			err = ErrInterrupted
		}
	}()
	return body(s)
}

func (s *Session) runCleanups() {
	for {
		s.mu.Lock()
		n := len(s.cleanups)
		if n == 0 {
			s.mu.Unlock()
			return
		}
		f := s.cleanups[n-1]
		s.cleanups = s.cleanups[:n-1]
		s.mu.Unlock()
		func() {
			defer func() {
				if r := recover(); r != nil {
					if f, ok := r.(fatal); ok {
						fmt.Fprintln(s.Out, "cleanup:", f.msg)
						return
					}
					panic(r)
				}
			}()
			f()
		}()
	}
}

func (s *Session) Helper()                  {}
func (s *Session) Name() string             { return "pgshift-lab" }
func (s *Session) Context() context.Context { return s.Ctx }

func (s *Session) Cleanup(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cleanups = append(s.cleanups, f)
}

func (s *Session) Failed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

func (s *Session) Logf(format string, args ...any) { fmt.Fprintf(s.Out, format+"\n", args...) }
func (s *Session) Log(args ...any)                 { fmt.Fprintln(s.Out, args...) }

func (s *Session) Errorf(format string, args ...any) {
	s.mu.Lock()
	s.failed = true
	s.mu.Unlock()
	fmt.Fprintf(s.Out, format+"\n", args...)
}

func (s *Session) Error(args ...any) { s.Errorf("%s", fmt.Sprint(args...)) }

func (s *Session) Fatalf(format string, args ...any) {
	s.mu.Lock()
	s.failed = true
	s.mu.Unlock()
	panic(fatal{fmt.Sprintf(format, args...)})
}

func (s *Session) Fatal(args ...any) { s.Fatalf("%s", fmt.Sprint(args...)) }

// Check ends the run through Run when a signal came.
func (s *Session) Check() {
	if s.Ctx.Err() != nil {
		panic(fatal{ErrInterrupted.Error()})
	}
}

// Sleep waits d, or ends the run through Run when a signal comes first.
func (s *Session) Sleep(d time.Duration) {
	select {
	case <-time.After(d):
	case <-s.Ctx.Done():
	}
	s.Check()
}

// TempDir is a private folder removed at the end of the session.
func (s *Session) TempDir() string {
	dir, err := os.MkdirTemp("", "pgshift-lab-")
	if err != nil {
		s.Fatalf("temp folder: %v", err)
	}
	s.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}
