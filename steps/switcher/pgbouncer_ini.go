package switcher

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// This file reads and edits a pgbouncer.ini the way PgBouncer's own parser
// reads it (libusual cfparser): whole-line comments starting with ';' or '#',
// "[section]" headers, "key = value" lines whose value runs to the end of the
// line, and "%include file" lines. An edit replaces the host, port and dbname
// of one [databases] entry and keeps every other byte of the file.

// iniLine is one line of the file with its ending ("\n", "\r\n", or "" for
// a last line without one).
type iniLine struct {
	text string
	eol  string
}

// iniEntry is a "key = value" line.
type iniEntry struct {
	line     int    // index into iniDoc.lines
	section  string // "" before any section header
	key      string // unquoted
	valStart int    // byte offsets of the value in the line's text, trailing space excluded
	valEnd   int
}

func (e iniEntry) value(d *iniDoc) string { return d.lines[e.line].text[e.valStart:e.valEnd] }

// iniDoc is a parsed file.
type iniDoc struct {
	lines      []iniLine
	entries    []iniEntry
	includes   []iniInclude
	hasSection bool
}

type iniInclude struct {
	line int
	path string
}

// parseINI splits a file into lines and finds its sections, entries and
// includes. It refuses what PgBouncer would refuse, and a few constructs it
// would accept but that an edit could misread (text after a section header).
func parseINI(data []byte) (*iniDoc, error) {
	d := &iniDoc{}
	rest := string(data)
	for len(rest) > 0 {
		var l iniLine
		if i := strings.IndexByte(rest, '\n'); i >= 0 {
			l.text, rest = rest[:i], rest[i+1:]
			l.eol = "\n"
			if strings.HasSuffix(l.text, "\r") {
				l.text, l.eol = l.text[:len(l.text)-1], "\r\n"
			}
		} else {
			l.text, rest = rest, ""
		}
		d.lines = append(d.lines, l)
	}
	section := ""
	for n, l := range d.lines {
		lineno := n + 1
		s := strings.TrimLeft(l.text, " \t\v\f\r")
		off := len(l.text) - len(s)
		switch {
		case s == "":
			continue
		case strings.HasPrefix(s, "%include") && len(s) > 8 && (s[8] == ' ' || s[8] == '\t'):
			d.includes = append(d.includes, iniInclude{line: n, path: strings.TrimSpace(s[8:])})
			continue
		case s[0] == '#' || s[0] == ';':
			continue
		case s[0] == '[':
			end := strings.IndexByte(s, ']')
			if end < 0 {
				return nil, fmt.Errorf("line %d: section header without ']'", lineno)
			}
			if after := strings.TrimSpace(s[end+1:]); after != "" && after[0] != '#' && after[0] != ';' {
				return nil, fmt.Errorf("line %d: text after the section header %q; put it on its own line", lineno, s[:end+1])
			}
			section = s[1:end]
			d.hasSection = true
			continue
		}
		key, klen, err := iniKey(s)
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", lineno, err)
		}
		p := klen
		for p < len(s) && (s[p] == ' ' || s[p] == '\t') {
			p++
		}
		if p >= len(s) || s[p] != '=' {
			return nil, fmt.Errorf("line %d: expected '=' after %q", lineno, key)
		}
		p++
		for p < len(s) && (s[p] == ' ' || s[p] == '\t') {
			p++
		}
		v := strings.TrimRight(s[p:], " \t\v\f\r")
		d.entries = append(d.entries, iniEntry{
			line: n, section: section, key: key,
			valStart: off + p, valEnd: off + p + len(v),
		})
	}
	return d, nil
}

// iniKey reads a key: PgBouncer's word characters, or a double-quoted name
// with "" for a quote (accepted by recent PgBouncer versions).
func iniKey(s string) (key string, n int, err error) {
	if s[0] == '"' {
		var b strings.Builder
		for i := 1; i < len(s); i++ {
			if s[i] == '"' {
				if i+1 < len(s) && s[i+1] == '"' {
					b.WriteByte('"')
					i++
					continue
				}
				return b.String(), i + 1, nil
			}
			b.WriteByte(s[i])
		}
		return "", 0, fmt.Errorf("unterminated quoted name")
	}
	for n < len(s) && isKeyChar(s[n]) {
		n++
	}
	if n == 0 {
		return "", 0, fmt.Errorf("expected a name, found %q", firstWord(s))
	}
	return s[:n], n, nil
}

func isKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_.-*", c) >= 0
}

func firstWord(s string) string {
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		return s[:i]
	}
	return s
}

// render joins the lines back; parseINI followed by render gives the input
// byte for byte.
func (d *iniDoc) render() []byte {
	var b bytes.Buffer
	for _, l := range d.lines {
		b.WriteString(l.text)
		b.WriteString(l.eol)
	}
	return b.Bytes()
}

// databaseEntries lists the [databases] entries named name. A file without
// any section header is taken as a fragment included under [databases].
func (d *iniDoc) databaseEntries(name string) []iniEntry {
	var out []iniEntry
	for _, e := range d.entries {
		inDatabases := strings.EqualFold(e.section, "databases") || (!d.hasSection && e.section == "")
		if inDatabases && e.key == name {
			out = append(out, e)
		}
	}
	return out
}

// connPair is one key=value of a [databases] connection string, with the
// byte offsets of its value inside the string.
type connPair struct {
	key        string
	value      string // unquoted
	start, end int    // offsets of the raw value
}

// parseConnString splits a [databases] value into its pairs: key=value
// separated by spaces, values optionally single-quoted (” or \' for a
// quote), as PgBouncer reads them.
func parseConnString(s string) ([]connPair, error) {
	var out []connPair
	i := 0
	for {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		if i >= len(s) {
			return out, nil
		}
		ks := i
		for i < len(s) && s[i] != '=' && s[i] != ' ' {
			i++
		}
		key := s[ks:i]
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		if i >= len(s) || s[i] != '=' || key == "" {
			return nil, fmt.Errorf("expected key=value at %q", s[ks:])
		}
		i++
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		vs := i
		var val strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			closed := false
			for i < len(s) {
				c := s[i]
				if c == '\'' {
					if i+1 < len(s) && s[i+1] == '\'' {
						val.WriteByte('\'')
						i += 2
						continue
					}
					i++
					closed = true
					break
				}
				val.WriteByte(c)
				i++
			}
			if !closed {
				return nil, fmt.Errorf("unterminated quote in the value of %s", key)
			}
		} else {
			for i < len(s) && s[i] != ' ' {
				val.WriteByte(s[i])
				i++
			}
		}
		out = append(out, connPair{key: key, value: val.String(), start: vs, end: i})
	}
}

// connTarget is where an entry sends connections: the keys the switch owns.
type connTarget struct {
	Host   string // "" when unset: PgBouncer then uses its Unix socket default
	Port   int
	DBName string
}

func (c connTarget) String() string {
	host := c.Host
	if host == "" {
		host = "(unix socket)"
	}
	return fmt.Sprintf("host=%s port=%d dbname=%s", host, c.Port, c.DBName)
}

func (c connTarget) is(e Endpoint) bool {
	return sameEndpoint(Endpoint(c), e)
}

// targetOf reads host, port and dbname of an entry the way PgBouncer fills
// them: port 5432 and dbname = the entry's name when absent.
func targetOf(name string, pairs []connPair) (connTarget, error) {
	t := connTarget{Port: 5432, DBName: name}
	for _, p := range pairs {
		switch p.key {
		case "host":
			t.Host = p.value
		case "port":
			port, err := strconv.Atoi(p.value)
			if err != nil || port <= 0 || port > 65535 {
				return t, fmt.Errorf("port %q is not a port number", p.value)
			}
			t.Port = port
		case "dbname":
			t.DBName = p.value
		}
	}
	return t, nil
}

// plainValue matches values that need no quoting in a connection string.
var plainValue = regexp.MustCompile(`^[A-Za-z0-9_.:/@%+-]+$`)

