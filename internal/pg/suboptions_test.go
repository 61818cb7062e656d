package pg

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

func TestSubscriptionOptionsByGreenMajor(t *testing.T) {
	cases := []struct {
		opts  map[string]string
		green int
		want  string // WITH clauses, or "" when an error is expected
		since int    // the UnsupportedOptionError's Since, 0 for other errors
	}{
		{map[string]string{"binary": "true", "streaming": "on"}, 14, "binary = 'true', streaming = 'on'", 0},
		{map[string]string{"binary": "true"}, 13, "", 14},
		{map[string]string{"streaming": "parallel"}, 15, "", 16},
		{map[string]string{"streaming": "Parallel"}, 16, "streaming = 'parallel'", 0},
		{map[string]string{"disable_on_error": "true", "two_phase": "false"}, 15, "disable_on_error = 'true', two_phase = 'false'", 0},
		{map[string]string{"disable_on_error": "true"}, 14, "", 15},
		{map[string]string{"origin": "none", "run_as_owner": "true", "password_required": "false"}, 16, "origin = 'none', password_required = 'false', run_as_owner = 'true'", 0},
		{map[string]string{"origin": "none"}, 15, "", 16},
		{map[string]string{"failover": "true"}, 16, "", 17},
		{map[string]string{"failover": "true"}, 18, "failover = 'true'", 0},
		{map[string]string{"synchronous_commit": "off"}, 13, "synchronous_commit = 'off'", 0},
	}
	for _, c := range cases {
		got, err := SubscriptionWithOptions(c.opts, c.green)
		if c.want != "" {
			if err != nil || strings.Join(got, ", ") != c.want {
				t.Errorf("%v on %d: got %q, %v; want %q", c.opts, c.green, got, err, c.want)
			}
			continue
		}
		var ue *UnsupportedOptionError
		if !errors.As(err, &ue) || ue.Since != c.since || ue.Green != c.green {
			t.Errorf("%v on %d: want an UnsupportedOptionError (since %d), got %v", c.opts, c.green, c.since, err)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "PostgreSQL "+strconv.Itoa(c.green)) || !strings.Contains(msg, "replication.options.") {
			t.Errorf("message must name green's version and the option: %s", msg)
		}
	}
}

func TestSubscriptionOptionsRefused(t *testing.T) {
	for _, c := range []struct {
		opts map[string]string
		want string
	}{
		{map[string]string{"slot_name": "x"}, "replication.slot"},
		{map[string]string{"copy_data": "false"}, "copy_data"},
		{map[string]string{"create_slot": "true"}, "source.slot"},
		{map[string]string{"enabled": "false"}, "enabled"},
		{map[string]string{"retain_dead_tuples": "true"}, "unknown subscription option"},
		{map[string]string{"binary": "maybe"}, "not a boolean"},
		{map[string]string{"origin": "some"}, "not one of none, any"},
		{map[string]string{"synchronous_commit": "off'; DROP TABLE x; --"}, "not one of"},
	} {
		_, err := SubscriptionWithOptions(c.opts, 18)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: want an error mentioning %q, got %v", c.opts, c.want, err)
		}
	}
}

// The reverse subscription lives on blue: options blue's major lacks are
// left off with a note, not refused (the spec wrote them for green).
func TestReverseSubscriptionOptionsByBlueMajor(t *testing.T) {
	opts := map[string]string{"binary": "true", "streaming": "parallel", "disable_on_error": "true", "failover": "true", "synchronous_commit": "off"}
	cases := []struct {
		blue    int
		want    string
		skipped []string
	}{
		{13, "synchronous_commit = 'off'", []string{"binary", "disable_on_error", "failover", "streaming"}},
		{15, "disable_on_error = 'true', synchronous_commit = 'off'", []string{"binary", "failover", "streaming = parallel"}},
		{16, "disable_on_error = 'true', streaming = 'parallel', synchronous_commit = 'off'", []string{"binary", "failover"}},
	}
	for _, c := range cases {
		got, skipped, err := ReverseSubscriptionOptions(opts, c.blue)
		if err != nil || strings.Join(got, ", ") != c.want {
			t.Errorf("blue %d: got %q, %v; want %q", c.blue, got, err, c.want)
		}
		if len(skipped) != len(c.skipped) {
			t.Errorf("blue %d: skipped %q, want notes for %q", c.blue, skipped, c.skipped)
			continue
		}
		for i, name := range c.skipped {
			if !strings.HasPrefix(skipped[i], name+": not used on the reverse subscription") {
				t.Errorf("blue %d: note %q, want one about %s", c.blue, skipped[i], name)
			}
		}
	}
}
