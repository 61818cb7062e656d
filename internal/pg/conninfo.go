package pg

import (
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
)

// redactConninfoErr hides the password should an error echo the statement
// or the conninfo: the password_env one and one written into the DSN
// itself, each also in the escaped forms it takes inside the conninfo and
// inside the SQL literal (replaced first, so no fragment survives).
func RedactConninfoErr(msg, dsn, password string) string {
	secrets := []string{password}
	if kv, err := ParseConninfo(dsn); err == nil {
		for _, k := range secretKeywords {
			secrets = append(secrets, kv[k])
		}
	}
	for _, p := range secrets {
		if p == "" {
			continue
		}
		inConninfo := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(p)
		inLiteral := strings.NewReplacer(`'`, `''`, `\`, `\\`).Replace(inConninfo)
		for _, form := range []string{inLiteral, inConninfo, p} {
			msg = strings.ReplaceAll(msg, form, "********")
		}
	}
	return msg
}

// libpqKeywords are the connection parameters libpq knows; anything else in
// a DSN (pgx's pool settings) would make green's libpq refuse the conninfo.
var libpqKeywords = map[string]bool{
	"host": true, "hostaddr": true, "port": true, "dbname": true, "user": true, "password": true,
	"passfile": true, "require_auth": true, "channel_binding": true, "connect_timeout": true,
	"client_encoding": true, "options": true, "application_name": true, "fallback_application_name": true,
	"keepalives": true, "keepalives_idle": true, "keepalives_interval": true, "keepalives_count": true,
	"tcp_user_timeout": true, "sslmode": true, "sslnegotiation": true, "sslcompression": true,
	"sslcert": true, "sslkey": true, "sslpassword": true, "sslcertmode": true, "sslrootcert": true,
	"sslcrl": true, "sslcrldir": true, "sslsni": true, "requirepeer": true, "ssl_min_protocol_version": true,
	"ssl_max_protocol_version": true, "gssencmode": true, "krbsrvname": true, "gsslib": true,
	"gssdelegation": true, "service": true, "target_session_attrs": true, "load_balance_hosts": true,
}

// conninfoOrder puts the keywords a reader looks for first.
var conninfoOrder = []string{"host", "hostaddr", "port", "dbname", "user"}

// subscriptionConninfo turns blue's DSN (URL or keyword/value) into a libpq
// keyword/value string for CREATE SUBSCRIPTION ... CONNECTION, every value
// quoted the libpq way. password, from password_env, is how green
// authenticates to blue: it is stored in pg_subscription (readable by
// superusers only) and never shown; the redacted form replaces it.
func SubscriptionConninfo(dsn, password string) (full, redacted string, err error) {
	kv, err := ParseConninfo(dsn)
	if err != nil {
		return "", "", err
	}
	if password != "" {
		kv["password"] = password
	}
	// The secrets go last, in this order, and only the full form has them.
	secrets := map[string]string{}
	for _, k := range secretKeywords {
		if v, ok := kv[k]; ok {
			secrets[k] = v
			delete(kv, k)
		}
	}
	full = FormatConninfo(kv)
	redacted = full
	for _, k := range secretKeywords {
		if v, ok := secrets[k]; ok {
			full += " " + k + "=" + ConninfoQuote(v)
			redacted += " " + k + "=********"
		}
	}
	return full, redacted, nil
}

// secretKeywords are the conninfo values never shown: the password, and
// the passphrase of the client key.
var secretKeywords = []string{"password", "sslpassword"}

// formatConninfo writes keyword/value pairs, the ones a reader looks for
// first, the rest sorted.
func FormatConninfo(kv map[string]string) string {
	var keys []string
	seen := map[string]bool{}
	for _, k := range conninfoOrder {
		if _, ok := kv[k]; ok {
			keys = append(keys, k)
			seen[k] = true
		}
	}
	var rest []string
	for k := range kv {
		if !seen[k] {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	keys = append(keys, rest...)
	pairs := make([]string, len(keys))
	for i, k := range keys {
		pairs[i] = k + "=" + ConninfoQuote(kv[k])
	}
	return strings.Join(pairs, " ")
}

// conninfoQuote writes a libpq keyword value: bare when it holds nothing
// libpq would split or unescape (so plans stay readable), else in single
// quotes with ' and \ escaped by a backslash.
func ConninfoQuote(v string) string {
	if v != "" && !strings.ContainsAny(v, " \t\n\r'\\=") {
		return v
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// parseConninfo reads a DSN in either libpq form into keyword/value pairs,
// keeping only libpq keywords. Errors never echo the DSN; callers name the
// spec field.
func ParseConninfo(dsn string) (map[string]string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return parseConninfoURL(dsn)
	}
	return parseConninfoKeywords(dsn)
}

func parseConninfoURL(dsn string) (map[string]string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return nil, errors.New("not a valid postgres:// URL")
	}
	kv := map[string]string{}
	if u.User != nil {
		if n := u.User.Username(); n != "" {
			kv["user"] = n
		}
		if p, ok := u.User.Password(); ok {
			kv["password"] = p
		}
	}
	if u.Host != "" {
		var hosts, ports []string
		anyPort := false
		for _, hp := range strings.Split(u.Host, ",") {
			h, p := hp, ""
			if i := strings.LastIndex(hp, ":"); i >= 0 && !strings.HasSuffix(hp, "]") {
				h, p = hp[:i], hp[i+1:]
			}
			h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
			hosts = append(hosts, h)
			ports = append(ports, p)
			if p != "" {
				anyPort = true
			}
		}
		kv["host"] = strings.Join(hosts, ",")
		if anyPort {
			kv["port"] = strings.Join(ports, ",")
		}
	}
	if db := strings.TrimPrefix(u.Path, "/"); db != "" {
		kv["dbname"] = db
	}
	for k, vs := range u.Query() {
		if libpqKeywords[k] && len(vs) > 0 {
			kv[k] = vs[len(vs)-1]
		}
	}
	return kv, nil
}

func parseConninfoKeywords(s string) (map[string]string, error) {
	kv := map[string]string{}
	i := 0
	skip := func() {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
			i++
		}
	}
	for {
		skip()
		if i >= len(s) {
			return kv, nil
		}
		start := i
		for i < len(s) && s[i] != '=' && s[i] != ' ' && s[i] != '\t' {
			i++
		}
		key := s[start:i]
		skip()
		if i >= len(s) || s[i] != '=' {
			if !libpqKeywords[key] {
				// Likely the tail of an unquoted value (a password with a
				// space): never echo it.
				return nil, errors.New("a word without \"=value\" (quote values that hold spaces: password='a b')")
			}
			return nil, fmt.Errorf("keyword %q has no value", key)
		}
		i++
		skip()
		var val strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			closed := false
			for i < len(s) {
				c := s[i]
				if c == '\\' && i+1 < len(s) {
					val.WriteByte(s[i+1])
					i += 2
					continue
				}
				if c == '\'' {
					closed = true
					i++
					break
				}
				val.WriteByte(c)
				i++
			}
			if !closed {
				return nil, fmt.Errorf("unterminated quoted value for %q", key)
			}
		} else {
			for i < len(s) && s[i] != ' ' && s[i] != '\t' {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				val.WriteByte(s[i])
				i++
			}
		}
		if libpqKeywords[key] {
			kv[key] = val.String()
		}
	}
}
