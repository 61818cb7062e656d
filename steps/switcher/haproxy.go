package switcher

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pgshift/pgshift/spec"
)

// haProxy switches a TCP backend from the blue server to the green one with
// the runtime API (the "stats socket" at level admin): green ready, blue in
// maintenance, blue's sessions shut down, confirmed with "show servers
// state".
//
// HAProxy cannot hold queries the way PgBouncer's PAUSE does, so Freeze and
// Unfreeze do nothing here: with HAProxy, freeze writes with the read-only
// mode on blue (cutover.freeze: read-only). Shutting down blue's sessions
// breaks the connections clients hold to blue; they reconnect to green.
type haProxy struct {
	addr    string // unix socket path or host:port
	backend string
	blue    string
	green   string
}

func newHAProxy(s *spec.HAProxySwitch) (*haProxy, error) {
	if s.Socket == "" || s.Backend == "" || s.BlueServer == "" || s.GreenServer == "" {
		return nil, errors.New("cutover.switch.haproxy: socket, backend, blue_server and green_server are required")
	}
	if s.BlueServer == s.GreenServer {
		return nil, errors.New("cutover.switch.haproxy: blue_server and green_server are the same server")
	}
	for _, n := range []string{s.Backend, s.BlueServer, s.GreenServer} {
		if strings.ContainsAny(n, " \t\r\n;/") {
			return nil, fmt.Errorf("cutover.switch.haproxy: %q is not a valid backend or server name", n)
		}
	}
	return &haProxy{addr: s.Socket, backend: s.Backend, blue: s.BlueServer, green: s.GreenServer}, nil
}

func (h *haProxy) Name() string { return "haproxy" }

func (h *haProxy) server(s Side) string {
	if s == Green {
		return h.green
	}
	return h.blue
}

