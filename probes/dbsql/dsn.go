package dbsql

import (
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"github.com/blindspot-dev/blindspot/probes/label"
)

// serverOf holds the server_address, server_port and db_namespace of a
// pool, each "" where not known for sure.
type serverOf struct {
	address, port, namespace string
}

// pqVersionRead reports whether lib/pq at version v builds its connection
// from a DSN the way pqServer replays it: v1.10.x, whose NewConnector was
// read for it (defaults, then the process's PG* environment, then the
// DSN, a URL being rewritten into key=value pairs first). Other versions
// get no address rather than one replayed from the wrong rules.
func pqVersionRead(v string) bool {
	return strings.HasPrefix(v, "v1.10.")
}

// pqServer returns what a lib/pq v1.10 DSN itself says of the server and
// database. Only values the DSN names are returned: lib/pq applies them
// over its defaults and over the process's PGHOST, PGPORT and PGDATABASE,
// which the program may have changed with os.Setenv after it started (so
// its /proc environ does not prove them). A host that is a unix socket
// directory (starting with "/") is not an address. ok is false for a DSN
// lib/pq would refuse.
func pqServer(dsn string) (s serverOf, ok bool) {
	// What a program holds as its DSN is text; anything else was misread.
	if _, ok := label.Text([]byte(dsn), false, true); !ok {
		return serverOf{}, false
	}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if dsn, ok = pqURLToConninfo(dsn); !ok {
			return serverOf{}, false
		}
	}
	o, ok := parseConninfo(dsn)
	if !ok {
		return serverOf{}, false
	}
	// A bracketed host is what lib/pq keeps of "[::1]" without a port, and
	// cannot dial.
	if h := o["host"]; h != "" && !strings.HasPrefix(h, "/") && !strings.ContainsAny(h, "[]") {
		s.address = h
	}
	if p, err := strconv.Atoi(o["port"]); err == nil && p >= 1 && p <= 65535 && o["port"] == strconv.Itoa(p) {
		s.port = o["port"]
	}
	s.namespace = o["dbname"]
	for _, v := range []string{s.address, s.namespace} {
		if _, ok := label.Text([]byte(v), false, false); !ok {
			return serverOf{}, false
		}
	}
	return s, true
}

// pqURLToConninfo rewrites a postgres:// URL into key='value' pairs as
// lib/pq's ParseURL does: user, password, host and port, dbname from the
// path, then every query parameter, empty values left out, the pairs
// sorted as strings (so that of two host pairs, from the authority and
// from the query, the one sorting last wins).
func pqURLToConninfo(dsn string) (string, bool) {
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", false
	}
	var kvs []string
	esc := strings.NewReplacer(`'`, `\'`, `\`, `\\`)
	add := func(k, v string) {
		if v != "" {
			kvs = append(kvs, k+"='"+esc.Replace(v)+"'")
		}
	}
	if u.User != nil {
		add("user", u.User.Username())
		p, _ := u.User.Password()
		add("password", p)
	}
	if h, p, err := net.SplitHostPort(u.Host); err != nil {
		add("host", u.Host)
	} else {
		add("host", h)
		add("port", p)
	}
	if u.Path != "" {
		add("dbname", u.Path[1:])
	}
	q := u.Query()
	for k := range q {
		add(k, q.Get(k))
	}
	sort.Strings(kvs)
	return strings.Join(kvs, " "), true
}

// parseConninfo parses key=value pairs as libpq's conninfo_parse (and
// lib/pq's parseOpts) do: white space around "=" and between pairs,
// values bare (a backslash escapes the next character) or single-quoted
// (backslash escapes inside), a later key replacing an earlier one.
func parseConninfo(s string) (map[string]string, bool) {
	o := map[string]string{}
	r := []rune(s)
	i := 0
	skip := func() {
		for i < len(r) && unicode.IsSpace(r[i]) {
			i++
		}
	}
	for {
		skip()
		if i >= len(r) {
			return o, true
		}
		start := i
		for i < len(r) && !unicode.IsSpace(r[i]) && r[i] != '=' {
			i++
		}
		key := string(r[start:i])
		skip()
		if i >= len(r) || r[i] != '=' {
			return nil, false
		}
		i++
		skip()
		if i >= len(r) {
			o[key] = ""
			return o, true
		}
		var val []rune
		if r[i] != '\'' {
			for i < len(r) && !unicode.IsSpace(r[i]) {
				if r[i] == '\\' {
					i++
					if i >= len(r) {
						return nil, false
					}
				}
				val = append(val, r[i])
				i++
			}
		} else {
			i++
			for {
				if i >= len(r) {
					return nil, false // unterminated quote
				}
				if r[i] == '\'' {
					i++
					break
				}
				if r[i] == '\\' {
					i++
					if i >= len(r) {
						return nil, false
					}
				}
				val = append(val, r[i])
				i++
			}
		}
		o[key] = string(val)
	}
}
