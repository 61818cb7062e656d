package engine

import (
	"testing"

	"github.com/pgshift/pgshift/spec"
)

// A subscription on the other side uses subscription_dsn when the spec sets
// one, and names the field it took in its errors.
func TestPeerDSN(t *testing.T) {
	cases := []struct {
		role string
		ep   spec.Endpoint
		dsn  string
		from string
	}{
		{"blue", spec.Endpoint{DSN: "postgres://u@bastion:15432/db"}, "postgres://u@bastion:15432/db", "source.dsn"},
		{"blue", spec.Endpoint{DSN: "postgres://u@bastion:15432/db", SubscriptionDSN: "host=blue.internal dbname=db"}, "host=blue.internal dbname=db user=u", "source.subscription_dsn"},
		{"green", spec.Endpoint{DSN: "postgres://u@green:5432/db"}, "postgres://u@green:5432/db", "target.dsn"},
		{"green", spec.Endpoint{DSN: "postgres://u@green:5432/db", SubscriptionDSN: "host=10.0.0.7 dbname=db"}, "host=10.0.0.7 dbname=db user=u", "target.subscription_dsn"},
		{"blue", spec.Endpoint{DSN: "postgres://replicator@bastion:15432/orders", SubscriptionDSN: "host=blue.internal port=5432"},
			"host=blue.internal port=5432 dbname=orders user=replicator", "source.subscription_dsn"},
		{"blue", spec.Endpoint{DSN: "postgres://replicator@bastion:15432/orders", SubscriptionDSN: "postgres://repl2@blue.internal/orders_copy?sslmode=require"},
			"host=blue.internal dbname=orders_copy user=repl2 sslmode=require", "source.subscription_dsn"},
	}
	for _, c := range cases {
		dsn, from, err := NewDatabase(c.role, c.ep).PeerDSN()
		if err != nil || dsn != c.dsn || from != c.from {
			t.Errorf("%s %+v: PeerDSN = %q from %s, want %q from %s", c.role, c.ep, dsn, from, c.dsn, c.from)
		}
	}
}
