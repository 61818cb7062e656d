package steps

import (
	"testing"

	"github.com/pgshift/pgshift/engine"
	"github.com/pgshift/pgshift/spec"
)

// A subscription_dsn usually changes only where the server is: the
// database and the user come from dsn when it leaves them out.
func TestPeerDSN(t *testing.T) {
	cases := []struct {
		ep    spec.Endpoint
		want  string
		field string
	}{
		{spec.Endpoint{DSN: "postgres://replicator@bastion:15432/orders"},
			"postgres://replicator@bastion:15432/orders", "source.dsn"},
		{spec.Endpoint{DSN: "postgres://replicator@bastion:15432/orders", SubscriptionDSN: "host=blue.internal port=5432"},
			"host=blue.internal port=5432 dbname=orders user=replicator", "source.subscription_dsn"},
		{spec.Endpoint{DSN: "postgres://replicator@bastion:15432/orders", SubscriptionDSN: "postgres://repl2@blue.internal/orders_copy?sslmode=require"},
			"host=blue.internal dbname=orders_copy user=repl2 sslmode=require", "source.subscription_dsn"},
	}
	for _, c := range cases {
		got, field, err := peerDSN(engine.NewDatabase("blue", c.ep))
		if err != nil || got != c.want || field != c.field {
			t.Errorf("%+v: %q from %s (%v), want %q from %s", c.ep, got, field, err, c.want, c.field)
		}
	}
}
