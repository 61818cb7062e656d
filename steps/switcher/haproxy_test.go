package switcher

import (
	"strings"
	"testing"
)

// Output of HAProxy 2.6 after "set server postgres/b state ready" on a
// server the configuration had "disabled", and "state maint" on a.
const showServersState = `1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 postgres 1 a 127.0.0.1 0 1 1 1 0 1 0 0 0 0 0 0 - 25432 - 0 0 - - 0
3 postgres 2 b 127.0.0.1 2 4 1 1 0 1 0 0 8 0 0 0 - 25432 - 0 0 - - 0

`

func TestParseServersState(t *testing.T) {
	states, err := parseServersState(showServersState, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	a, b := states["a"], states["b"]
	if !a.inMaint() || a.takesTraffic() {
		t.Errorf("a = %s: want in maintenance", a)
	}
	if b.inMaint() || !b.takesTraffic() {
		t.Errorf("b = %s: want in service (the config-disabled bit alone is not maintenance)", b)
	}
	h := &haProxy{backend: "postgres", blue: "a", green: "b"}
	if side, err := h.current(states); err != nil || side != Green {
		t.Errorf("current = %q, %v; want green", side, err)
	}
	h.green = "a"
	h.blue = "b"
	if side, _ := h.current(states); side != Blue {
		t.Errorf("current with roles swapped = %q; want blue", side)
	}
}

func TestParseServersStateErrors(t *testing.T) {
	if _, err := parseServersState("Can't find backend.\n", "nope"); err == nil || !strings.Contains(err.Error(), "Can't find backend") {
		t.Errorf("err = %v", err)
	}
	if _, err := parseServersState("", "nope"); err == nil {
		t.Errorf("an empty answer parsed")
	}
}

func TestRuntimeAddr(t *testing.T) {
	for _, c := range []struct{ in, network, addr string }{
		{"/run/haproxy/admin.sock", "unix", "/run/haproxy/admin.sock"},
		{"unix@/run/haproxy/admin.sock", "unix", "/run/haproxy/admin.sock"},
		{"127.0.0.1:9999", "tcp", "127.0.0.1:9999"},
		{"ipv4@127.0.0.1:9999", "tcp", "127.0.0.1:9999"},
		{"ipv6@[::1]:9999", "tcp", "[::1]:9999"},
		{"haproxy.internal:9999", "tcp", "haproxy.internal:9999"},
	} {
		if n, a := runtimeAddr(c.in); n != c.network || a != c.addr {
			t.Errorf("runtimeAddr(%q) = %s %s, want %s %s", c.in, n, a, c.network, c.addr)
		}
	}
}
