package steps

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/pgshift/pgshift/internal/pg"
)

// paramRename is a server parameter PostgreSQL renamed: from major since
// on, it is called to; convert, when the unit changed, turns the old value
// into the new one.
type paramRename struct {
	since   int
	to      string
	convert func(value string, walSegmentBytes int64) (string, error)
	note    string
}

// renamedParams are the parameters renamed between PostgreSQL 10 and 18,
// by old name (release notes of each major; checked against pg_settings of
// each major).
var renamedParams = map[string]paramRename{
	// 13: the count of WAL segments became a size.
	"wal_keep_segments": {since: 13, to: "wal_keep_size", convert: walKeepSize,
		note: "a size in MB, not a count of segments: segments x wal_segment_size"},
	// 16: renamed, same values (off, on, regress).
	"force_parallel_mode": {since: 16, to: "debug_parallel_query"},
	// 18: renamed, and takes a colon-separated list; the old name is still
	// accepted as an alias.
	"ssl_ecdh_curve": {since: 18, to: "ssl_groups"},
}

// paramRemoval is a parameter removed in major in, with what replaces it.
type paramRemoval struct {
	in   int
	note string
}

// removedParams are the parameters removed between PostgreSQL 13 and 18
// without a successor (release notes; checked against pg_settings of each
// major).
var removedParams = map[string]paramRemoval{
	"operator_precedence_warning":       {14, "it only warned about the operator precedence of PostgreSQL 9.4"},
	"vacuum_cleanup_index_scale_factor": {14, "ignored since 13.3"},
	"stats_temp_directory":              {15, "statistics are kept in shared memory"},
	"lc_collate":                        {16, "read-only: the database's collation is pg_database.datcollate"},
	"lc_ctype":                          {16, "read-only: the database's ctype is pg_database.datctype"},
	"promote_trigger_file":              {16, "promote with pg_ctl promote or pg_promote()"},
	"vacuum_defer_cleanup_age":          {16, "use hot_standby_feedback or a replication slot"},
	"db_user_namespace":                 {17, "no replacement: give each user a role of its own name"},
	"old_snapshot_threshold":            {17, "no replacement: bound long transactions with idle_in_transaction_session_timeout or transaction_timeout (17)"},
	"trace_recovery_messages":           {17, "no longer needed: recovery messages follow log_min_messages"},
}

// mappedParam is a parameter of blue as green takes it.
type mappedParam struct {
	name, value string
	// removedIn is green's first major without the parameter, 0 when green
	// has it; note says what replaces it.
	removedIn int
	note      string
	// renamed is blue's name when green calls it otherwise.
	renamed string
}

// mapParam maps a parameter of blue (major blueMajor) to green's major: a
// renamed one gets its new name (and value, when the unit changed), a
// removed one is marked. Names not in the maps pass unchanged.
func mapParam(name, value string, blueMajor, greenMajor int, walSegmentBytes int64) (mappedParam, error) {
	m := mappedParam{name: name, value: value}
	if r, ok := renamedParams[name]; ok && blueMajor < r.since && greenMajor >= r.since {
		m.name, m.renamed, m.note = r.to, name, r.note
		if r.convert != nil {
			v, err := r.convert(value, walSegmentBytes)
			if err != nil {
				return m, fmt.Errorf("parameter %s = %q: %w", name, value, err)
			}
			m.value = v
		}
		return m, nil
	}
	if r, ok := removedParams[name]; ok && blueMajor < r.in && greenMajor >= r.in {
		m.removedIn, m.note = r.in, r.note
	}
	return m, nil
}

// renameHint says, for a parameter name green does not know, what it became
// or when it went; "" when it is neither renamed nor removed.
func renameHint(name string, greenMajor int) string {
	if r, ok := renamedParams[name]; ok && greenMajor >= r.since {
		s := fmt.Sprintf("renamed to %s in PostgreSQL %d", r.to, r.since)
		if r.note != "" {
			s += " (" + r.note + ")"
		}
		return s
	}
	if r, ok := removedParams[name]; ok && greenMajor >= r.in {
		return fmt.Sprintf("removed in PostgreSQL %d (%s)", r.in, r.note)
	}
	return ""
}

