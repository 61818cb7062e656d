package snapcopy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Copier streams parts from blue's exported snapshot into green.
type Copier struct {
	Source   *pgx.ConnConfig // blue; never changed
	Target   *pgx.ConnConfig // green; never changed
	Snapshot string          // the exported snapshot's name (Snapshot.Name)
	Workers  int             // parallel workers, each one connection per side; at least 1
	Format   Format          // FormatAuto (default) or FormatText to force text
	Observer Observer        // optional
	Log      hclog.Logger    // optional
}

// Result sums up a finished copy.
type Result struct {
	Rows, Bytes int64
	Parts       int
	Elapsed     time.Duration
	Tables      map[Relation]TableProgress // by target table
	// ReplicaRole is true when green's sessions ran with
	// session_replication_role = replica (triggers and foreign keys off while
	// loading); it needs a superuser on green.
	ReplicaRole bool
}

// chunkSize is what one CopyData message to green carries: pgconn sends each
// Read as one message into a 64 KiB buffer with a 5-byte header, so a
// buffered writer of this size feeds it full messages instead of one per row.
const chunkSize = 64*1024 - 5

// Run copies every part, largest first in the order given, and stops at the
// first error (the snapshot cannot be reopened, so a partial copy is only
// good for Reset). Each worker holds one REPEATABLE READ transaction on blue
// that imports the snapshot, so every part sees the same data.
func (c *Copier) Run(ctx context.Context, parts []Part) (Result, error) {
	start := time.Now()
	log := c.Log
	if log == nil {
		log = hclog.NewNullLogger()
	}
	workers := c.Workers
	if workers < 1 {
		workers = 1
	}
	if workers > len(parts) {
		workers = len(parts)
	}
	if _, err := quoteLiteral(c.Snapshot); err != nil || !snapshotNameRE.MatchString(c.Snapshot) {
		return Result{}, fmt.Errorf("snapshot name %q is not one PostgreSQL exports", c.Snapshot)
	}
	counters := &Counters{}
	obs := Observers{counters}
	if c.Observer != nil {
		obs = append(obs, c.Observer)
	}

	parent := ctx
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	queue := make(chan *Part)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	replicaRole := true
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
			cancel(err)
		}
		mu.Unlock()
	}
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			w, err := c.openWorker(ctx, id, log)
			if err != nil {
				fail(err)
				return
			}
			defer w.close()
			if !w.replicaRole {
				mu.Lock()
				replicaRole = false
				mu.Unlock()
			}
			for p := range queue {
				if err := w.copyPart(ctx, p, obs); err != nil {
					fail(err)
					return
				}
			}
			if err := w.finish(ctx); err != nil {
				fail(err)
			}
		}(i)
	}
feed:
	for i := range parts {
		select {
		case queue <- &parts[i]:
		case <-ctx.Done():
			break feed
		}
	}
	close(queue)
	wg.Wait()
	res := Result{
		Rows:        counters.TotalRows(),
		Bytes:       counters.TotalBytes(),
		Parts:       int(counters.PartsDone()),
		Elapsed:     time.Since(start),
		Tables:      counters.Tables(),
		ReplicaRole: replicaRole,
	}
	// An interrupted run reports the interruption, not whichever network
	// error a worker saw when pgx closed its connection on cancel.
	if err := context.Cause(parent); err != nil && res.Parts < len(parts) {
		return res, fmt.Errorf("copy interrupted after %d of %d parts: %w", res.Parts, len(parts), err)
	}
	if firstErr != nil {
		return res, firstErr
	}
	if err := context.Cause(ctx); err != nil {
		return res, err
	}
	return res, nil
}

type worker struct {
	id          int
	src, dst    *pgx.Conn
	format      Format
	replicaRole bool
	log         hclog.Logger
}

