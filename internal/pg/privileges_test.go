package pg

import (
	"strings"
	"testing"
)

func TestSubscriptionPrecondition(t *testing.T) {
	for _, tc := range []struct {
		rights   SubscriptionRights
		password bool
		ok       bool
		want     string
	}{
		{SubscriptionRights{OK: true, Superuser: true}, false, true, "superuser"},
		{SubscriptionRights{OK: true}, true, true, "not superuser"},
		{SubscriptionRights{OK: true}, false, false, "set source.password_env"},
		{SubscriptionRights{Why: "role x is neither superuser nor a member of pg_create_subscription"}, true, false, "pg_create_subscription"},
	} {
		_, ok, detail := SubscriptionPrecondition(tc.rights, "green", "blue", "source.password_env", tc.password)
		if ok != tc.ok || !strings.Contains(detail, tc.want) {
			t.Errorf("%+v password %t: ok %t %q, want %t with %q", tc.rights, tc.password, ok, detail, tc.ok, tc.want)
		}
	}
}
