package lab

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/pgshift/pgshift/internal/pgtest"
)

// LoadOptions describe a pgbench load: simple query protocol (the only one
// PgBouncer's transaction pooling takes from pgbench), a fixed rate, a
// per-transaction log.
type LoadOptions struct {
	Host    string
	Port    int
	DB      string
	Clients int
	Threads int
	Rate    int               // transactions per second, all clients together
	Script  string            // a pgbench script file; "" runs the built-in TPC-B-like one
	Dir     string            // where logs go
	Defines map[string]string // pgbench -D variables for the script (seg is set to the run's number)

	// pgbench cannot be stopped gracefully (it ignores SIGINT and loses its
	// buffered log on SIGTERM), so a load is a chain of pgbench runs of
	// Segment each, the next one started Overlap before the previous ends;
	// Stop lets the running one finish. Once false runs a single Segment.
	Segment time.Duration
	Overlap time.Duration
	Repeat  bool
}

// Load is pgbench running in the background.
type Load struct {
	opts LoadOptions
	bin  string
	stop chan struct{}
	done chan struct{}

	mu          sync.Mutex
	segs        []*segment
	stoppedLate bool // the last segment ended before Stop was called
	startErr    error
}

type segment struct {
	n      int
	cmd    *exec.Cmd
	out    bytes.Buffer
	prefix string
	err    error
	exited chan struct{}
}

// SegmentResult is one pgbench run's outcome.
type SegmentResult struct {
	Summary Summary
	Tx      TxStats
	Err     error // pgbench's exit status
	Output  string
}

// LoadResult adds up the segments.
type LoadResult struct {
	Segments []SegmentResult
	Tx       TxStats // from the per-transaction logs
	Failed   int     // pgbench's failed transactions plus aborted clients
	Problems []string
	// EndedEarly: the load had already ended when Stop was called, so the
	// span between was not under load.
	EndedEarly bool
}

// StartLoad starts pgbench; the cleanup (a Session's, or a test's) kills it
// if Stop was not called.
func StartLoad(s interface{ Cleanup(func()) }, o LoadOptions) (*Load, error) {
	bin, err := pgtest.ClientBin("pgbench")
	if err != nil {
		return nil, err
	}
	if o.Threads == 0 {
		o.Threads = 1
	}
	// Each load its own folder: pgbench names its logs by run and pid only.
	if o.Dir, err = os.MkdirTemp(o.Dir, "load-"); err != nil {
		return nil, err
	}
	l := &Load{opts: o, bin: bin, stop: make(chan struct{}), done: make(chan struct{})}
	first, err := l.startSegment(0)
	if err != nil {
		return nil, err
	}
	s.Cleanup(l.kill)
	go l.loop(first)
	return l, nil
}

func (l *Load) loop(cur *segment) {
	defer close(l.done)
	if !l.opts.Repeat {
		select {
		case <-l.stop:
		case <-cur.exited:
			l.mu.Lock()
			l.stoppedLate = true
			l.mu.Unlock()
			<-l.stop
		}
	} else {
	run:
		for n := 1; ; n++ {
			select {
			case <-l.stop:
				break run
			case <-time.After(l.opts.Segment - l.opts.Overlap):
				if _, err := l.startSegment(n); err != nil {
					l.mu.Lock()
					l.startErr = err
					l.mu.Unlock()
					<-l.stop
					break run
				}
			}
		}
	}
	l.mu.Lock()
	segs := append([]*segment(nil), l.segs...)
	l.mu.Unlock()
	for _, sg := range segs {
		<-sg.exited
	}
}

func (l *Load) startSegment(n int) (*segment, error) {
	o := l.opts
	sg := &segment{n: n, prefix: filepath.Join(o.Dir, fmt.Sprintf("pgbench-%d", n)), exited: make(chan struct{})}
	args := []string{"-n", "-M", "simple", "-c", strconv.Itoa(o.Clients), "-j", strconv.Itoa(o.Threads),
		"-R", strconv.Itoa(o.Rate), "-T", strconv.Itoa(int(o.Segment.Round(time.Second).Seconds())),
		"-P", "1", "-l", "--log-prefix", sg.prefix, "-D", "seg=" + strconv.Itoa(n),
		"-h", o.Host, "-p", strconv.Itoa(o.Port), "-U", "postgres"}
	for _, k := range slices.Sorted(maps.Keys(o.Defines)) {
		args = append(args, "-D", k+"="+o.Defines[k])
	}
	if o.Script != "" {
		args = append(args, "-f", o.Script)
	}
	sg.cmd = exec.Command(l.bin, append(args, o.DB)...)
	sg.cmd.Dir = o.Dir
	sg.cmd.Stdout, sg.cmd.Stderr = &sg.out, &sg.out
	if err := sg.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start pgbench: %w", err)
	}
	l.mu.Lock()
	l.segs = append(l.segs, sg)
	l.mu.Unlock()
	go func() { sg.err = sg.cmd.Wait(); close(sg.exited) }()
	return sg, nil
}

func (l *Load) kill() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, sg := range l.segs {
		select {
		case <-sg.exited:
		default:
			_ = sg.cmd.Process.Kill()
		}
	}
}

// Stop lets the running pgbench finish its segment, then reads every log.
func (l *Load) Stop() LoadResult {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
	var res LoadResult
	l.mu.Lock()
	res.EndedEarly = l.stoppedLate
	if l.startErr != nil {
		res.Problems = append(res.Problems, l.startErr.Error())
	}
	segs := append([]*segment(nil), l.segs...)
	l.mu.Unlock()
	for _, sg := range segs {
		r := SegmentResult{Err: sg.err, Output: sg.out.String()}
		sum, ok := ParseSummary(r.Output)
		r.Summary = sum
		if !ok {
			res.Problems = append(res.Problems, fmt.Sprintf("pgbench run %d printed no totals (%v): %s", sg.n, sg.err, tail(r.Output, 600)))
		}
		if sg.err != nil {
			res.Problems = append(res.Problems, fmt.Sprintf("pgbench run %d: %v", sg.n, sg.err))
		}
		res.Problems = append(res.Problems, sum.Aborted...)
		files, _ := filepath.Glob(sg.prefix + ".*")
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				res.Problems = append(res.Problems, err.Error())
				continue
			}
			st, err := ParseTxLog(bytes.NewReader(b))
			if err != nil {
				res.Problems = append(res.Problems, fmt.Sprintf("%s: %v", f, err))
			}
			r.Tx.Add(st)
		}
		if ok && r.Tx.Committed != sum.Processed {
			res.Problems = append(res.Problems, fmt.Sprintf("pgbench run %d: %d transactions in its log, %d in its totals", sg.n, r.Tx.Committed, sum.Processed))
		}
		res.Tx.Add(r.Tx)
		res.Failed += sum.Failed + clientAborts(sum.Aborted)
		res.Segments = append(res.Segments, r)
	}
	return res
}

// clientAborts counts clients that stopped on an error: each had a
// transaction fail.
func clientAborts(lines []string) int {
	n := 0
	for _, l := range lines {
		if bytes.Contains([]byte(l), []byte("client ")) {
			n++
		}
	}
	return n
}

func tail(s string, max int) string {
	if len(s) <= max {
		return s
	}
	return "…" + s[len(s)-max:]
}
