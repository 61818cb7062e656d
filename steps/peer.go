package steps

import (
	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/internal/pg"
)

// peerDSN is how the other side's server, and the switch, reach a database:
// its subscription_dsn when the spec sets one, else its dsn; field names
// the spec field, for messages. A subscription_dsn that leaves out the
// database or the user takes them from dsn: it usually changes only where
// the server is, and password_env belongs to dsn's user.
func peerDSN(db *engine.Database) (dsn, field string, err error) {
	dsn, field = db.PeerDSN()
	if db.SubscriptionDSN == "" {
		return dsn, field, nil
	}
	kv, err := pg.ParseConninfo(dsn)
	if err != nil {
		return "", field, err
	}
	if base, err := pg.ParseConninfo(db.DSN); err == nil {
		for _, k := range []string{"dbname", "user"} {
			if kv[k] == "" && base[k] != "" {
				kv[k] = base[k]
			}
		}
	}
	return pg.FormatConninfo(kv), field, nil
}
