package main

import (
	"context"
	"errors"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgshift/pgshift/engine"
)

// exitTransient is the exit status of a fleet run whose every failure is
// of the kind a later run may not meet (a server down, a timeout, an
// interrupt, a lock held by another run): retrying will help. A fleet with
// a failure that needs a person (a blocker, a failed precondition, a verify
// difference, a refused login) exits exitError, even if other databases
// failed transiently. One database without --inventory keeps 0/1/2.
const exitTransient = 3

// failureKind sorts a database's failure by what helps it.
type failureKind int

const (
	failNone      failureKind = iota
	failTransient             // retry will help
	failPerson                // a person must act before a retry can succeed
)

func (k failureKind) String() string {
	switch k {
	case failTransient:
		return "transient"
	case failPerson:
		return "needs a person"
	}
	return ""
}

// withCauses is an error whose message stands alone and whose root causes
// stay reachable for errors.As and errors.Is: apply and rollback report
// "apply failed: 2 steps (a, b)" and keep the steps' errors under it, so
// that a fleet can tell a refused connection from a blocker.
type withCauses struct {
	msg    string
	causes []error
}

func (e *withCauses) Error() string   { return e.msg }
func (e *withCauses) Unwrap() []error { return e.causes }

// stepCauses is the message msg over the errors of failed steps.
func stepCauses(msg string, failed []engine.StepError) error {
	e := &withCauses{msg: msg}
	for _, f := range failed {
		e.causes = append(e.causes, f.Err)
	}
	return e
}

// transientSQLStates are the SQLSTATEs (or classes, two characters) a later
// try may not meet: the connection broke or the server is shutting down,
// starting up, out of connections, or a transaction lost a race.
var transientSQLStates = []string{
	"08",    // connection exception
	"53300", // too_many_connections
	"53400", // configuration_limit_exceeded
	"57P01", // admin_shutdown
	"57P02", // crash_shutdown
	"57P03", // cannot_connect_now (starting up, recovering)
	"57P05", // idle_session_timeout
	"40001", // serialization_failure
	"40P01", // deadlock_detected
	"55P03", // lock_not_available
	"57014", // query_canceled (statement_timeout, lock_timeout)
}

// classify says whether err is worth a retry. Each cause of a joined or
// multi-cause error is classified, and one cause that needs a person makes
// the whole error need one: a retry would meet it again.
func classify(err error) failureKind {
	if err == nil {
		return failNone
	}
	var ue *usageError
	if errors.As(err, &ue) {
		return failPerson
	}
	var causes []error
	switch u := err.(type) {
	case interface{ Unwrap() []error }:
		causes = u.Unwrap()
	case interface{ Unwrap() error }:
		// A wrapper's own meaning (a precondition, a lock) comes first.
		if k, ok := classifyOne(err); ok {
			return k
		}
		inner := u.Unwrap()
		if inner == nil {
			return failPerson // an exit status without a cause: the output says what
		}
		return classify(inner)
	default:
		k, _ := classifyOne(err)
		return k
	}
	if k, ok := classifyOne(err); ok {
		return k
	}
	kind := failNone
	for _, c := range causes {
		kind = max(kind, classify(c))
	}
	if kind == failNone {
		return failPerson // an error with no classifiable cause: look at it
	}
	return kind
}

// classifyOne classifies err by what it is itself, not by what it wraps;
// ok is false when err is only a wrapper.
func classifyOne(err error) (failureKind, bool) {
	switch e := err.(type) {
	case *engine.PreconditionError:
		return failPerson, true
	case *engine.LockedError:
		return failTransient, true // another run holds the state: wait and retry
	case *pgconn.PgError:
		for _, s := range transientSQLStates {
			if strings.HasPrefix(e.Code, s) {
				return failTransient, true
			}
		}
		return failPerson, true
	case *net.DNSError:
		// A name that does not exist is a typo to fix; a resolver that
		// timed out or failed may answer the next time.
		if e.IsNotFound {
			return failPerson, true
		}
		return failTransient, true
	case syscall.Errno:
		switch e {
		case syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED, syscall.EHOSTUNREACH,
			syscall.ENETUNREACH, syscall.ETIMEDOUT, syscall.EPIPE:
			return failTransient, true
		}
		return failPerson, true
	}
	if err == context.Canceled || err == context.DeadlineExceeded {
		return failTransient, true
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return failTransient, true
	}
	switch err.(type) {
	case interface{ Unwrap() error }, interface{ Unwrap() []error }:
		return failNone, false
	}
	// A leaf nothing above knows: a step's own refusal, a verify
	// difference, a message written for a person.
	return failPerson, true
}
