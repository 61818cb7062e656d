// Package verify compares the replicated tables of blue and green.
//
// Two modes: count compares row counts; checksum compares an
// order-independent hash of every row. Both work the same way:
//
//   - Planning. A table with a primary key whose columns sort the same on
//     both sides (no collation, or the "C"/"POSIX" collation) is split into
//     primary-key ranges of about Options.ChunkBytes: a single integer key by
//     splitting min..max, any other key by quantiles of a TABLESAMPLE of the
//     key. A table keyed by collatable text (whose order may differ between
//     the two servers' collation libraries) or with no primary key (replica
//     identity full) is read in one scan per side, grouped into hash buckets
//     of about Options.ChunkBytes each.
//   - Hashing. Each segment is aggregated in SQL on both sides at the same
//     time: count(*) and sum(hashtextextended(ROW(columns)::text, 0)), so no
//     rows travel to pgshift and both servers scan in parallel. Workers
//     (Options.Workers, one connection per side each) take segments largest
//     table first, so verifying costs about one scan of each side.
//   - Re-checking. Blue keeps taking writes, so a mismatching segment is not
//     yet a difference. Its rows (key and row hash) are read from blue, then
//     blue's WAL position, then, once green has applied past that position
//     (its subscription's replication origin, or the slot's confirmed flush
//     position on blue), from green. The keys that still differ are re-read in
//     rounds, blue-green-blue around the same wait: a key is consistent when
//     green holds one of the two blue values around it, and a real difference
//     when blue held still across the round and green still differed, twice.
//     Keys that never settle (updated faster than a round) are reported as
//     unsettled, never as equal.
//
// The text form of a row must be the same on both versions for the same
// data. Every connection pins the settings that text output depends on
// (DateStyle, IntervalStyle, TimeZone, extra_float_digits, bytea_output,
// lc_monetary, search_path) before hashing. Known limits:
//
//   - float4/float8 (also inside arrays, composites and geometric types):
//     PostgreSQL 12 and later print the shortest exact form when
//     extra_float_digits > 0; 11 and older print 15+extra_float_digits
//     significant digits (0.1 prints as 0.100000000000000006). Floats
//     compare equal only between 12+ servers. Checksum mode needs blue 11
//     or later (hashtextextended).
//   - hashtextextended hashes bytes with word loads: blue and green must have
//     the same byte order (every x86-64 and arm64 server does).
//   - oid columns and reg* types print names resolved on each side; with
//     search_path pinned to pg_catalog both sides print qualified names,
//     so objects must exist on both (they do after a schema copy).
//   - Columns are hashed in blue's column order by name, so a different
//     physical order on green does not matter; columns only green has are
//     not compared.
//   - Stored generated columns are recomputed on green, not replicated; they
//     compare equal when the expression gives the same result.
package verify
