package pg

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// replIsUndefined reports SQLSTATE 42704 (undefined_object) and friends
// that idempotent drops treat as "already gone".
func IsUndefined(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "42704" || pgErr.Code == "42P01")
}

// isObjectInUse reports SQLSTATE 55006 (object_in_use): a slot someone
// holds, a subscription whose workers still run.
func IsObjectInUse(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "55006"
}

// IsTransient reports an error that says the server went away or is not
// taking connections for now, rather than that the request was wrong: a
// lost connection or a refused dial (SQLSTATE class 08, io.EOF, a network
// error), a server shutting down (57P01 admin_shutdown, 57P02
// crash_shutdown) or starting up (57P03 cannot_connect_now). A restart of
// the server raises these; waiting and reconnecting gets past them.
// Context cancellation is never transient: the caller asked to stop.
func IsTransient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return strings.HasPrefix(pgErr.Code, "08") ||
			pgErr.Code == "57P01" || pgErr.Code == "57P02" || pgErr.Code == "57P03"
	}
	// A failed dial or TLS handshake is a *pgconn.ConnectError too: only
	// the network errors it wraps are transient, not a certificate refused,
	// by either side (a server's refusal comes as a TLS alert inside a
	// *net.OpError of Op "remote error").
	if refusedTLS(err) {
		return false
	}
	var netErr net.Error
	var opErr *net.OpError
	return errors.As(err, &netErr) || errors.As(err, &opErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ENOENT) ||
		errors.Is(err, pgconn.ErrConnClosed) || pgconn.SafeToRetry(err)
}

// refusedTLS says whether err is a TLS handshake that failed on a
// certificate: ours refused by the server, or the server's by us.
func refusedTLS(err error) bool {
	var alert tls.AlertError
	var verify *tls.CertificateVerificationError
	var opErr *net.OpError
	var unknownCA x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	return errors.As(err, &alert) || errors.As(err, &verify) ||
		errors.As(err, &opErr) && opErr.Op == "remote error" ||
		errors.As(err, &unknownCA) || errors.As(err, &host) || errors.As(err, &invalid)
}

// TransientReason is the short cause of a transient error for a log line:
// the SQLSTATE's meaning, or the network error's text.
func TransientReason(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "57P01":
			return "server shutting down (57P01 admin_shutdown)"
		case "57P02":
			return "server crashed (57P02 crash_shutdown)"
		case "57P03":
			return "server starting up (57P03 cannot_connect_now)"
		}
		return pgErr.Message + " (SQLSTATE " + pgErr.Code + ")"
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	}
	return err.Error()
}
