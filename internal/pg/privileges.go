package pg

import (
	"context"
	"fmt"
)

// cloudAdminRoles are the roles managed clouds give their admin user in
// place of SUPERUSER; before PostgreSQL 16 their patched servers let
// members create subscriptions.
var cloudAdminRoles = []string{"rds_superuser", "cloudsqlsuperuser", "azure_pg_admin", "alloydbsuperuser"}

// SubscriptionRights says whether the connected role may create a
// subscription in its database, and why not: superusers may; from 16 on,
// members of pg_create_subscription with CREATE on the database; before
// 16, on managed clouds, members of the cloud's admin role.
type SubscriptionRights struct {
	OK        bool
	Superuser bool   // a superuser: no password needed in the conninfo
	Why       string // when not OK: what is missing and how to grant it
}

func CheckSubscriptionRights(ctx context.Context, db Querier) (SubscriptionRights, error) {
	var super, member, create, cloud bool
	var major int
	var user, database string
	err := db.QueryRow(ctx, `
SELECT r.rolsuper,
       current_setting('server_version_num')::int / 10000,
       current_user,
       current_database(),
       coalesce(pg_has_role(current_user, to_regrole('pg_create_subscription'), 'MEMBER'), false),
       has_database_privilege(current_database(), 'CREATE'),
       EXISTS (SELECT 1 FROM unnest($1::text[]) c(name)
                WHERE to_regrole(c.name) IS NOT NULL AND pg_has_role(current_user, to_regrole(c.name), 'MEMBER'))
  FROM pg_roles r WHERE r.rolname = current_user`, cloudAdminRoles).Scan(&super, &major, &user, &database, &member, &create, &cloud)
	if err != nil {
		return SubscriptionRights{}, fmt.Errorf("read the privileges of the connected role: %w", err)
	}
	switch {
	case super:
		return SubscriptionRights{OK: true, Superuser: true}, nil
	case major >= 16 && member && create:
		return SubscriptionRights{OK: true}, nil
	case major >= 16 && !member:
		return SubscriptionRights{Why: fmt.Sprintf("role %s is neither superuser nor a member of pg_create_subscription: GRANT pg_create_subscription TO %s", user, ShowIdent(user))}, nil
	case major >= 16:
		return SubscriptionRights{Why: fmt.Sprintf("role %s lacks CREATE on database %s: GRANT CREATE ON DATABASE %s TO %s", user, database, QuoteIdent(database), ShowIdent(user))}, nil
	case cloud:
		return SubscriptionRights{OK: true}, nil
	}
	return SubscriptionRights{Why: fmt.Sprintf("PostgreSQL %d lets only superusers create subscriptions, and role %s is not one (on RDS a member of rds_superuser may; Cloud SQL: cloudsqlsuperuser; Azure: azure_pg_admin)", major, user)}, nil
}

// SubscriptionPrecondition is the precondition of creating a subscription
// on db (named side, "green" or "blue") that connects to the other side,
// with or without a password: a subscription owned by a non-superuser must
// authenticate with a password (password_required), so trust or
// certificate authentication is refused there.
func SubscriptionPrecondition(rights SubscriptionRights, side, otherSide, passwordEnvField string, hasPassword bool) (name string, ok bool, detail string) {
	name = "the role on " + side + " may create its subscription"
	switch {
	case !rights.OK:
		return name, false, rights.Why
	case !rights.Superuser && !hasPassword:
		return name, false, fmt.Sprintf("the subscription on %s is owned by a role that is not superuser, and PostgreSQL then requires a password in its connection string to %s (password_required; a passfile does not count): set %s, or connect to %s as a superuser to keep the password out of the catalog with a passfile", side, otherSide, passwordEnvField, side)
	case rights.Superuser:
		return name, true, "superuser"
	}
	return name, true, "not superuser, with the grants a subscription needs and a password for " + otherSide
}

// ConninfoHasPassword says whether a connection string carries a password
// itself: what PostgreSQL demands of a subscription whose owner is not
// superuser (CREATE SUBSCRIPTION checks for password=; a passfile or a
// service entry does not count).
func ConninfoHasPassword(dsn string) bool {
	kv, err := ParseConninfo(dsn)
	return err == nil && kv["password"] != ""
}
