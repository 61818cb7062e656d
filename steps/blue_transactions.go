package steps

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/pgshift/pgshift/internal/pg"
	"github.com/pgshift/pgshift/internal/words"
)

// openTx is a transaction open on blue, as pg_stat_activity (or, for a
// prepared transaction, pg_prepared_xacts) shows it.
type openTx struct {
	PID      int32  // 0 for a prepared transaction
	GID      string // a prepared transaction's name
	Age      time.Duration
	State    string
	App      string
	Query    string // the first part, secrets hidden
	HoldsXID bool   // has a transaction id: logical slot creation waits for it
}

// queryShown is how much of a query the messages show.
const queryShown = 60

// secretRE finds statements whose text may carry a secret.
var secretRE = regexp.MustCompile(`(?i)password|secret|sslkey|passfile|pgp_sym|encrypt|decrypt`)

func shownQuery(q string) string {
	if secretRE.MatchString(q) {
		return "(hidden: the statement may carry a secret)"
	}
	q = strings.Join(strings.Fields(q), " ")
	if r := []rune(q); len(r) > queryShown {
		q = string(r[:queryShown]) + "..."
	}
	return q
}

func (tx openTx) String() string {
	age := tx.Age.Round(time.Second).String()
	if tx.PID == 0 {
		return fmt.Sprintf("prepared transaction %s (prepared %s ago; COMMIT PREPARED %s or ROLLBACK PREPARED %s ends it)",
			pg.QuoteLiteral(tx.GID), age, pg.QuoteLiteral(tx.GID), pg.QuoteLiteral(tx.GID))
	}
	app := tx.App
	if app == "" {
		app = "no application_name"
	} else {
		app = fmt.Sprintf("application %q", app)
	}
	s := fmt.Sprintf("pid %d (%s, open %s, %s", tx.PID, app, age, tx.State)
	if tx.Query != "" {
		s += fmt.Sprintf(", query %q", tx.Query)
	}
	return s + ")"
}

// listOpenTx lists the transactions open on blue since before `since` (blue's
// clock), oldest first, leaving out the backend with pid `except` (0: none)
// and the caller's own. With xidOnly, only those holding a transaction id: a
// logical slot's creation waits for exactly those (a read-only transaction
// holds back vacuum, not the slot). Prepared transactions hold one too.
func listOpenTx(ctx context.Context, db pg.Querier, since time.Time, except int32, xidOnly bool) ([]openTx, error) {
	rows, err := db.Query(ctx, `
SELECT a.pid, extract(epoch FROM now() - a.xact_start)::float8, coalesce(a.state, ''),
       coalesce(a.application_name, ''), coalesce(a.query, ''), a.backend_xid IS NOT NULL, ''
  FROM pg_stat_activity a
 WHERE a.xact_start < $1 AND a.pid <> pg_backend_pid() AND a.pid <> $2
   AND a.backend_type = 'client backend'
   AND (a.backend_xid IS NOT NULL OR NOT $3)
UNION ALL
SELECT 0, extract(epoch FROM now() - p.prepared)::float8, 'prepared', '', '', true, p.gid
  FROM pg_prepared_xacts p
 WHERE p.prepared < $1
 ORDER BY 2 DESC`, since, except, xidOnly)
	if err != nil {
		return nil, fmt.Errorf("read open transactions (pg_stat_activity): %w", err)
	}
	defer rows.Close()
	var out []openTx
	for rows.Next() {
		var tx openTx
		var secs float64
		if err := rows.Scan(&tx.PID, &secs, &tx.State, &tx.App, &tx.Query, &tx.HoldsXID, &tx.GID); err != nil {
			return nil, fmt.Errorf("read open transactions: %w", err)
		}
		tx.Age = time.Duration(secs * float64(time.Second))
		tx.Query = shownQuery(tx.Query)
		out = append(out, tx)
	}
	return out, rows.Err()
}

// describeOpenTx lists up to five transactions, for messages.
func describeOpenTx(txs []openTx) string {
	var parts []string
	for i, tx := range txs {
		if i == 5 {
			parts = append(parts, fmt.Sprintf("and %d more", len(txs)-5))
			break
		}
		parts = append(parts, tx.String())
	}
	return strings.Join(parts, "; ")
}

// endTxFix is the way to end the first of txs now.
func endTxFix(txs []openTx) string {
	for _, tx := range txs {
		if tx.PID != 0 {
			return fmt.Sprintf("end %s or wait for %s (SELECT pg_terminate_backend(%d) ends the first)",
				words.Pick(len(txs), "it", "them"), words.Pick(len(txs), "it", "them"), tx.PID)
		}
	}
	return "finish the prepared " + words.Pick(len(txs), "transaction", "transactions")
}
