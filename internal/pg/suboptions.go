package pg

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// subOption is one CREATE SUBSCRIPTION parameter a spec may set through
// replication.options, with the first green major that accepts it.
type subOption struct {
	since  int                  // first PostgreSQL major that accepts the option
	values func(v string) error // nil: any value
	// valueSince lists values that need a later major than the option itself
	// (streaming = parallel: 16).
	valueSince map[string]int
}

// subscriptionOptions is the matrix from the CREATE SUBSCRIPTION reference
// of each major (10 through 18). copy_data, create_slot, slot_name, connect
// and enabled are pgshift's to set and are refused in the spec.
var subscriptionOptions = map[string]subOption{
	"synchronous_commit": {since: 10, values: subOptOneOf("local", "remote_write", "remote_apply", "on", "off")},
	"binary":             {since: 14, values: subOptBool},
	"streaming":          {since: 14, values: subOptOneOf("on", "off", "true", "false", "parallel"), valueSince: map[string]int{"parallel": 16}},
	"two_phase":          {since: 15, values: subOptBool},
	"disable_on_error":   {since: 15, values: subOptBool},
	"origin":             {since: 16, values: subOptOneOf("none", "any")},
	"password_required":  {since: 16, values: subOptBool},
	"run_as_owner":       {since: 16, values: subOptBool},
	"failover":           {since: 17, values: subOptBool},
}

// reservedSubscriptionOptions are set by pgshift itself; the message says
// where the spec controls them instead.
var reservedSubscriptionOptions = map[string]string{
	"copy_data":   "pgshift sets copy_data = true (replication.initial_copy.method chooses how rows are copied)",
	"create_slot": "pgshift creates the slot itself in source.slot (create_slot = false)",
	"slot_name":   "set replication.slot instead",
	"connect":     "the subscription must connect to replicate",
	"enabled":     "the subscription must be enabled to replicate",
}

// UnsupportedOptionError says that green's major does not accept a
// subscription option (or one of its values) the spec sets.
type UnsupportedOptionError struct {
	Option, Value string
	Since, Green  int
}

func (e *UnsupportedOptionError) Error() string {
	if e.Value != "" {
		return fmt.Sprintf("replication.options.%s: %q needs PostgreSQL %d or later on green, which runs PostgreSQL %d: remove it or use a newer green",
			e.Option, e.Value, e.Since, e.Green)
	}
	return fmt.Sprintf("replication.options.%s: needs PostgreSQL %d or later on green, which runs PostgreSQL %d: remove it or use a newer green",
		e.Option, e.Since, e.Green)
}

// SubscriptionWithOptions validates the spec's options against green's
// major and returns them as "name = 'value'" clauses in a stable order.
func SubscriptionWithOptions(opts map[string]string, greenMajor int) ([]string, error) {
	names := make([]string, 0, len(opts))
	for k := range opts {
		names = append(names, k)
	}
	sort.Strings(names)
	var out []string
	for _, name := range names {
		value := opts[name]
		if why, ok := reservedSubscriptionOptions[name]; ok {
			return nil, fmt.Errorf("replication.options.%s: cannot be set in the spec: %s", name, why)
		}
		o, ok := subscriptionOptions[name]
		if !ok {
			return nil, fmt.Errorf("replication.options.%s: unknown subscription option (known: %s)", name, strings.Join(KnownSubscriptionOptions(), ", "))
		}
		if greenMajor < o.since {
			return nil, &UnsupportedOptionError{Option: name, Since: o.since, Green: greenMajor}
		}
		v := strings.ToLower(strings.TrimSpace(value))
		if o.values != nil {
			if err := o.values(v); err != nil {
				return nil, fmt.Errorf("replication.options.%s: %w", name, err)
			}
		}
		if since, ok := o.valueSince[v]; ok && greenMajor < since {
			return nil, &UnsupportedOptionError{Option: name, Value: v, Since: since, Green: greenMajor}
		}
		out = append(out, name+" = "+QuoteLiteral(v))
	}
	return out, nil
}

// notReversed are forward options left off the reverse subscription:
// failover makes the publisher's slot survive a failover of the publisher
// (on the reverse that is green's slot, which pgshift creates itself), and binary from a newer publisher to an older subscriber
// fails on any type whose binary form the older major cannot read, while
// the reverse carries only green's new writes, where binary gains little.
var notReversed = map[string]string{
	"binary":   "binary rows from green's newer major can fail on blue's older one, and the reverse carries only green's new writes",
	"failover": "it concerns the publisher's slot, and the reverse slot on green is pgshift's own",
}

// ReverseSubscriptionOptions returns the spec's options that blue's major
// accepts, as clauses for the reverse subscription (which lives on blue),
// and a note for each option left out. The spec's options were written
// for green, so an option blue's version lacks is skipped, not an error.
func ReverseSubscriptionOptions(opts map[string]string, blueMajor int) (clauses, skipped []string, err error) {
	names := make([]string, 0, len(opts))
	for k := range opts {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		if why, ok := notReversed[name]; ok {
			skipped = append(skipped, name+": not used on the reverse subscription, "+why)
			continue
		}
		c, err := SubscriptionWithOptions(map[string]string{name: opts[name]}, blueMajor)
		var unsupported *UnsupportedOptionError
		switch {
		case errors.As(err, &unsupported):
			what := name
			if unsupported.Value != "" {
				what = fmt.Sprintf("%s = %s", name, unsupported.Value)
			}
			skipped = append(skipped, fmt.Sprintf("%s: not used on the reverse subscription, blue's PostgreSQL %d lacks it (needs %d)", what, blueMajor, unsupported.Since))
		case err != nil:
			return nil, nil, err
		default:
			clauses = append(clauses, c...)
		}
	}
	return clauses, skipped, nil
}

func KnownSubscriptionOptions() []string {
	var names []string
	for k := range subscriptionOptions {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

func subOptBool(v string) error {
	switch v {
	case "true", "false", "on", "off", "1", "0", "yes", "no":
		return nil
	}
	return fmt.Errorf("%q is not a boolean (use true or false)", v)
}

func subOptOneOf(allowed ...string) func(string) error {
	return func(v string) error {
		for _, a := range allowed {
			if v == a {
				return nil
			}
		}
		return fmt.Errorf("%q is not one of %s", v, strings.Join(allowed, ", "))
	}
}

// OptionSince is the first major that accepts the subscription option name
// set to value (0 for an option the matrix does not know).
func OptionSince(name, value string) int {
	o, ok := subscriptionOptions[name]
	if !ok {
		return 0
	}
	if s, ok := o.valueSince[value]; ok {
		return s
	}
	return o.since
}
