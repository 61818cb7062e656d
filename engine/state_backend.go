package engine

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/pgshift/pgshift/internal/pg"
)

// A state location is a string: a file path (the file backend, the
// default), or a postgres:// URL naming a row of a table in a PostgreSQL
// database (the postgres backend):
//
//	postgres://pgshift@ops-db:5432/ops?sslmode=require&password_env=STATE_PW&table=pgshift_state#orders-pg17
//
// The query parameters password_env (the name of the environment variable
// holding the password, never the password) and table (default
// pgshift_state) are pgshift's and are not sent to the server; the
// fragment is the row's key, the spec's name. Every function of the engine
// that takes a state path (OpenState, ReadState, RecordCleanup,
// AcquireLock, LockHolder, ForceUnlock) takes either form, so that the
// commands work the same over both backends.

// DefaultStateTable is the table of the postgres backend when none is named.
const DefaultStateTable = "pgshift_state"

// stateBackend is where a state lives and how it is locked.
type stateBackend interface {
	// where names the state in messages: "state file X", "state row ...".
	where() string
	// read returns the stored state; none stored is os.ErrNotExist.
	read() (*State, error)
	// lock takes the exclusive lock of the state, waiting up to timeout.
	lock(operation string, timeout time.Duration) (*Lock, error)
	// holder says who holds the lock right now, if anyone; an error when
	// it cannot tell (the state's server unreachable).
	holder() (*LockInfo, bool, error)
	// modify reads the stored state, applies fn, and writes it back with
	// its serial incremented, refusing if another writer got in between.
	// None stored is os.ErrNotExist, and nothing is written.
	modify(fn func(*State)) error
	// forceUnlock ends the lock seen held by seen (nil: seen free).
	forceUnlock(seen *LockInfo) error
}

// IsPostgresState says whether a state location names the postgres backend.
func IsPostgresState(loc string) bool {
	return strings.HasPrefix(loc, "postgres://") || strings.HasPrefix(loc, "postgresql://")
}

// backendOf parses a state location.
func backendOf(loc string) (stateBackend, error) {
	if !IsPostgresState(loc) {
		return fileBackend{path: loc}, nil
	}
	return parsePostgresLocation(loc)
}

