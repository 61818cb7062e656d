package lab

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// TxStats sums pgbench per-transaction log lines (pgbench -l):
//
//	client_id transaction_no time script_no time_epoch time_us [schedule_lag]
//
// time is the transaction's latency in microseconds; under --rate it is
// counted from the scheduled start, so a transaction held in a queue (a
// paused pooler) shows the whole wait. A failed or skipped transaction has
// "failed" or "skipped" in place of its latency.
type TxStats struct {
	Committed    int
	Failed       int // failed or skipped
	MaxLatency   time.Duration
	MaxLatencyAt time.Time   // when that transaction ended
	PerClient    map[int]int // committed transactions by client_id
	Samples      []Sample    // every committed transaction
}

// Sample is one committed transaction.
type Sample struct {
	End     time.Time
	Latency time.Duration
}

// MaxLatencyDuring is the longest latency of the transactions that were
// waiting or running at some instant between from and to.
func (s *TxStats) MaxLatencyDuring(from, to time.Time) time.Duration {
	var m time.Duration
	for _, x := range s.Samples {
		if x.End.After(from) && x.End.Add(-x.Latency).Before(to) && x.Latency > m {
			m = x.Latency
		}
	}
	return m
}

// Add merges other into s.
func (s *TxStats) Add(other TxStats) {
	if s.PerClient == nil {
		s.PerClient = map[int]int{}
	}
	for c, n := range other.PerClient {
		s.PerClient[c] += n
	}
	s.Samples = append(s.Samples, other.Samples...)
	s.Committed += other.Committed
	s.Failed += other.Failed
	if other.MaxLatency > s.MaxLatency {
		s.MaxLatency, s.MaxLatencyAt = other.MaxLatency, other.MaxLatencyAt
	}
}

// ParseTxLog reads one pgbench per-transaction log.
func ParseTxLog(r io.Reader) (TxStats, error) {
	st := TxStats{PerClient: map[int]int{}}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) < 6 {
			return st, fmt.Errorf("line %d: %q is not a pgbench transaction log line (client_id transaction_no time script_no time_epoch time_us)", n, sc.Text())
		}
		client, err := strconv.Atoi(f[0])
		if err != nil {
			return st, fmt.Errorf("line %d: client_id %q: %v", n, f[0], err)
		}
		us, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			if f[2] == "failed" || f[2] == "skipped" {
				st.Failed++
				continue
			}
			return st, fmt.Errorf("line %d: latency %q is neither microseconds nor failed/skipped", n, f[2])
		}
		st.Committed++
		st.PerClient[client]++
		sec, _ := strconv.ParseInt(f[4], 10, 64)
		usec, _ := strconv.ParseInt(f[5], 10, 64)
		end, d := time.Unix(sec, usec*1000), time.Duration(us)*time.Microsecond
		st.Samples = append(st.Samples, Sample{End: end, Latency: d})
		if d > st.MaxLatency {
			st.MaxLatency, st.MaxLatencyAt = d, end
		}
	}
	return st, sc.Err()
}

// Summary is what pgbench prints at its end.
type Summary struct {
	Processed int // "number of transactions actually processed"
	Failed    int // "number of failed transactions"
	Aborted   []string
}

// ParseSummary reads pgbench's output (stdout and stderr): the totals and
// every line saying a client aborted or the run was aborted.
func ParseSummary(out string) (Summary, bool) {
	var s Summary
	found := false
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "number of transactions actually processed: "):
			v, _, _ := strings.Cut(strings.TrimPrefix(line, "number of transactions actually processed: "), "/")
			s.Processed, _ = strconv.Atoi(strings.TrimSpace(v))
			found = true
		case strings.HasPrefix(line, "number of failed transactions: "):
			v, _, _ := strings.Cut(strings.TrimPrefix(line, "number of failed transactions: "), " ")
			s.Failed, _ = strconv.Atoi(v)
		case strings.Contains(line, "aborted"):
			s.Aborted = append(s.Aborted, strings.TrimSpace(line))
		}
	}
	return s, found
}