// rewriteConnString sets host, port and dbname in a [databases] value and
// keeps every other pair, and the spacing, as written. Keys it must add go
// first, in the order host, port, dbname.
func rewriteConnString(name, value string, to Endpoint) (string, error) {
	pairs, err := parseConnString(value)
	if err != nil {
		return "", err
	}
	want := map[string]string{"host": to.Host, "port": strconv.Itoa(to.Port), "dbname": to.DBName}
	for k, v := range want {
		if !plainValue.MatchString(v) {
			return "", fmt.Errorf("%s %q holds characters pgshift does not write into pgbouncer.ini; use a plain host name, address or socket folder", k, v)
		}
	}
	seen := map[string]bool{}
	for _, p := range pairs {
		if _, owned := want[p.key]; owned {
			if seen[p.key] {
				return "", fmt.Errorf("%s is given twice", p.key)
			}
			seen[p.key] = true
		}
	}
	var b strings.Builder
	for _, k := range []string{"host", "port", "dbname"} {
		if seen[k] {
			continue
		}
		if k == "dbname" && to.DBName == name {
			continue // PgBouncer's default already names it
		}
		b.WriteString(k + "=" + want[k] + " ")
	}
	prev := 0
	for _, p := range pairs {
		v, owned := want[p.key]
		if !owned {
			continue
		}
		b.WriteString(value[prev:p.start])
		b.WriteString(v)
		prev = p.end
	}
	b.WriteString(value[prev:])
	return strings.TrimRight(b.String(), " "), nil
}

// databaseEdit is the result of planning an edit of one entry.
type databaseEdit struct {
	before, after connTarget
	content       []byte // the whole new file
	changed       bool
}

// errEntryNotHere says that the file has no entry for the database; the
// driver looks into the included files to say where it is.
type errEntryNotHere struct {
	name     string
	includes []string
	fallback bool // a "*" entry exists
}

func (e *errEntryNotHere) Error() string {
	msg := fmt.Sprintf("no [databases] entry %q in this file", e.name)
	if e.fallback {
		msg += " (only the fallback entry \"*\", which pgshift does not edit: add an explicit entry for " + strconv.Quote(e.name) + ")"
	}
	return msg
}

// planDatabaseEdit computes the file with the entry name pointed at to.
func planDatabaseEdit(data []byte, name string, to Endpoint) (*databaseEdit, *iniDoc, error) {
	doc, err := parseINI(data)
	if err != nil {
		return nil, nil, err
	}
	found := doc.databaseEntries(name)
	switch len(found) {
	case 0:
		e := &errEntryNotHere{name: name, fallback: len(doc.databaseEntries("*")) > 0}
		for _, inc := range doc.includes {
			e.includes = append(e.includes, inc.path)
		}
		return nil, doc, e
	case 1:
	default:
		return nil, doc, fmt.Errorf("[databases] entry %q appears %d times (lines %d and %d); PgBouncer keeps the last one: remove the others first", name, len(found), found[0].line+1, found[len(found)-1].line+1)
	}
	e := found[0]
	old := e.value(doc)
	pairs, err := parseConnString(old)
	if err != nil {
		return nil, doc, fmt.Errorf("line %d: [databases] %s: %v", e.line+1, name, err)
	}
	before, err := targetOf(name, pairs)
	if err != nil {
		return nil, doc, fmt.Errorf("line %d: [databases] %s: %v", e.line+1, name, err)
	}
	edit := &databaseEdit{before: before, after: connTarget(to)}
	if before.Host == to.Host && before.Port == to.Port && before.DBName == to.DBName {
		edit.content = data
		return edit, doc, nil
	}
	nv, err := rewriteConnString(name, old, to)
	if err != nil {
		return nil, doc, fmt.Errorf("line %d: [databases] %s: %v", e.line+1, name, err)
	}
	l := &doc.lines[e.line]
	if old == "" && !strings.HasSuffix(l.text[:e.valStart], " ") {
		nv = " " + nv // "orders =" becomes "orders = host=..."
	}
	l.text = l.text[:e.valStart] + nv + l.text[e.valEnd:]
	edit.content = doc.render()
	edit.changed = true
	return edit, doc, nil
}
