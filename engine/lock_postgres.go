package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgLock is a held lock of the postgres backend: a session-level advisory
// lock (pg_try_advisory_lock on the table's and the spec name's hashes)
// held by a dedicated connection for the whole run. The server releases it
// when that connection ends, so a holder killed with kill -9 leaves no
// stale lock. The run's checkpoints go through the same connection: once
// it is lost, so is the lock, and the next checkpoint fails instead of
// writing without it.
type pgLock struct {
	b    *pgBackend
	mu   sync.Mutex
	conn *pgx.Conn
}

// advisoryHolderSQL finds the backend holding a state's advisory lock in
// the current database ($1, $2: the keys; objsubid 2 is the two-key form).
const advisoryHolderSQL = `SELECT pid FROM pg_locks
WHERE locktype = 'advisory' AND granted AND objsubid = 2
  AND classid::int8 = $1 AND objid::int8 = $2
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
LIMIT 1`

func (b *pgBackend) lock(operation string, timeout time.Duration) (*Lock, error) {
	ctx, cancel := context.WithTimeout(context.Background(), stateTimeout+timeout)
	defer cancel()
	conn, err := b.connect(ctx, operation)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			conn.Close(context.Background())
		}
	}()
	if err := b.ensureTable(ctx, conn); err != nil {
		return nil, err
	}
	k1, k2 := b.lockKeys()
	deadline := time.Now().Add(timeout)
	for {
		var got bool
		if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1, $2)", k1, k2).Scan(&got); err != nil {
			return nil, fmt.Errorf("lock %s: %w", b.where(), err)
		}
		if got {
			break
		}
		if time.Now().After(deadline) {
			holder, _ := b.holderOn(ctx, conn)
			return nil, &LockedError{LockFile: b.where(), Holder: holder, Postgres: true}
		}
		time.Sleep(200 * time.Millisecond)
	}
	host, _ := os.Hostname()
	info := LockInfo{PID: os.Getpid(), Host: host, Operation: operation, Since: time.Now().UTC().Truncate(time.Second)}
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&info.Backend); err != nil {
		return nil, fmt.Errorf("lock %s: %w", b.where(), err)
	}
	data, _ := json.Marshal(info)
	// The row exists from now on; its state stays NULL (no state: readers
	// see os.ErrNotExist) until the first checkpoint.
	if _, err := conn.Exec(ctx, "INSERT INTO "+b.table.Sanitize()+" AS t (name, lock_holder) VALUES ($1, $2) "+
		"ON CONFLICT (name) DO UPDATE SET lock_holder = EXCLUDED.lock_holder", b.name, string(data)); err != nil {
		return nil, fmt.Errorf("lock %s: record the holder: %w", b.where(), err)
	}
	ok = true
	return &Lock{pg: &pgLock{b: b, conn: conn}}, nil
}

// read reads the state on the lock's connection.
func (l *pgLock) read() (*State, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), stateTimeout)
	defer cancel()
	st, _, err := l.b.readOn(ctx, l.conn, false)
	return st, err
}

// write checkpoints st (serial old before it) on the lock's connection.
func (l *pgLock) write(st *State, old int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		return fmt.Errorf("write %s: the lock was released", l.b.where())
	}
	ctx, cancel := context.WithTimeout(context.Background(), stateTimeout)
	defer cancel()
	err := l.b.writeOn(ctx, l.conn, st, old)
	if err != nil && l.conn.IsClosed() {
		return fmt.Errorf("%w: the connection holding this run's lock is gone (the server restarted, the network failed, or a force-unlock ended it), so the lock is lost and this run stops; run the command again", err)
	}
	return err
}

func (l *pgLock) release() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	k1, k2 := l.b.lockKeys()
	_, _ = l.conn.Exec(ctx, "UPDATE "+l.b.table.Sanitize()+" SET lock_holder = NULL WHERE name = $1", l.b.name)
	_, err := l.conn.Exec(ctx, "SELECT pg_advisory_unlock($1, $2)", k1, k2)
	// Closing the session releases the lock in any case.
	if cerr := l.conn.Close(ctx); err == nil {
		err = cerr
	}
	l.conn = nil
	return err
}

func (b *pgBackend) holder() (*LockInfo, bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), stateTimeout)
	defer cancel()
	conn, err := b.connect(ctx, "status")
	if err != nil {
		return nil, false, err
	}
	defer conn.Close(context.Background())
	info, held := b.holderOn(ctx, conn)
	return info, held, nil
}

// holderOn says who holds the lock: the backend from pg_locks (the truth),
// the rest from the lock_holder column its holder wrote.
func (b *pgBackend) holderOn(ctx context.Context, conn *pgx.Conn) (*LockInfo, bool) {
	k1, k2 := b.lockKeys()
	var pid int
	if err := conn.QueryRow(ctx, advisoryHolderSQL, k1, k2).Scan(&pid); err != nil {
		return nil, false
	}
	info := &LockInfo{Backend: pid}
	var data []byte
	if err := conn.QueryRow(ctx, "SELECT lock_holder FROM "+b.table.Sanitize()+" WHERE name = $1", b.name).Scan(&data); err == nil && data != nil {
		var rec LockInfo
		// The column is the last holder's: trust it only if it names the
		// backend holding the lock now.
		if json.Unmarshal(data, &rec) == nil && rec.Backend == pid {
			info = &rec
		}
	}
	return info, true
}

// forceUnlock ends the session holding the advisory lock, only if it is
// still the one seen (the caller asked the user about that one), waits for
// the lock to be free, and clears the recorded holder.
func (b *pgBackend) forceUnlock(seen *LockInfo) error {
	ctx, cancel := context.WithTimeout(context.Background(), stateTimeout)
	defer cancel()
	conn, err := b.connect(ctx, "force-unlock")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	now, held := b.holderOn(ctx, conn)
	switch {
	case !held:
		// Nothing holds it: clear a holder record a killed run left.
		_, _ = conn.Exec(ctx, "UPDATE "+b.table.Sanitize()+" SET lock_holder = NULL WHERE name = $1", b.name)
		return nil
	case seen == nil || now.Backend != seen.Backend:
		return fmt.Errorf("%s: the lock changed hands while you were asked (now %s): nothing was ended; run force-unlock again to see who holds it", b.where(), now.describe())
	}
	var ended bool
	if err := conn.QueryRow(ctx, "SELECT pg_terminate_backend($1)", now.Backend).Scan(&ended); err != nil {
		return fmt.Errorf("%s: end server backend %d holding the lock: %w (ending another role's session needs superuser or pg_signal_backend)", b.where(), now.Backend, err)
	}
	if !ended {
		return fmt.Errorf("%s: server backend %d holding the lock could not be ended: it is gone or not this server's", b.where(), now.Backend)
	}
	for {
		if _, held := b.holderOn(ctx, conn); !held {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: server backend %d was told to end but still holds the lock: %w", b.where(), now.Backend, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	_, _ = conn.Exec(ctx, "UPDATE "+b.table.Sanitize()+" SET lock_holder = NULL WHERE name = $1", b.name)
	return nil
}
