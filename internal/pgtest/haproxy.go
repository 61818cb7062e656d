package pgtest

import (
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// HAProxyServer is one server of the backend.
type HAProxyServer struct {
	Name string
	Addr string // "127.0.0.1:PORT"
}

// HAProxyOptions configures StartHAProxy.
type HAProxyOptions struct {
	Backend string // backend name; default "postgres"
	Servers []HAProxyServer
	// Active names the server taking traffic at start (default: the first); the others start in
	// maintenance, to be made ready through the runtime API.
	Active string
	// HealthCheck checks every server (a TCP connect every 200 ms): one
	// that does not answer is DOWN and takes no traffic, as in production.
	HealthCheck bool
}

// HAProxy is a running HAProxy of the rig in TCP mode on 127.0.0.1, stopped in t.Cleanup.
type HAProxy struct {
	Host       string // "127.0.0.1"
	Port       int
	Socket     string // runtime API (stats socket, level admin)
	Backend    string
	ConfigPath string
	LogPath    string

	daemon daemon
}

// StartHAProxy starts HAProxy on a free loopback port, forwarding TCP to the active server.
func StartHAProxy(t testing.TB, opts HAProxyOptions) *HAProxy {
	t.Helper()
	h, err := startHAProxy(t, opts)
	if err != nil {
		t.Fatalf("pgtest: start HAProxy: %v", err)
	}
	return h
}

func startHAProxy(t testing.TB, opts HAProxyOptions) (*HAProxy, error) {
	bin, err := requireSystemBin("haproxy", "/usr/sbin/haproxy", "/usr/bin/haproxy", "/usr/local/sbin/haproxy")
	if err != nil {
		return nil, err
	}
	if len(opts.Servers) == 0 {
		return nil, fmt.Errorf("HAProxyOptions.Servers is empty: give at least one server")
	}
	if opts.Backend == "" {
		opts.Backend = "postgres"
	}
	if opts.Active == "" {
		opts.Active = opts.Servers[0].Name
	}
	found := false
	for _, s := range opts.Servers {
		found = found || s.Name == opts.Active
	}
	if !found {
		return nil, fmt.Errorf("HAProxyOptions.Active %q names none of the servers", opts.Active)
	}
	dir, err := newInstanceDir("haproxy")
	if err != nil {
		return nil, err
	}
	h := &HAProxy{Host: "127.0.0.1", Backend: opts.Backend, Socket: filepath.Join(dir, "admin.sock")}
	h.daemon = daemon{name: "HAProxy", dir: dir, logPath: filepath.Join(dir, "haproxy.log")}
	h.LogPath = h.daemon.logPath
	t.Cleanup(func() { h.daemon.cleanup(t, h.Port) })

	// HAProxy does not refuse root, so it runs as the test's user: the socket is then the test's.
	self := serverUser{name: "current user"}
	for attempt := 1; ; attempt++ {
		if h.Port, err = freePort(); err != nil {
			return nil, err
		}
		if h.ConfigPath, err = writeConfig(dir, "haproxy.cfg", haproxyConfig(h, opts)); err != nil {
			return nil, err
		}
		// -db: stay in the foreground, log to stdout (the log file).
		taken, err := h.daemon.start(self.command(dir, bin, "-db", "-f", h.ConfigPath), h.Port)
		if err == nil {
			break
		}
		if !taken || attempt == 5 {
			return nil, err
		}
	}
	// The listening port says the proxy is up; the runtime API socket may
	// come a moment later.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		conn, err := net.DialTimeout("unix", h.Socket, time.Second)
		if err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("HAProxy runtime API %s not answering after a minute: %v", h.Socket, err)
		}
	}
	return h, nil
}

func haproxyConfig(h *HAProxy, opts HAProxyOptions) string {
	var s strings.Builder
	s.WriteString("# HAProxy configuration written by the pgshift test rig.\n")
	s.WriteString("global\n")
	s.WriteString("    # runtime API: set server state, shutdown sessions\n")
	fmt.Fprintf(&s, "    stats socket %s mode 600 level admin\n", h.Socket)
	s.WriteString("    log stdout format raw local0\n\n")
	s.WriteString("defaults\n    mode tcp\n    log global\n    option tcplog\n")
	s.WriteString("    timeout connect 5s\n    timeout client 1h\n    timeout server 1h\n\n")
	s.WriteString("frontend postgres_in\n")
	fmt.Fprintf(&s, "    bind %s:%d\n", h.Host, h.Port)
	fmt.Fprintf(&s, "    default_backend %s\n\n", opts.Backend)
	fmt.Fprintf(&s, "backend %s\n", opts.Backend)
	s.WriteString("    # one server takes traffic; the others wait in maintenance (disabled)\n")
	for _, srv := range opts.Servers {
		state := ""
		if srv.Name != opts.Active {
			state = " disabled"
		}
		if opts.HealthCheck {
			state += " check inter 200ms fall 1 rise 1"
		}
		fmt.Fprintf(&s, "    server %s %s%s\n", srv.Name, srv.Addr, state)
	}
	return s.String()
}

// DSN is a client connection string for database db through HAProxy, as user postgres.
func (h *HAProxy) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@%s:%d/%s?sslmode=disable", h.Host, h.Port, db)
}

// Command sends one runtime API command ("set server postgres/green state ready", "show servers
// state") and returns the answer; a connection failure fails the test. HAProxy answers errors in
// text: check the answer.
func (h *HAProxy) Command(t testing.TB, command string) string {
	t.Helper()
	conn, err := net.DialTimeout("unix", h.Socket, 10*time.Second)
	if err != nil {
		t.Fatalf("pgtest: HAProxy runtime API %s: %v", h.Socket, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, command+"\n"); err != nil {
		t.Fatalf("pgtest: HAProxy runtime API %s: send %q: %v", h.Socket, command, err)
	}
	// Without "prompt", HAProxy answers one command and closes the connection.
	answer, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("pgtest: HAProxy runtime API %s: read answer to %q: %v", h.Socket, command, err)
	}
	return string(answer)
}