// StateExists says whether a state is stored at a location (a file, or a
// row with a state in the postgres backend), as rollback asks before
// taking the lock. An unreadable state is an error, not a no.
func StateExists(loc string) (bool, error) {
	_, err := ReadState(loc)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

// StateWhere names a state location in messages without any secret (a
// location never holds one: a password in it is refused).
func StateWhere(loc string) string {
	b, err := backendOf(loc)
	if err != nil {
		return "state " + redactLocation(loc)
	}
	return b.where()
}

var tableNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$`)

// PostgresStateLocation is the location of spec name's state in the
// postgres backend: dsn (a URL or keyword/value pairs, without a
// password), the name of the environment variable holding the password
// (may be empty: .pgpass and libpq's other ways apply), and the table
// (empty: pgshift_state; "schema.table" is allowed).
func PostgresStateLocation(dsn, passwordEnv, table, name string) (string, error) {
	if dsnHoldsPassword(dsn) {
		return "", errors.New("the state dsn holds a password; it must not: remove it and name an environment variable holding it with state.password_env, or use a .pgpass file")
	}
	kv, err := pg.ParseConninfo(dsn)
	if err != nil {
		return "", fmt.Errorf("the state dsn is not a valid connection string (%v): write a URI such as postgres://pgshift@host:5432/ops", err)
	}
	if table != "" && !tableNameRE.MatchString(table) {
		return "", fmt.Errorf("state table %q is not a plain name: write a name such as pgshift_state or ops.pgshift_state", table)
	}
	if name == "" {
		return "", errors.New("the state location needs the spec's name")
	}
	u := url.URL{Scheme: "postgres", Path: "/"}
	if user := kv["user"]; user != "" {
		u.User = url.User(user)
	}
	q := url.Values{}
	host, port := kv["host"], kv["port"]
	if host != "" && !strings.Contains(host, ",") && !strings.HasPrefix(host, "/") {
		u.Host = host
		if strings.Contains(host, ":") {
			u.Host = "[" + host + "]"
		}
		if port != "" {
			u.Host += ":" + port
		}
	} else {
		if host != "" {
			q.Set("host", host)
		}
		if port != "" {
			q.Set("port", port)
		}
	}
	u.Path = "/" + kv["dbname"]
	for k, v := range kv {
		switch k {
		case "user", "host", "port", "dbname", "password", "sslpassword":
		default:
			q.Set(k, v)
		}
	}
	if passwordEnv != "" {
		q.Set("password_env", passwordEnv)
	}
	if table != "" && table != DefaultStateTable {
		q.Set("table", table)
	}
	u.RawQuery = q.Encode()
	u.Fragment = name
	return u.String(), nil
}

// WithStateName gives a postgres state location the spec's name when it
// names none (a --state URL usually does not); other locations are
// returned as they are.
func WithStateName(loc, name string) string {
	if !IsPostgresState(loc) || strings.Contains(loc, "#") {
		return loc
	}
	return loc + "#" + url.PathEscape(name)
}

// dsnHoldsPassword: a password in the user information of a URL, or a
// password/sslpassword parameter.
func dsnHoldsPassword(dsn string) bool {
	kv, err := pg.ParseConninfo(dsn)
	if err == nil && (kv["password"] != "" || kv["sslpassword"] != "") {
		return true
	}
	if IsPostgresState(dsn) {
		if u, err := url.Parse(dsn); err == nil && u.User != nil {
			if _, ok := u.User.Password(); ok {
				return true
			}
		}
	}
	return false
}

// redactLocation drops the user information's password, should one be
// there: it is refused anyway, and never shown.
func redactLocation(loc string) string {
	u, err := url.Parse(loc)
	if err != nil {
		return "(unparsable postgres location)"
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "********")
		}
	}
	return u.String()
}

// fileBackend is a JSON file beside the spec, replaced atomically, locked
// with flock(2) on <path>.lock.
type fileBackend struct{ path string }

func (b fileBackend) where() string { return "state file " + b.path }

func (b fileBackend) read() (*State, error) { return readStateFile(b.path) }

func (b fileBackend) lock(operation string, timeout time.Duration) (*Lock, error) {
	return acquireFileLock(b.path, operation, timeout)
}

func (b fileBackend) holder() (*LockInfo, bool, error) {
	info, held := fileLockHolder(b.path)
	return info, held, nil
}

func (b fileBackend) modify(fn func(*State)) error {
	st, err := readStateFile(b.path)
	if err != nil {
		return err
	}
	fn(st)
	st.Serial++
	return writeStateAtomic(b.path, marshalState(st))
}

// write is how a StateStore over a file checkpoints.
func (b fileBackend) write(st *State) error {
	return writeStateAtomic(b.path, marshalState(st))
}

// forceUnlock removes a lock file no process holds. It takes the flock
// itself while it removes the file, so that no run can take the lock in
// between and go on holding a file no longer at the path (a third run
// would create a new file and hold the lock too); a run that opened the
// file before it was removed finds it gone once it has the flock, and
// takes the new one (acquireFileLock).
func (b fileBackend) forceUnlock(*LockInfo) error {
	path := LockPath(b.path)
	for {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("open lock file %s: %w", path, err)
		}
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return &LockedError{LockFile: path, Holder: readLockInfo(path)}
		}
		if err != nil {
			f.Close()
			return fmt.Errorf("lock %s: %w", path, err)
		}
		if !sameFile(f, path) {
			// Removed or replaced since the open: look at the new one.
			f.Close()
			continue
		}
		if testHookBeforeLockUnlink != nil {
			testHookBeforeLockUnlink()
		}
		err = os.Remove(path)
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove lock file %s: %w", path, err)
		}
		return nil
	}
}
