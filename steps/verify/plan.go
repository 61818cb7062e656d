package verify

import (
	"context"
	"fmt"
	"math"
	"math/big"
	"strconv"
)

// maxBuckets bounds the groups of a bucketed table's aggregate.
const maxBuckets = 16384

// maxSampleRows bounds the keys read to plan the ranges of one table.
const maxSampleRows = 500000

// chunksFor is how many segments of about chunkBytes a table of bytes needs.
func chunksFor(bytes, chunkBytes int64) int64 {
	if chunkBytes <= 0 || bytes <= chunkBytes {
		return 1
	}
	return (bytes + chunkBytes - 1) / chunkBytes
}

// nextPow2 is the smallest power of two >= n, at most max.
func nextPow2(n, max int64) int64 {
	p := int64(1)
	for p < n && p < max {
		p <<= 1
	}
	return p
}

// planSegments splits a described table into segments.
func planSegments(ctx context.Context, blue *side, t *tableInfo, mode Mode, chunkBytes int64) error {
	n := chunksFor(t.Bytes, chunkBytes)
	if t.NoColumns {
		// No columns: every row is alike, so equal counts are equal
		// contents. One count per side (in checksum mode the sum of the
		// rows' hashes is the count times the hash of ROW()).
		t.Buckets = 1
		t.Segments = []segment{{info: t}}
		return nil
	}
	if !t.Ordered {
		t.Buckets = nextPow2(n, maxBuckets)
		if len(t.KeyCols) == 0 && mode == ModeCount {
			t.Buckets = 1 // nothing identifies a row without hashing it: one count
		}
		t.Segments = []segment{{info: t}}
		return nil
	}
	var bounds [][]string
	var err error
	if n > 1 {
		if len(t.KeyCols) == 1 && t.KeyCols[0].Integer {
			bounds, err = integerBounds(ctx, blue, t, n)
		} else {
			bounds, err = sampledBounds(ctx, blue, t, n)
		}
		if err != nil {
			return err
		}
	}
	t.Segments = segmentsBetween(t, bounds)
	return nil
}

// segmentsBetween turns ascending bounds b1..bk into k+1 segments that cover
// every possible key: (< b1), [b1, b2), ..., (>= bk). Open ends also catch
// keys written outside the range seen while planning.
func segmentsBetween(t *tableInfo, bounds [][]string) []segment {
	segs := make([]segment, 0, len(bounds)+1)
	var lo []string
	for _, b := range bounds {
		segs = append(segs, segment{info: t, lo: lo, hi: b})
		lo = b
	}
	return append(segs, segment{info: t, lo: lo})
}

// integerBounds splits min..max of a single integer key evenly.
func integerBounds(ctx context.Context, blue *side, t *tableInfo, n int64) ([][]string, error) {
	k := colRef(t.KeyCols[0].Name)
	var lo, hi *int64
	q := "SELECT min(" + k + ")::int8, max(" + k + ")::int8 FROM " + segment{info: t}.from()
	if err := blue.conn.QueryRow(ctx, q).Scan(&lo, &hi); err != nil {
		return nil, fmt.Errorf("blue: key range of %s: %w", t, err)
	}
	if lo == nil || hi == nil {
		return nil, nil // empty on blue: one segment
	}
	// Sparse keys (far more values in range than rows) would leave most
	// even-width ranges empty and a few huge: split by sampled quantiles.
	if t.EstRows > 0 && float64(*hi)-float64(*lo) > 4*t.EstRows {
		return sampledBounds(ctx, blue, t, n)
	}
	return splitIntegerRange(*lo, *hi, n), nil
}

// splitIntegerRange returns up to n-1 ascending, distinct inner bounds that
// split lo..hi (inclusive) into n ranges of equal width.
func splitIntegerRange(lo, hi, n int64) [][]string {
	if n <= 1 || hi <= lo {
		return nil
	}
	span := new(big.Int).Sub(big.NewInt(hi), big.NewInt(lo))
	span.Add(span, big.NewInt(1))
	step := new(big.Int).Add(span, big.NewInt(n-1))
	step.Div(step, big.NewInt(n)) // ceil(span / n) >= 1
	var out [][]string
	b := big.NewInt(lo)
	bigHi := big.NewInt(hi)
	for i := int64(1); i < n; i++ {
		b.Add(b, step)
		if b.Cmp(bigHi) > 0 {
			break
		}
		out = append(out, []string{b.String()})
	}
	return out
}

// sampledBounds picks n-1 quantiles of the key from a block sample.
func sampledBounds(ctx context.Context, blue *side, t *tableInfo, n int64) ([][]string, error) {
	est := t.EstRows
	if est <= 0 {
		est = float64(t.Bytes) / 64 // never analyzed: assume narrow rows
	}
	// SYSTEM sampling reads whole pages, whose rows sit next to each other in
	// key order when the table was loaded in order: sample enough pages
	// (8 per segment), not just enough rows, for even segments; but bound
	// the keys read.
	pages := math.Max(1, float64(t.Bytes)/8192)
	pct := 100 * math.Max(float64(n*40)/est, float64(n*8)/pages)
	pct = math.Min(pct, 100*maxSampleRows/est)
	for attempt := 0; ; attempt++ {
		if pct > 100 {
			pct = 100
		}
		if pct < 0.0001 {
			pct = 0.0001
		}
		q := "SELECT " + keyTexts(t) + " FROM " + segment{info: t}.from() + " TABLESAMPLE SYSTEM (" +
			strconv.FormatFloat(pct, 'f', -1, 64) + ") ORDER BY " + colList(t.KeyCols)
		rows, err := blue.conn.Query(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("blue: sample keys of %s: %w", t, err)
		}
		var sample [][]string
		for rows.Next() {
			vals := make([]string, len(t.KeyCols))
			ptrs := make([]any, len(vals))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				rows.Close()
				return nil, fmt.Errorf("blue: sample keys of %s: %w", t, err)
			}
			sample = append(sample, vals)
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("blue: sample keys of %s: %w", t, err)
		}
		// Too few rows for the estimate (stale statistics): sample more.
		if int64(len(sample)) < n && pct < 100 && attempt < 3 {
			pct *= 10
			continue
		}
		return quantiles(sample, n), nil
	}
}

// quantiles picks up to n-1 distinct inner bounds from a sorted sample.
func quantiles(sample [][]string, n int64) [][]string {
	if len(sample) < 2 || n <= 1 {
		return nil
	}
	var out [][]string
	for i := int64(1); i < n; i++ {
		b := sample[int(i*int64(len(sample))/n)]
		if len(out) > 0 && joinID(out[len(out)-1]) == joinID(b) {
			continue
		}
		out = append(out, b)
	}
	// A first bound equal to the smallest sampled key would give an empty
	// first segment: harmless, keep it simple.
	return out
}