// walKeepSize turns wal_keep_segments into wal_keep_size in MB.
func walKeepSize(segments string, walSegmentBytes int64) (string, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(segments), 10, 64)
	if err != nil || n < 0 {
		return "", fmt.Errorf("not a count of segments")
	}
	if walSegmentBytes <= 0 {
		walSegmentBytes = 16 << 20
	}
	return strconv.FormatInt(n*walSegmentBytes>>20, 10) + "MB", nil
}

// neverCompared are parameters that differ between two servers by nature
// (addresses, paths, the server's own identity and topology) or may carry
// secrets (connection strings, commands): the comparison leaves them out,
// and target.settings refuses those that may carry secrets.
var neverCompared = map[string]string{
	"port": "address", "listen_addresses": "address", "unix_socket_directories": "address",
	"unix_socket_group": "address", "unix_socket_permissions": "address", "bonjour_name": "address",
	"data_directory": "path", "config_file": "path", "hba_file": "path", "ident_file": "path",
	"external_pid_file": "path", "ssl_cert_file": "path", "ssl_key_file": "path", "ssl_ca_file": "path",
	"ssl_crl_file": "path", "ssl_crl_dir": "path", "ssl_dh_params_file": "path", "krb_server_keyfile": "path",
	"log_directory": "path", "stats_temp_directory": "path", "promote_trigger_file": "path",
	"cluster_name": "identity", "event_source": "identity",
	"synchronous_standby_names": "topology", "primary_slot_name": "topology", "recovery_target": "topology",
	"recovery_target_name": "topology", "recovery_target_time": "topology", "recovery_target_xid": "topology",
	"recovery_target_lsn": "topology", "recovery_target_timeline": "topology", "recovery_target_action": "topology",
	"recovery_target_inclusive": "topology", "archive_library": "topology",
	"primary_conninfo": "secret", "archive_command": "secret", "restore_command": "secret",
	"archive_cleanup_command": "secret", "recovery_end_command": "secret", "ssl_passphrase_command": "secret",
}

// secretParam says whether a parameter's value may hold a secret: it is
// never compared, shown, recorded or set by pgshift. Besides the known
// commands and connection strings, any name that says so (an extension's
// or the application's own app.api_token).
func secretParam(name string) bool {
	if neverCompared[name] == "secret" {
		return true
	}
	n := strings.ToLower(name)
	for _, w := range []string{"password", "passwd", "secret", "token", "conninfo", "passphrase", "credential"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return strings.HasSuffix(n, "_key") || strings.HasSuffix(n, ".key")
}

// listParams are the parameters whose value is a list of identifiers that
// SET quotes one by one (GUC_LIST_QUOTE; pg_dump's variable_is_guc_list_quote):
// their value is given to SET as one literal per element, or
// search_path = 'app, public' would name one schema "app, public".
var listParams = map[string]bool{
	"search_path": true, "temp_tablespaces": true, "session_preload_libraries": true,
	"local_preload_libraries": true, "shared_preload_libraries": true, "unix_socket_directories": true,
}

// setValueSQL is the value part of SET name TO ...: quoted literals, one
// per element for a list parameter.
func setValueSQL(name, value string) string {
	if !listParams[name] {
		return pg.QuoteLiteral(value)
	}
	elems := splitGUCList(value)
	if len(elems) == 0 {
		return "''"
	}
	q := make([]string, len(elems))
	for i, e := range elems {
		q[i] = pg.QuoteLiteral(e)
	}
	return strings.Join(q, ", ")
}

// splitGUCList splits a stored list value ("$user", public) into its
// elements as pg_dump's SplitGUCList does: commas outside double quotes
// separate, quotes are removed and doubled quotes undone, blanks around
// elements dropped.
func splitGUCList(s string) []string {
	var out []string
	i := 0
	skipBlank := func() {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
			i++
		}
	}
	skipBlank()
	if i == len(s) {
		return nil
	}
	for {
		var b strings.Builder
		if i < len(s) && s[i] == '"' {
			i++
			for i < len(s) {
				if s[i] == '"' {
					if i+1 < len(s) && s[i+1] == '"' {
						b.WriteByte('"')
						i += 2
						continue
					}
					i++
					break
				}
				b.WriteByte(s[i])
				i++
			}
		} else {
			start := i
			for i < len(s) && s[i] != ',' {
				i++
			}
			b.WriteString(strings.TrimRight(s[start:i], " \t\n\r"))
		}
		out = append(out, b.String())
		skipBlank()
		if i >= len(s) || s[i] != ',' {
			return out
		}
		i++
		skipBlank()
	}
}

