package spec

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"gopkg.in/yaml.v3"
)

// semanticChecks are the rules the schema cannot express. They read the
// nodes directly, so they run (and report) even when the schema found other
// problems; a value of the wrong type is left to the schema.
func semanticChecks(doc *document) errList {
	c := &checker{doc: doc}
	if doc.root == nil {
		return nil
	}
	c.duration("cutover", "pause_timeout")
	c.duration("replication", "outage_timeout")
	c.size("replication", "initial_copy", "split_tables_larger_than")
	c.globs("tables", "include")
	c.globs("tables", "exclude")
	src := c.dsn("source", "dsn")
	dst := c.dsn("target", "dsn")
	if src != nil && dst != nil && sameDatabase(src, dst) {
		_, n := nodeAt(doc.root, "target", "dsn")
		c.add(n, "target.dsn", fmt.Sprintf("names the same database as source.dsn (host %s, port %d, database %s)", src.Host, src.Port, src.Database),
			"green must be a separate database on the new major version")
	}
	if admin := c.dsn("cutover", "switch", "pgbouncer", "admin_dsn"); admin != nil && admin.Database != "pgbouncer" {
		_, n := nodeAt(doc.root, "cutover", "switch", "pgbouncer", "admin_dsn")
		c.add(n, "cutover.switch.pgbouncer.admin_dsn", fmt.Sprintf("names database %q, not PgBouncer's admin console", admin.Database), "connect to the database pgbouncer, such as postgres://pgbouncer@127.0.0.1:6432/pgbouncer")
	}
	c.dsn("cutover", "confirm", "dsn")
	c.dsn("source", "subscription_dsn")
	c.dsn("target", "subscription_dsn")
	c.listen()
	c.freezeFitsSwitch()
	c.haproxyServers()
	c.argv("switch")
	c.argv("back")
	c.ddlCapture()
	return c.errs
}

// ddlCapture refuses replication.ddl: capture, which the contract reserves
// but nothing implements yet: accepting it would promise a replay of
// blue's DDL that never happens.
func (c *checker) ddlCapture() {
	if n := c.str("replication", "ddl"); n != nil && n.Value == "capture" {
		c.add(n, "replication.ddl", "capture (replaying blue's DDL on green through an event trigger) is not built yet",
			"remove the field or set compare (the default): plan, status and watch compare both schemas, and apply adds new tables, columns and indexes on green")
	}
}

type checker struct {
	doc  *document
	errs errList
}

func (c *checker) add(n *yaml.Node, path, msg, hint string) {
	e := &Error{File: c.doc.file, Path: path, Msg: msg, Hint: hint, Entry: -1, Line: 1, Col: 1}
	if n != nil {
		e.Line, e.Col = n.Line, n.Column
	}
	c.errs = append(c.errs, e)
}

// str returns the string at keys, or nil when absent or not a string.
func (c *checker) str(keys ...string) *yaml.Node {
	_, n := nodeAt(c.doc.root, keys...)
	if !isString(n) {
		return nil
	}
	return n
}

func (c *checker) duration(keys ...string) {
	n := c.str(keys...)
	if n == nil {
		return
	}
	p := strings.Join(keys, ".")
	d, err := ParseDuration(n.Value)
	switch {
	case err != nil:
		hint := "use a Go duration such as 10s, 2m or 1m30s"
		if s := suggestDuration(n.Value); s != "" && s != strings.TrimSpace(n.Value) {
			hint = "try " + s
		} else if s != "" {
			c.add(n, p, strconv.Quote(n.Value)+" is too long a duration", "durations go up to 2562047h")
			return
		}
		c.add(n, p, strconv.Quote(n.Value)+" is not a duration", hint)
	case d <= 0:
		c.add(n, p, "must be longer than zero", "try 10s")
	}
}

func (c *checker) size(keys ...string) {
	n := c.str(keys...)
	if n == nil {
		return
	}
	p := strings.Join(keys, ".")
	b, err := ParseByteSize(n.Value)
	switch {
	case err != nil:
		hint := "use a size such as 1GiB, 512MiB or a number of bytes"
		if s := suggestSize(n.Value); s != "" {
			hint = "try " + s
		}
		c.add(n, p, err.Error(), hint)
	case b <= 0:
		c.add(n, p, "must be larger than zero", "try 1GiB")
	}
}

func (c *checker) globs(keys ...string) {
	_, list := nodeAt(c.doc.root, keys...)
	if list == nil || list.Kind != yaml.SequenceNode {
		return
	}
	for i, n := range list.Content {
		if !isString(n) || n.Value == "" {
			continue
		}
		p := fmt.Sprintf("%s[%d]", strings.Join(keys, "."), i)
		if _, err := path.Match(n.Value, ""); err != nil {
			c.add(n, p, strconv.Quote(n.Value)+" is not a valid glob", "use *, ? and [a-z] on schema.table, such as public.*")
			continue
		}
		if !strings.Contains(n.Value, ".") {
			c.add(n, p, strconv.Quote(n.Value)+" never matches: patterns match schema.table", "try *."+n.Value+" or public."+n.Value)
		}
	}
}

