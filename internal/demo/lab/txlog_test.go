package lab

import (
	"strings"
	"testing"
	"time"
)

func TestParseTxLog(t *testing.T) {
	log := `0 0 1520 0 1764122400 100000 310
1 0 251000 0 1764122401 250000 240000
0 1 failed 0 1764122402 5 12
1 1 2040 0 1764122403 7 90

0 2 skipped 0 1764122404 0 0
`
	st, err := ParseTxLog(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	if st.Committed != 3 || st.Failed != 2 {
		t.Fatalf("committed %d failed %d, want 3 and 2", st.Committed, st.Failed)
	}
	if st.MaxLatency != 251*time.Millisecond {
		t.Fatalf("longest latency %s, want 251ms", st.MaxLatency)
	}
	if want := time.Unix(1764122401, 250000*1000); !st.MaxLatencyAt.Equal(want) {
		t.Fatalf("longest latency at %s, want %s", st.MaxLatencyAt, want)
	}
	if st.PerClient[0] != 1 || st.PerClient[1] != 2 {
		t.Fatalf("per client %v, want map[0:1 1:2]", st.PerClient)
	}

	// 251 ms ending at 1764122401.25 ran from 1764122401.0 - 1 ms.
	at := func(sec int64, ms int) time.Time { return time.Unix(sec, int64(ms)*int64(time.Millisecond)) }
	if got := st.MaxLatencyDuring(at(1764122400, 900), at(1764122401, 0)); got != 251*time.Millisecond {
		t.Fatalf("longest latency in flight before its end: %s, want 251ms", got)
	}
	if got := st.MaxLatencyDuring(at(1764122401, 300), at(1764122402, 0)); got != 0 {
		t.Fatalf("longest latency in a window without transactions: %s, want 0", got)
	}
	if got := st.MaxLatencyDuring(at(1764122403, 0), at(1764122404, 0)); got != 2040*time.Microsecond {
		t.Fatalf("longest latency in flight at 1764122403: %s, want 2.04ms", got)
	}

	if _, err := ParseTxLog(strings.NewReader("0 0 abc 0 1 2\n")); err == nil {
		t.Fatal("a latency that is neither a number nor failed/skipped was accepted")
	}
	if _, err := ParseTxLog(strings.NewReader("progress: 1.0 s\n")); err == nil {
		t.Fatal("a line that is not a transaction log line was accepted")
	}
}

func TestParseSummary(t *testing.T) {
	out := `pgbench (15.20 (Debian 15.20-0+deb12u1), server 17.10)
progress: 1.0 s, 185.0 tps, lat 8.557 ms stddev 9.170, 0 failed, lag 2.183 ms
pgbench: error: client 2 aborted in command 4 (SQL) of script 0; perhaps the backend died while processing
transaction type: <builtin: TPC-B (sort of)>
number of transactions actually processed: 11815
number of failed transactions: 3 (0.025%)
pgbench: error: Run was aborted; the above results are incomplete.
`
	s, ok := ParseSummary(out)
	if !ok || s.Processed != 11815 || s.Failed != 3 || len(s.Aborted) != 2 {
		t.Fatalf("summary %+v found=%v, want 11815 processed, 3 failed, 2 abort lines", s, ok)
	}
	if _, ok := ParseSummary("pgbench: error: connection to server failed\n"); ok {
		t.Fatal("output without totals read as a summary")
	}
	s, _ = ParseSummary("number of transactions actually processed: 120/400\n")
	if s.Processed != 120 {
		t.Fatalf("processed %d from \"120/400\", want 120", s.Processed)
	}
}

func TestTxStatsAdd(t *testing.T) {
	var sum TxStats
	sum.Add(TxStats{Committed: 2, Failed: 1, MaxLatency: time.Millisecond, PerClient: map[int]int{0: 2}})
	sum.Add(TxStats{Committed: 3, MaxLatency: 5 * time.Millisecond, PerClient: map[int]int{0: 1, 1: 2}})
	if sum.Committed != 5 || sum.Failed != 1 || sum.MaxLatency != 5*time.Millisecond || sum.PerClient[0] != 3 || sum.PerClient[1] != 2 {
		t.Fatalf("sum %+v", sum)
	}
}
