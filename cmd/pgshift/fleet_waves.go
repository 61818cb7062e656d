package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
)

// splitWaves cuts n databases, in inventory order, into waves: the first
// canary of them (none when canary is 0), then the rest in waves of
// waveSize (0: all the rest in one wave).
func splitWaves(n, canary, waveSize int) [][]int {
	var waves [][]int
	i := 0
	if canary > 0 && n > 0 {
		k := min(canary, n)
		waves = append(waves, seq(0, k))
		i = k
	}
	for i < n {
		k := n - i
		if waveSize > 0 {
			k = min(waveSize, k)
		}
		waves = append(waves, seq(i, i+k))
		i += k
	}
	return waves
}

func seq(from, to int) []int {
	s := make([]int, 0, to-from)
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

// maxFailures is --max-failures: how many failed databases a wave may have
// before no further wave starts, as a count ("0", "2") or a percentage of
// the wave ("10%").
type maxFailures struct {
	count   int
	percent float64
	isPct   bool
}

func parseMaxFailures(s string) (maxFailures, error) {
	s = strings.TrimSpace(s)
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || v < 0 || v > 100 || math.IsNaN(v) {
			return maxFailures{}, fmt.Errorf("--max-failures %q: want a count (2) or a percentage of the wave from 0%% to 100%% (10%%)", s)
		}
		return maxFailures{percent: v, isPct: true}, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return maxFailures{}, fmt.Errorf("--max-failures %q: want a count (2) or a percentage of the wave from 0%% to 100%% (10%%)", s)
	}
	return maxFailures{count: n}, nil
}

// exceeded says whether failed databases out of a wave of size pass the
// limit: no further wave starts then.
func (m maxFailures) exceeded(failed, size int) bool {
	if m.isPct {
		return float64(failed)*100 > m.percent*float64(size)
	}
	return failed > m.count
}

func (m maxFailures) String() string {
	if m.isPct {
		return strconv.FormatFloat(m.percent, 'f', -1, 64) + "%"
	}
	return strconv.Itoa(m.count)
}

// waveRun is how a fleet run went: each database's result (nil: not
// started), where it stopped, and the most databases that ran at once.
type waveRun struct {
	results     []*dbResult
	stoppedWave int // the 1-based wave whose failures stopped the run; 0: not stopped
	failures    int // in that wave
	waves       int
	peak        int
}

// runWaves runs the databases wave after wave, at most parallel at once
// within a wave; a wave starts only once the previous one has finished and
// its failures stayed within limit. run is called in its own goroutine for
// each database; done, called under a lock as each finishes, may print.
// An interrupt (ctx ends) starts no further database.
func runWaves(ctx context.Context, n int, waves [][]int, parallel int, limit maxFailures,
	run func(ctx context.Context, i int) *dbResult, done func(i int, r *dbResult)) *waveRun {
	out := &waveRun{results: make([]*dbResult, n), waves: len(waves)}
	var mu sync.Mutex
	running := 0
	for w, wave := range waves {
		if ctx.Err() != nil {
			break
		}
		sem := make(chan struct{}, max(parallel, 1))
		var wg sync.WaitGroup
		for _, i := range wave {
			// Wait for a free slot, or stop starting on an interrupt.
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
			}
			if ctx.Err() != nil {
				break
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				mu.Lock()
				running++
				out.peak = max(out.peak, running)
				mu.Unlock()
				r := run(ctx, i)
				mu.Lock()
				running--
				out.results[i] = r
				done(i, r)
				mu.Unlock()
			}()
		}
		wg.Wait()
		failed := 0
		for _, i := range wave {
			if r := out.results[i]; r != nil && r.kind != failNone {
				failed++
			}
		}
		if failed > 0 && w < len(waves)-1 && limit.exceeded(failed, len(wave)) {
			out.stoppedWave, out.failures = w+1, failed
			break
		}
	}
	return out
}

// errFleetUsage is what flags that only mean something over an inventory
// say without one.
var errFleetUsage = errors.New("takes effect with --inventory only")
