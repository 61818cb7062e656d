package snapcopy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgshift/pgshift/internal/pg"
)

// TruncateTargets empties the given tables on green (a partitioned table
// with all its partitions) in one statement, so that a copy can start over.
// It does not cascade: a table outside the list that references one of them
// makes it fail, naming that table, rather than silently emptying it too.
func TruncateTargets(ctx context.Context, green pg.Querier, targets []Relation) error {
	if len(targets) == 0 {
		return nil
	}
	seen := map[Relation]bool{}
	var idents []string
	for _, r := range targets {
		if !seen[r] {
			seen[r] = true
			idents = append(idents, r.Ident())
		}
	}
	if _, err := green.Exec(ctx, "TRUNCATE "+strings.Join(idents, ", ")); err != nil {
		// The referencing table is named in the detail, which PgError's
		// message leaves out.
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && strings.Contains(pgErr.Message, "foreign key") && pgErr.Detail != "" {
			return fmt.Errorf("green: empty %d copied tables before copying again: %w: %s (a table outside the copy references one of them: empty it too, or drop its foreign key, then run again)",
				len(idents), err, pgErr.Detail)
		}
		return fmt.Errorf("green: empty %d copied tables before copying again: %w", len(idents), err)
	}
	return nil
}

// Targets lists the distinct target tables of a copy, in first-seen order.
func Targets(tables []Table) []Relation {
	seen := map[Relation]bool{}
	var out []Relation
	for _, t := range tables {
		if !seen[t.Target] {
			seen[t.Target] = true
			out = append(out, t.Target)
		}
	}
	return out
}

// Reset prepares a clean restart after an interrupted copy: it empties the
// copied tables on green, then drops the slot on blue (its snapshot is gone).
// Then ExportSnapshot and a new copy start from scratch. The slot goes last
// so that while it exists, green may hold rows of an unfinished copy: a
// caller that finds the slot knows to Reset, and one that finds no slot but
// rows on green knows they are not pgshift's. Both actions are idempotent,
// so Reset itself may be interrupted and run again.
func Reset(ctx context.Context, blue, green pg.Querier, slot string, targets []Relation) error {
	if err := TruncateTargets(ctx, green, targets); err != nil {
		return err
	}
	err := pg.DropSlot(ctx, nil, blue, slot, 30*time.Second)
	return err
}