func (c *Copier) openWorker(ctx context.Context, id int, log hclog.Logger) (*worker, error) {
	w := &worker{id: id, format: c.Format, log: log.With("worker", id)}
	var err error
	if w.src, err = pgx.ConnectConfig(ctx, c.Source); err != nil {
		return nil, fmt.Errorf("blue: copy worker %d: connect: %w", id, err)
	}
	lit, _ := quoteLiteral(c.Snapshot)
	// A big part streams for a long time: a role's statement_timeout must
	// not cut it, nor idle_in_transaction_session_timeout the snapshot
	// transaction between parts.
	if err := simpleExec(ctx, w.src, noTimeouts); err != nil {
		w.close()
		return nil, fmt.Errorf("blue: copy worker %d: %w", id, err)
	}
	if err := simpleExec(ctx, w.src, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); err != nil {
		w.close()
		return nil, fmt.Errorf("blue: copy worker %d: begin: %w", id, err)
	}
	if err := simpleExec(ctx, w.src, "SET TRANSACTION SNAPSHOT "+lit); err != nil {
		w.close()
		return nil, fmt.Errorf("blue: copy worker %d: import snapshot %s: %w (the connection that exported it has closed: the copy must start over with a new slot)", id, c.Snapshot, err)
	}
	if w.dst, err = pgx.ConnectConfig(ctx, c.Target); err != nil {
		w.close()
		return nil, fmt.Errorf("green: copy worker %d: connect: %w", id, err)
	}
	if err := simpleExec(ctx, w.dst, noTimeouts); err != nil {
		w.close()
		return nil, fmt.Errorf("green: copy worker %d: %w", id, err)
	}
	// Triggers and foreign keys would fire row by row while loading (or fail
	// on rows whose parents come in a later part); logical replication's own
	// apply workers load with the replica role for the same reason.
	if err := simpleExec(ctx, w.dst, "SET session_replication_role = replica"); err == nil {
		w.replicaRole = true
	} else {
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			w.close()
			return nil, fmt.Errorf("green: copy worker %d: %w", id, err)
		}
		w.log.Debug("green: cannot set session_replication_role (needs a superuser); triggers and foreign keys present on green fire during the copy")
	}
	return w, nil
}

const noTimeouts = "SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0"

func simpleExec(ctx context.Context, c *pgx.Conn, sql string) error {
	_, err := c.PgConn().Exec(ctx, sql).ReadAll()
	return err
}

func (w *worker) finish(ctx context.Context) error {
	if err := simpleExec(ctx, w.src, "COMMIT"); err != nil {
		return fmt.Errorf("blue: copy worker %d: end snapshot transaction: %w", w.id, err)
	}
	return nil
}

func (w *worker) close() {
	bg, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if w.src != nil {
		w.src.Close(bg)
	}
	if w.dst != nil {
		w.dst.Close(bg)
	}
}

// copyPart streams one part: COPY TO on blue writes into a pipe that COPY
// FROM on green reads. Memory stays at a couple of 64 KiB buffers per worker
// whatever the table's size.
func (w *worker) copyPart(ctx context.Context, p *Part, obs Observer) error {
	binary := p.Table.Binary && w.format != FormatText
	outSQL, inSQL := p.copyOutSQL(binary), p.copyInSQL(binary)
	obs.PartStarted(p)
	started := time.Now()

	pr, pw := io.Pipe()
	type outcome struct {
		tag pgconn.CommandTag
		err error
	}
	out := make(chan outcome, 1)
	go func() {
		bw := bufio.NewWriterSize(pw, chunkSize)
		tag, err := w.src.PgConn().CopyTo(ctx, bw, outSQL)
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err) // nil: green's COPY sees EOF and commits
		out <- outcome{tag, err}
	}()
	cr := &countingReader{r: pr, part: p, obs: obs}
	inTag, inErr := w.dst.PgConn().CopyFrom(ctx, cr, inSQL)
	if inErr != nil {
		pr.CloseWithError(inErr) // unblocks blue's side
	}
	o := <-out

	// The side that failed first is the cause: green's failure reaches blue's
	// writer as the very error green returned.
	var err error
	switch {
	case o.err != nil && (inErr == nil || !errors.Is(o.err, inErr)):
		err = fmt.Errorf("blue: copy %s: %w", p, o.err)
	case inErr != nil:
		err = fmt.Errorf("green: copy %s into %s: %w", p, p.Table.Target, inErr)
	case o.tag.RowsAffected() != inTag.RowsAffected():
		err = fmt.Errorf("copy %s: blue sent %d rows but green stored %d", p, o.tag.RowsAffected(), inTag.RowsAffected())
	}
	rows := inTag.RowsAffected()
	if err != nil {
		rows = 0
	}
	obs.PartDone(p, rows, cr.n, err)
	if err == nil {
		w.log.Debug("part copied", "part", p.String(), "rows", rows, "bytes", cr.n, "binary", binary, "elapsed", time.Since(started))
	}
	return err
}

type countingReader struct {
	r    io.Reader
	part *Part
	obs  Observer
	n    int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if n > 0 {
		c.n += int64(n)
		c.obs.Bytes(c.part, int64(n))
	}
	return n, err
}
