package snapcopy

import (
	"sync"
	"sync/atomic"
)

// Observer hears about the copy as it happens; calls come from several
// workers at once, so implementations must be safe for concurrent use. The
// copy step feeds a progress display and the pgshift_copy_bytes_total and
// pgshift_copy_rows_total metrics from it.
type Observer interface {
	// PartStarted: a worker began streaming the part.
	PartStarted(p *Part)
	// Bytes: n more bytes of COPY data of the part flowed from blue to green.
	Bytes(p *Part, n int64)
	// PartDone: the part ended; rows is what green's COPY reported (0 on error).
	PartDone(p *Part, rows, bytes int64, err error)
}

// Counters is an Observer keeping totals, for progress bars and metrics
// scrapes. The zero value is ready to use.
type Counters struct {
	bytes, rows, partsDone, partsStarted atomic.Int64

	mu      sync.Mutex
	byTable map[Relation]*TableProgress
}

// TableProgress is the progress of one target table.
type TableProgress struct {
	Bytes, Rows      int64
	PartsDone, Parts int
}

func (c *Counters) PartStarted(p *Part) {
	c.partsStarted.Add(1)
	c.mu.Lock()
	tp := c.table(p.Table.Target)
	if p.Index == 0 {
		tp.Parts += p.Of
	}
	c.mu.Unlock()
}

func (c *Counters) Bytes(p *Part, n int64) {
	c.bytes.Add(n)
	c.mu.Lock()
	c.table(p.Table.Target).Bytes += n
	c.mu.Unlock()
}

func (c *Counters) PartDone(p *Part, rows, _ int64, err error) {
	if err != nil {
		return
	}
	c.rows.Add(rows)
	c.partsDone.Add(1)
	c.mu.Lock()
	tp := c.table(p.Table.Target)
	tp.Rows += rows
	tp.PartsDone++
	c.mu.Unlock()
}

// table must be called with mu held.
func (c *Counters) table(r Relation) *TableProgress {
	if c.byTable == nil {
		c.byTable = map[Relation]*TableProgress{}
	}
	tp := c.byTable[r]
	if tp == nil {
		tp = &TableProgress{}
		c.byTable[r] = tp
	}
	return tp
}

// TotalBytes is the COPY data streamed so far.
func (c *Counters) TotalBytes() int64 { return c.bytes.Load() }

// TotalRows is the rows green has committed so far (counted per finished part).
func (c *Counters) TotalRows() int64 { return c.rows.Load() }

// PartsDone is the number of finished parts.
func (c *Counters) PartsDone() int64 { return c.partsDone.Load() }

// Tables is a snapshot of per-table progress, keyed by target table.
func (c *Counters) Tables() map[Relation]TableProgress {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[Relation]TableProgress, len(c.byTable))
	for k, v := range c.byTable {
		out[k] = *v
	}
	return out
}

// Observers fans events out to several observers.
type Observers []Observer

func (o Observers) PartStarted(p *Part) {
	for _, x := range o {
		x.PartStarted(p)
	}
}

func (o Observers) Bytes(p *Part, n int64) {
	for _, x := range o {
		x.Bytes(p, n)
	}
}

func (o Observers) PartDone(p *Part, rows, bytes int64, err error) {
	for _, x := range o {
		x.PartDone(p, rows, bytes, err)
	}
}

// Funcs adapts plain callbacks (a Prometheus counter's Add, say) to an
// Observer; nil callbacks are skipped. table is the target table "schema.name".
type Funcs struct {
	OnBytes func(table string, n int64)
	OnRows  func(table string, n int64)
}

func (f Funcs) PartStarted(*Part) {}

func (f Funcs) Bytes(p *Part, n int64) {
	if f.OnBytes != nil {
		f.OnBytes(p.Table.Target.String(), n)
	}
}

func (f Funcs) PartDone(p *Part, rows, _ int64, err error) {
	if err == nil && f.OnRows != nil {
		f.OnRows(p.Table.Target.String(), rows)
	}
}