var (
	// password=, sslpassword= in key/value strings and URI query parameters.
	dsnPasswordKeyRE = regexp.MustCompile(`(?i)(^|[\s?&])(ssl)?password\s*=`)
)

// dsnHasPassword reports whether a connection string carries a password:
// in a URI's user information, or as password/sslpassword parameter. It
// errs on the side of yes: this is what keeps secrets out of specs.
func dsnHasPassword(dsn string) bool {
	if dsnPasswordKeyRE.MatchString(dsn) {
		return true
	}
	lower := strings.ToLower(dsn)
	if strings.HasPrefix(lower, "postgres://") || strings.HasPrefix(lower, "postgresql://") {
		rest := dsn[strings.Index(dsn, "://")+3:]
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			user := rest[:at]
			if i := strings.IndexByte(user, ':'); i >= 0 && i < len(user)-1 {
				return true
			}
		}
	}
	return false
}

// dsn checks a connection string: no password, and it parses. It never
// quotes the string back: even a refused one may hold a secret.
func (c *checker) dsn(keys ...string) *pgconn.Config {
	n := c.str(keys...)
	if n == nil || n.Value == "" {
		return nil
	}
	p := strings.Join(keys, ".")
	envKey := strings.Join(keys[:len(keys)-1], ".") + "." + strings.TrimSuffix(keys[len(keys)-1], "dsn") + "password_env"
	if keys[len(keys)-1] == "subscription_dsn" {
		envKey = keys[0] + ".password_env" // the subscription authenticates as the side's user
	}
	if dsnHasPassword(n.Value) {
		c.add(n, p, "holds a password; a spec must not", "remove it and set "+envKey+" to the name of an environment variable holding it, or use a .pgpass file")
		return nil
	}
	cfg, err := pgconn.ParseConfig(n.Value)
	if err != nil {
		c.add(n, p, "is not a valid connection string: "+parseReason(err), "write a URI such as postgres://user@host:5432/db or key=value pairs such as host=h dbname=db")
		return nil
	}
	return cfg
}

// parseReason is pgconn's reason without the connection string itself.
func parseReason(err error) string {
	var pe *pgconn.ParseConfigError
	if !errors.As(err, &pe) {
		return "cannot parse"
	}
	full := pe.Error()
	if inner := pe.Unwrap(); inner != nil {
		full = strings.TrimSuffix(full, " ("+inner.Error()+")")
	}
	msg := full
	if i := strings.LastIndex(full, "`: "); i >= 0 {
		msg = full[i+3:]
	}
	if inner := pe.Unwrap(); inner != nil {
		var ue *url.Error
		if errors.As(inner, &ue) {
			inner = ue.Err
		}
		msg += ": " + inner.Error()
	}
	return msg
}

// sameDatabase reports whether two configs reach the same database.
func sameDatabase(a, b *pgconn.Config) bool {
	return normHost(a.Host) == normHost(b.Host) && a.Port == b.Port && a.Database == b.Database
}

func normHost(h string) string {
	h = strings.ToLower(h)
	switch h {
	case "localhost", "127.0.0.1", "::1":
		return "localhost"
	}
	return h
}

func (c *checker) listen() {
	n := c.str("metrics", "listen")
	if n == nil || n.Value == "" {
		return
	}
	_, port, err := net.SplitHostPort(n.Value)
	if err != nil {
		c.add(n, "metrics.listen", strconv.Quote(n.Value)+" is not a host:port address", "such as 127.0.0.1:9187")
		return
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		c.add(n, "metrics.listen", "port "+strconv.Quote(port)+" is not between 0 and 65535", "such as 127.0.0.1:9187")
	}
}

// freezeFitsSwitch refuses a freeze through PgBouncer's PAUSE for a switch
// that is not PgBouncer. (Left out, the freeze defaults to read-only there.)
func (c *checker) freezeFitsSwitch() {
	n := c.str("cutover", "freeze")
	if n == nil || (n.Value != "pooler" && n.Value != "both") {
		return
	}
	_, sw := nodeAt(c.doc.root, "cutover", "switch")
	if sw == nil || sw.Kind != yaml.MappingNode || len(sw.Content) != 2 {
		return
	}
	if driver := sw.Content[0].Value; driver == "haproxy" || driver == "exec" {
		c.add(n, "cutover.freeze", n.Value+" holds writes with PgBouncer's PAUSE, and the switch is "+driver, "set freeze: read-only")
	}
}

func (c *checker) haproxyServers() {
	b, g := c.str("cutover", "switch", "haproxy", "blue_server"), c.str("cutover", "switch", "haproxy", "green_server")
	if b != nil && g != nil && b.Value == g.Value && b.Value != "" {
		c.add(g, "cutover.switch.haproxy.green_server", "is the same server as blue_server", "name the server that points at green")
	}
}

func (c *checker) argv(which string) {
	_, list := nodeAt(c.doc.root, "cutover", "switch", "exec", which)
	if list == nil || list.Kind != yaml.SequenceNode || len(list.Content) == 0 {
		return
	}
	if n := list.Content[0]; isString(n) && strings.TrimSpace(n.Value) == "" {
		c.add(n, "cutover.switch.exec."+which+"[0]", "the program is empty", "the first item is the program to run, such as ./switch.sh")
	}
}
