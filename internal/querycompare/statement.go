package querycompare

import (
	"regexp"
	"strings"
	"unicode"
)

// Origin says where a statement came from.
type Origin string

const (
	FromStatStatements Origin = "pg_stat_statements" // blue's top statements by total time
	FromFile           Origin = "file"               // the --queries file
)

// Statement is one statement to compare.
type Statement struct {
	Name   string `json:"name"`
	SQL    string `json:"sql"`
	Origin Origin `json:"origin"`
	// Params are the values of $1, $2, ... as text (nil is NULL): the server
	// reads them as it would read literals of the parameter's type.
	Params []*string `json:"params,omitempty"`
	// From pg_stat_statements: its queryid, calls and total and mean time on blue.
	QueryID     int64   `json:"queryid,omitempty"`
	Calls       int64   `json:"calls,omitempty"`
	TotalTimeMS float64 `json:"total_time_ms,omitempty"`
	MeanTimeMS  float64 `json:"mean_time_ms,omitempty"`
}

// Kind is what EXPLAIN may do with a statement.
type Kind int

const (
	KindRead    Kind = iota // SELECT, WITH, VALUES, TABLE: run read-only on both sides
	KindWrite               // INSERT, UPDATE, DELETE, MERGE: only with AllowWrites, on green only
	KindUtility             // anything else (DDL, COPY, SET, BEGIN, ...): not plannable
)

// Classify reads the statement's first keyword, after comments and
// opening parentheses. A WITH that holds a data-modifying CTE reads as a
// read: the read-only transaction refuses it, and the runner reports it as
// a write then.
func Classify(sql string) (Kind, string) {
	kw := strings.ToUpper(firstWord(sql))
	switch kw {
	case "SELECT", "WITH", "VALUES", "TABLE":
		return KindRead, kw
	case "INSERT", "UPDATE", "DELETE", "MERGE":
		return KindWrite, kw
	}
	return KindUtility, kw
}

// firstWord is the first SQL keyword of s, skipping whitespace, comments
// and parentheses.
func firstWord(s string) string {
	for {
		s = strings.TrimLeftFunc(s, func(r rune) bool { return unicode.IsSpace(r) || r == '(' })
		switch {
		case strings.HasPrefix(s, "--"):
			i := strings.IndexByte(s, '\n')
			if i < 0 {
				return ""
			}
			s = s[i+1:]
		case strings.HasPrefix(s, "/*"):
			i := strings.Index(s, "*/")
			if i < 0 {
				return ""
			}
			s = s[i+2:]
		default:
			end := strings.IndexFunc(s, func(r rune) bool { return !(unicode.IsLetter(r) || r == '_') })
			if end < 0 {
				return s
			}
			return s[:end]
		}
	}
}

// Placeholders is the highest $N the statement refers to outside quotes
// and comments (0 for none): a statement with placeholders and no values
// cannot be executed, only planned generically.
func Placeholders(sql string) int {
	maxN := 0
	scanSQL(sql, func(i int) {
		n := 0
		j := i + 1
		for j < len(sql) && sql[j] >= '0' && sql[j] <= '9' {
			n = n*10 + int(sql[j]-'0')
			j++
		}
		if n > maxN {
			maxN = n
		}
	}, nil)
	return maxN
}

// scanSQL walks s outside string literals, quoted identifiers, dollar
// quotes and comments, calling dollar at each '$' that starts a
// placeholder ($ followed by a digit) and semicolon at each ';'.
func scanSQL(s string, dollar func(int), semicolon func(int)) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'' || c == '"':
			j := i + 1
			for j < len(s) {
				if s[j] == c {
					if j+1 < len(s) && s[j+1] == c { // doubled quote
						j += 2
						continue
					}
					break
				}
				j++
			}
			i = j
		case c == '-' && i+1 < len(s) && s[i+1] == '-':
			j := strings.IndexByte(s[i:], '\n')
			if j < 0 {
				return
			}
			i += j
		case c == '/' && i+1 < len(s) && s[i+1] == '*':
			j := strings.Index(s[i+2:], "*/")
			if j < 0 {
				return
			}
			i += j + 3
		case c == '$':
			if i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9' {
				if dollar != nil {
					dollar(i)
				}
				continue
			}
			// A dollar quote: $$ or $tag$ (a tag does not follow an identifier character).
			if i > 0 && isIdentChar(s[i-1]) {
				continue
			}
			j := i + 1
			for j < len(s) && isIdentChar(s[j]) && !(j == i+1 && s[j] >= '0' && s[j] <= '9') {
				j++
			}
			if j >= len(s) || s[j] != '$' {
				continue
			}
			tag := s[i : j+1]
			end := strings.Index(s[j+1:], tag)
			if end < 0 {
				return
			}
			i = j + 1 + end + len(tag) - 1
		case c == ';':
			if semicolon != nil {
				semicolon(i)
			}
		}
	}
}

func isIdentChar(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

// oneLine is a statement on one line with its runs of spaces squeezed, for
// tables and logs.
func oneLine(sql string, max int) string {
	s := strings.Join(strings.Fields(sql), " ")
	if max > 0 && len([]rune(s)) > max {
		s = string([]rune(s)[:max-1]) + "…"
	}
	return s
}

// sideEffects are functions whose effect outlives a rolled-back READ ONLY
// transaction (session locks, other sessions, statistics, files, the
// server's configuration, other databases): a statement calling one is
// planned, never run.
var sideEffects = regexp.MustCompile(`(?i)\b(pg_stat_statements_reset|pg_stat_reset\w*|pg_terminate_backend|pg_cancel_backend|pg_(try_)?advisory_\w*|pg_reload_conf|pg_rotate_logfile|pg_switch_wal|pg_create_\w*_slot|pg_drop_replication_slot|pg_replication_origin_\w*|pg_notify|pg_file_\w*|lo_\w+|dblink\w*|set_config|pg_promote|pg_log_backend_memory_contexts)\s*\(`)

// SideEffect names the first function of sql whose effect a rollback
// does not undo ("" for none).
func SideEffect(sql string) string {
	m := sideEffects.FindStringSubmatch(sql)
	if m == nil {
		return ""
	}
	return strings.ToLower(m[1])
}