// dial opens the runtime API: a path (or unix@path) is a Unix socket,
// anything else host:port (an ipv4@ prefix is accepted as HAProxy writes it).
//
// A refused connection is tried again for a moment: HAProxy's stats socket
// has a small backlog (its maxconn, 10 by default), which a busy HAProxy
// answering one command per connection can leave full for a few
// milliseconds; a cutover must not abort on that.
func (h *haProxy) dial(ctx context.Context) (net.Conn, error) {
	network, addr := runtimeAddr(h.addr)
	var d net.Dialer
	deadline := time.Now().Add(runtimeRetryBudget)
	for {
		conn, err := d.DialContext(ctx, network, addr)
		if err == nil {
			return conn, nil
		}
		if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.EAGAIN) || time.Now().After(deadline) || ctx.Err() != nil {
			return nil, &dialError{fmt.Errorf("haproxy runtime API %s: %w (check cutover.switch.haproxy.socket and the stats socket line of haproxy.cfg)", h.addr, err)}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// dialError is a runtime API connection that could not be opened: the
// command was never sent.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// runtimeRetryBudget bounds the retries of a refused runtime API connection.
const runtimeRetryBudget = time.Second

func runtimeAddr(a string) (network, addr string) {
	switch {
	case strings.HasPrefix(a, "unix@"):
		return "unix", strings.TrimPrefix(a, "unix@")
	case strings.HasPrefix(a, "ipv4@"), strings.HasPrefix(a, "ipv6@"):
		return "tcp", a[5:]
	case strings.Contains(a, "/"):
		return "unix", a
	}
	return "tcp", a
}

// command sends one command and returns HAProxy's answer. In the API's
// non-interactive mode HAProxy answers and closes the connection.
func (h *haProxy) command(ctx context.Context, line string) (string, error) {
	conn, err := h.dial(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	} else {
		conn.SetDeadline(time.Now().Add(10 * time.Second))
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if _, err := io.WriteString(conn, line+"\n"); err != nil {
		return "", fmt.Errorf("haproxy runtime API %s: send %q: %w", h.addr, line, err)
	}
	out, err := io.ReadAll(bufio.NewReader(conn))
	if err != nil {
		return "", fmt.Errorf("haproxy runtime API %s: %q: %w", h.addr, line, err)
	}
	return string(out), nil
}

// mutate runs a command that answers nothing on success.
func (h *haProxy) mutate(ctx context.Context, line string) error {
	out, err := h.command(ctx, line)
	if err != nil {
		return err
	}
	if msg := strings.TrimSpace(out); msg != "" {
		hint := ""
		if strings.Contains(strings.ToLower(msg), "permission denied") {
			hint = " (the stats socket needs \"level admin\")"
		}
		return fmt.Errorf("haproxy: %q: %s%s", line, msg, hint)
	}
	return nil
}

// serverState is one row of "show servers state".
type serverState struct {
	opState    int // 0 stopped, 1 starting, 2 running, 3 stopping
	adminState int // bit field: 0x01 forced maint, 0x02 inherited maint, 0x04 "disabled" in the config, 0x08 forced drain, 0x10 inherited drain, 0x20 DNS resolution maint
	weight     int // srv_uweight
}

// The 0x04 bit only remembers that the configuration said "disabled": it
// stays set after "state ready" has put the server in service.
const (
	adminMaint = 0x01 | 0x02 | 0x20
	adminDrain = 0x08 | 0x10
)

// takesTraffic says whether HAProxy sends new connections to the server.
func (s serverState) takesTraffic() bool {
	return s.adminState&(adminMaint|adminDrain) == 0 && s.opState == 2 && s.weight > 0
}

func (s serverState) inMaint() bool { return s.adminState&adminMaint != 0 }

func (s serverState) String() string {
	var parts []string
	if s.inMaint() {
		parts = append(parts, "maint")
	} else if s.adminState&adminDrain != 0 {
		parts = append(parts, "drain")
	} else {
		parts = append(parts, "ready")
	}
	parts = append(parts, [...]string{"stopped", "starting", "running", "stopping"}[min(max(s.opState, 0), 3)])
	parts = append(parts, "weight "+strconv.Itoa(s.weight))
	return strings.Join(parts, ", ")
}

// states reads the backend's servers.
func (h *haProxy) states(ctx context.Context) (map[string]serverState, error) {
	out, err := h.command(ctx, "show servers state "+h.backend)
	if err != nil {
		return nil, err
	}
	return parseServersState(out, h.backend)
}

// parseServersState reads the output of "show servers state BACKEND": a
// version line, a "# be_id be_name srv_id srv_name ..." header and one row
// per server, space separated.
func parseServersState(out, backend string) (map[string]serverState, error) {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var cols []string
	servers := map[string]serverState{}
	for _, l := range lines {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || l == "1":
			continue
		case strings.HasPrefix(l, "# "):
			cols = strings.Fields(strings.TrimPrefix(l, "# "))
			continue
		case cols == nil:
			return nil, fmt.Errorf("haproxy: show servers state %s: %s", backend, l)
		}
		f := strings.Fields(l)
		get := func(name string) string {
			for i, c := range cols {
				if c == name && i < len(f) {
					return f[i]
				}
			}
			return ""
		}
		if get("be_name") != backend {
			continue
		}
		var s serverState
		var err1, err2, err3 error
		s.opState, err1 = strconv.Atoi(get("srv_op_state"))
		s.adminState, err2 = strconv.Atoi(get("srv_admin_state"))
		s.weight, err3 = strconv.Atoi(get("srv_uweight"))
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, fmt.Errorf("haproxy: show servers state %s: unexpected row %q", backend, l)
		}
		servers[get("srv_name")] = s
	}
	if cols == nil {
		return nil, fmt.Errorf("haproxy: show servers state %s: no answer (is the backend defined?)", backend)
	}
	return servers, nil
}

func (h *haProxy) Check(ctx context.Context) error {
	// "show cli level" (HAProxy 2.0+) says whether set server is allowed.
	if out, err := h.command(ctx, "show cli level"); err == nil {
		if level := strings.TrimSpace(out); level == "user" || level == "operator" {
			return fmt.Errorf("haproxy runtime API %s is at level %s: set server needs \"level admin\" on the stats socket line", h.addr, level)
		}
	}
	states, err := h.states(ctx)
	if err != nil {
		return err
	}
	for _, name := range []string{h.blue, h.green} {
		if _, ok := states[name]; !ok {
			return fmt.Errorf("haproxy backend %s has no server %q: check cutover.switch.haproxy (servers there: %s)", h.backend, name, strings.Join(slices.Sorted(maps.Keys(states)), ", "))
		}
	}
	if states[h.green].weight == 0 {
		return fmt.Errorf("haproxy server %s/%s has weight 0: it would take no traffic after the switch", h.backend, h.green)
	}
	if _, err := h.current(states); err != nil {
		return err
	}
	return nil
}

func (h *haProxy) current(states map[string]serverState) (Side, error) {
	b, g := states[h.blue], states[h.green]
	bOn, gOn := !b.inMaint() && b.adminState&adminDrain == 0, !g.inMaint() && g.adminState&adminDrain == 0
	switch {
	case bOn && !gOn:
		return Blue, nil
	case gOn && !bOn:
		return Green, nil
	}
	return "", fmt.Errorf("haproxy backend %s: expected exactly one of %s (%s) and %s (%s) to be in service", h.backend, h.blue, b, h.green, g)
}

func (h *haProxy) Current(ctx context.Context) (Side, error) {
	states, err := h.states(ctx)
	if err != nil {
		return "", err
	}
	return h.current(states)
}

var _ ServingReporter = (*haProxy)(nil)

// Serving says whether HAProxy sends new connections to side's server: in
// service, running (its health check passes) and weighted.
func (h *haProxy) Serving(ctx context.Context, side Side) (bool, error) {
	states, err := h.states(ctx)
	if err != nil {
		return false, err
	}
	st, ok := states[h.server(side)]
	if !ok {
		return false, fmt.Errorf("haproxy backend %s has no server %s", h.backend, h.server(side))
	}
	return st.takesTraffic(), nil
}

// Freeze is a no-op: HAProxy cannot hold queries (see the type's comment).
func (h *haProxy) Freeze(ctx context.Context) error { return nil }

// Unfreeze is a no-op, as Freeze.
func (h *haProxy) Unfreeze(ctx context.Context) error { return nil }

// Switch puts the side's server in service first, so that there is never a
// moment without one, then the other in maintenance, closes the other's
// sessions, and waits (within ctx) until HAProxy reports the new server
// running: a health check may take a moment to mark it up.
func (h *haProxy) Switch(ctx context.Context, to Side) error {
	if !to.valid() {
		return fmt.Errorf("switch: unknown side %q", to)
	}
	on, off := h.server(to), h.server(to.Other())
	for i, cmd := range []string{
		fmt.Sprintf("set server %s/%s state ready", h.backend, on),
		fmt.Sprintf("set server %s/%s state maint", h.backend, off),
		fmt.Sprintf("shutdown sessions server %s/%s", h.backend, off),
	} {
		if err := h.mutate(ctx, cmd); err != nil {
			var de *dialError
			if i == 0 && errors.As(err, &de) {
				// Nothing reached HAProxy: both servers are as they were.
				return fmt.Errorf("%w: %w", ErrNotSwitched, err)
			}
			return err
		}
	}
	for {
		states, err := h.states(ctx)
		if err != nil {
			return err
		}
		if states[on].takesTraffic() && states[off].inMaint() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("haproxy backend %s: %s is %s and %s is %s after the switch to %s: %w", h.backend, on, states[on], off, states[off], to, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (h *haProxy) Describe(to Side) []string {
	on, off := h.server(to), h.server(to.Other())
	return []string{
		fmt.Sprintf("haproxy backend %s: server %s state ready, server %s state maint, shutdown sessions server %s/%s", h.backend, on, off, h.backend, off),
	}
}

func (h *haProxy) Close() error { return nil }
