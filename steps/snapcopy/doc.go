// Package snapcopy is the machinery of the snapshot initial-copy method: it
// creates blue's logical slot with an exported snapshot, plans the copy
// (largest tables first, big tables split into block ranges), streams every
// part from blue's snapshot into green with parallel workers, and applies the
// post-data section (indexes, keys, triggers) once the rows are in.
//
// # Why the snapshot makes the copy exact
//
// CREATE_REPLICATION_SLOT ... EXPORT_SNAPSHOT returns the slot's consistent
// LSN and a snapshot that sees exactly the transactions committed before it.
// Workers import that snapshot (SET TRANSACTION SNAPSHOT), so green receives
// the rows as of the consistent point; a subscription created afterwards on
// the same slot with copy_data = false streams every change after it. No row
// is lost and none is applied twice.
//
// # Resuming after an interruption
//
// The exported snapshot lives only while the connection that created the slot
// stays open and idle (Snapshot.Close, or the process dying, ends it). A copy
// that stops half-way therefore cannot continue: the rows already on green
// belong to a snapshot nobody can import any more. Starting over is the only
// correct resume, and it is cheap to express:
//
//  1. TruncateTargets on green (empty every table the copy writes to);
//  2. DropSlot on blue (the slot's position belongs to the dead snapshot);
//  3. ExportSnapshot again and copy every part again.
//
// Reset does 1 and 2 together, in that order: while the slot exists, rows
// on green may come from an unfinished copy. Nothing is written to blue except the slot.
package snapcopy