// canonical is a parameter value reduced so that two spellings of the same
// setting compare equal: memory in bytes, time in microseconds (from the
// parameter's pg_settings unit when the value has none), booleans as on or
// off, the rest as written (enums case-insensitively).
func canonical(value, unit, vartype string) string {
	v := strings.TrimSpace(value)
	switch vartype {
	case "bool":
		switch strings.ToLower(v) {
		case "on", "true", "yes", "1", "t", "y", "tr", "tru", "ye":
			return "on"
		case "off", "false", "no", "0", "f", "n", "of", "fa", "fal", "fals":
			return "off"
		}
		return strings.ToLower(v)
	case "enum":
		return strings.ToLower(v)
	case "integer", "real":
		if n, ok := inBaseUnit(v, unit); ok {
			return strconv.FormatFloat(n, 'g', -1, 64)
		}
	}
	return v
}

var memoryUnits = map[string]float64{"B": 1, "kB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}
var timeUnits = map[string]float64{"us": 1, "ms": 1e3, "s": 1e6, "min": 60e6, "h": 3600e6, "d": 86400e6}

// unitSize is the size of a pg_settings unit ("8kB", "16MB", "ms") in
// bytes or microseconds, and which of the two it measures.
func unitSize(unit string) (size float64, memory, ok bool) {
	if unit == "" {
		return 0, false, false
	}
	if f, ok := timeUnits[unit]; ok {
		return f, false, true
	}
	i := 0
	for i < len(unit) && unit[i] >= '0' && unit[i] <= '9' {
		i++
	}
	mult := 1.0
	if i > 0 {
		mult, _ = strconv.ParseFloat(unit[:i], 64)
	}
	if f, ok := memoryUnits[unit[i:]]; ok {
		return mult * f, true, true
	}
	return 0, false, false
}

// inBaseUnit reads a number with an optional unit (64MB, 30s, 200) as
// bytes or microseconds; a bare number is in the parameter's unit.
func inBaseUnit(v, unit string) (float64, bool) {
	i := 0
	for i < len(v) && (v[i] >= '0' && v[i] <= '9' || v[i] == '.' || v[i] == '-' || v[i] == '+' || v[i] == 'e' || v[i] == 'E') {
		i++
	}
	n, err := strconv.ParseFloat(v[:i], 64)
	if err != nil {
		return 0, false
	}
	suffix := strings.TrimSpace(v[i:])
	size, memory, ok := unitSize(unit)
	if suffix == "" {
		if !ok {
			return n, true
		}
		return n * size, true
	}
	if !ok {
		return 0, false
	}
	if memory {
		f, ok := memoryUnits[suffix]
		return n * f, ok
	}
	f, ok := timeUnits[suffix]
	return n * f, ok
}

// shownValue is a pg_settings value as SHOW writes it: 65536 in kB is
// 64MB, 30000 in ms is 30s.
func shownValue(setting, unit string) string {
	size, memory, ok := unitSize(unit)
	if !ok {
		return setting
	}
	n, err := strconv.ParseFloat(setting, 64)
	if err != nil || n <= 0 || n != math.Trunc(n) {
		return setting // -1 and 0 mean "off" or "no limit", as SHOW writes them
	}
	base := n * size
	if memory {
		for _, u := range []string{"TB", "GB", "MB", "kB"} {
			if f := memoryUnits[u]; base >= f && math.Mod(base, f) == 0 {
				return strconv.FormatFloat(base/f, 'f', -1, 64) + u
			}
		}
		return strconv.FormatFloat(base, 'f', -1, 64) + "B"
	}
	for _, u := range []string{"d", "h", "min", "s", "ms"} {
		if f := timeUnits[u]; base >= f && math.Mod(base, f) == 0 {
			return strconv.FormatFloat(base/f, 'f', -1, 64) + u
		}
	}
	return strconv.FormatFloat(base, 'f', -1, 64) + "us"
}
