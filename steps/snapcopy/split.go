package snapcopy

import (
	"fmt"
	"regexp"
	"strings"
)

// Kind sorts post-data statements into the phases ApplyPostData runs.
type Kind int

const (
	KindOther      Kind = iota // triggers, rules, index attachments, comments...: in order, one at a time
	KindSetting                // SET and set_config: session state, replayed on every connection
	KindIndex                  // CREATE INDEX, PRIMARY KEY, UNIQUE, EXCLUDE: built in parallel
	KindForeignKey             // FOREIGN KEY constraints: in parallel, after everything else
)

func (k Kind) String() string {
	switch k {
	case KindSetting:
		return "setting"
	case KindIndex:
		return "index"
	case KindForeignKey:
		return "foreign key"
	}
	return "other"
}

// Statement is one SQL statement of a schema script.
type Statement struct {
	SQL  string // without the final semicolon and without comments around it
	Kind Kind
	Line int // 1-based line where it starts, for messages
	// Settings are the SET/set_config statements in effect where this
	// statement stands in the script, in script order (one per setting).
	Settings []string
}

var copyFromStdinRE = regexp.MustCompile(`(?is)^COPY\s.*\sFROM\s+stdin\b`)

// SplitStatements splits a SQL script such as pg_dump's plain output into
// statements. It understands what can hide a semicolon: -- and nested /* */
// comments, 'strings' (backslash escapes in E'...'), "identifiers" and
// $tag$ dollar quotes $tag$. psql meta-commands (a line starting with a
// backslash, such as pg_dump's \restrict) are skipped. A COPY ... FROM stdin
// data block is refused: that is the data section, not post-data.
func SplitStatements(script string) ([]Statement, error) {
	var out []Statement
	var buf strings.Builder
	line, startLine := 1, 1
	settings := newSettingsTracker()
	s := script
	n := len(s)
	emit := func() error {
		text := strings.TrimSpace(buf.String())
		buf.Reset()
		if text == "" {
			return nil
		}
		if copyFromStdinRE.MatchString(text) {
			return fmt.Errorf("line %d: COPY ... FROM stdin: the script holds table data; give only the post-data section (pg_dump --section=post-data)", startLine)
		}
		st := Statement{SQL: text, Line: startLine, Kind: classify(text)}
		if st.Kind == KindSetting {
			settings.set(text)
		} else {
			st.Settings = settings.current()
		}
		out = append(out, st)
		return nil
	}
	for i := 0; i < n; {
		c := s[i]
		if strings.TrimSpace(buf.String()) == "" {
			// Between statements: note where the next one starts, skip
			// psql meta-commands.
			if c == '\n' {
				line++
				buf.Reset()
				i++
				continue
			}
			if c == ' ' || c == '\t' || c == '\r' {
				i++
				continue
			}
			startLine = line
			if c == '\\' {
				for i < n && s[i] != '\n' {
					i++
				}
				continue
			}
		}
		switch {
		case c == '\n':
			line++
			buf.WriteByte(c)
			i++
		case c == '-' && i+1 < n && s[i+1] == '-':
			for i < n && s[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < n && s[i+1] == '*':
			depth := 0
			j := i
			for j < n {
				if s[j] == '/' && j+1 < n && s[j+1] == '*' {
					depth++
					j += 2
					continue
				}
				if s[j] == '*' && j+1 < n && s[j+1] == '/' {
					depth--
					j += 2
					if depth == 0 {
						break
					}
					continue
				}
				if s[j] == '\n' {
					line++
				}
				j++
			}
			if depth != 0 {
				return nil, fmt.Errorf("line %d: unterminated /* comment", startLine)
			}
			buf.WriteByte(' ')
			i = j
		case c == '\'':
			escapes := i > 0 && (s[i-1] == 'E' || s[i-1] == 'e') && (i < 2 || !isIdentByte(s[i-2]))
			j := i + 1
			for {
				if j >= n {
					return nil, fmt.Errorf("line %d: unterminated string literal", startLine)
				}
				if escapes && s[j] == '\\' {
					j += 2
					continue
				}
				if s[j] == '\'' {
					if j+1 < n && s[j+1] == '\'' {
						j += 2
						continue
					}
					break
				}
				j++
			}
			line += strings.Count(s[i:j+1], "\n")
			buf.WriteString(s[i : j+1])
			i = j + 1
		case c == '"':
			j := i + 1
			for {
				if j >= n {
					return nil, fmt.Errorf("line %d: unterminated quoted identifier", startLine)
				}
				if s[j] == '"' {
					if j+1 < n && s[j+1] == '"' {
						j += 2
						continue
					}
					break
				}
				j++
			}
			line += strings.Count(s[i:j+1], "\n")
			buf.WriteString(s[i : j+1])
			i = j + 1
		case c == '$' && (i == 0 || !isIdentByte(s[i-1])):
			tag, ok := dollarTag(s[i:])
			if !ok {
				buf.WriteByte(c)
				i++
				continue
			}
			end := strings.Index(s[i+len(tag):], tag)
			if end < 0 {
				return nil, fmt.Errorf("line %d: unterminated dollar-quoted string %s", startLine, tag)
			}
			j := i + len(tag) + end + len(tag)
			line += strings.Count(s[i:j], "\n")
			buf.WriteString(s[i:j])
			i = j
		case c == ';':
			if err := emit(); err != nil {
				return nil, err
			}
			i++
		default:
			buf.WriteByte(c)
			i++
		}
	}
	if err := emit(); err != nil {
		return nil, err
	}
	return out, nil
}

func isIdentByte(b byte) bool {
	return b == '_' || b == '$' || b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= 0x80
}

// dollarTag returns the opening "$tag$" at the start of s, if there is one.
func dollarTag(s string) (string, bool) {
	for j := 1; j < len(s); j++ {
		b := s[j]
		if b == '$' {
			return s[:j+1], true
		}
		if !(b == '_' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= 0x80 || (j > 1 && b >= '0' && b <= '9')) {
			return "", false
		}
	}
	return "", false
}

// words are the statement's tokens: keywords upper-cased, a (possibly
// qualified, possibly quoted) name as one token, punctuation dropped,
// string literals as "'".
func words(sql string) []string {
	var out []string
	var cur strings.Builder
	flush := func() {
		if cur.Len() > 0 {
			out = append(out, cur.String())
			cur.Reset()
		}
	}
	for i := 0; i < len(sql); i++ {
		c := sql[i]
		switch {
		case c == '"':
			j := i + 1
			for j < len(sql) && !(sql[j] == '"' && (j+1 >= len(sql) || sql[j+1] != '"')) {
				if sql[j] == '"' {
					j++
				}
				j++
			}
			cur.WriteString(sql[i:min(j+1, len(sql))])
			i = j
		case isIdentByte(c) || c == '.':
			cur.WriteByte(c)
		case c == '\'':
			flush()
			j := i + 1
			for j < len(sql) && !(sql[j] == '\'' && (j+1 >= len(sql) || sql[j+1] != '\'')) {
				if sql[j] == '\'' {
					j++
				}
				j++
			}
			out = append(out, "'")
			i = j
		default:
			flush()
		}
	}
	flush()
	for i, w := range out {
		if !strings.HasPrefix(w, `"`) && !strings.Contains(w, `"`) {
			out[i] = strings.ToUpper(w)
		}
	}
	return out
}

func classify(sql string) Kind {
	w := words(sql)
	at := func(i int, want ...string) bool {
		if i+len(want) > len(w) {
			return false
		}
		for k, x := range want {
			if w[i+k] != x {
				return false
			}
		}
		return true
	}
	switch {
	case at(0, "SET"), at(0, "RESET"), at(0, "SELECT", "PG_CATALOG.SET_CONFIG"), at(0, "SELECT", "SET_CONFIG"):
		return KindSetting
	case at(0, "CREATE", "INDEX"), at(0, "CREATE", "UNIQUE", "INDEX"):
		return KindIndex
	case at(0, "ALTER", "TABLE"):
		i := 2
		if at(i, "ONLY") {
			i++
		}
		i++ // the table's name
		if !at(i, "ADD", "CONSTRAINT") {
			return KindOther
		}
		i += 3 // ADD CONSTRAINT name
		switch {
		case at(i, "PRIMARY", "KEY"), at(i, "UNIQUE"), at(i, "EXCLUDE"):
			return KindIndex
		case at(i, "FOREIGN", "KEY"):
			return KindForeignKey
		}
	}
	return KindOther
}

// settingsTracker follows the session settings a script makes, one entry
// per setting name, in the order first seen.
type settingsTracker struct {
	order []string
	stmt  map[string]string
}

func newSettingsTracker() *settingsTracker {
	return &settingsTracker{stmt: map[string]string{}}
}

func (t *settingsTracker) set(sql string) {
	key := settingKey(sql)
	if _, ok := t.stmt[key]; !ok {
		t.order = append(t.order, key)
	}
	t.stmt[key] = sql
}

func (t *settingsTracker) current() []string {
	out := make([]string, 0, len(t.order))
	for _, k := range t.order {
		out = append(out, t.stmt[k])
	}
	return out
}

var setConfigKeyRE = regexp.MustCompile(`(?i)set_config\s*\(\s*'([^']*)'`)

// settingKey is the name a SET, RESET or set_config statement changes.
func settingKey(sql string) string {
	if m := setConfigKeyRE.FindStringSubmatch(sql); m != nil {
		return strings.ToLower(m[1])
	}
	w := words(sql)
	i := 1
	if i < len(w) && (w[i] == "SESSION" || w[i] == "LOCAL") {
		i++
	}
	if i < len(w) {
		return strings.ToLower(w[i])
	}
	return strings.ToLower(sql)
}
