package dbsql

import "strings"

// sqlVerbs are the statement verbs reported as db_operation_name; other
// first words give no operation name, so the label stays bounded.
var sqlVerbs = map[string]bool{
	"SELECT": true, "INSERT": true, "UPDATE": true, "DELETE": true, "MERGE": true,
	"UPSERT": true, "REPLACE": true, "WITH": true, "VALUES": true, "CREATE": true,
	"DROP": true, "ALTER": true, "TRUNCATE": true, "BEGIN": true, "START": true,
	"COMMIT": true, "ROLLBACK": true, "SAVEPOINT": true, "RELEASE": true, "SET": true,
	"SHOW": true, "EXPLAIN": true, "CALL": true, "EXEC": true, "EXECUTE": true,
	"PRAGMA": true, "VACUUM": true, "ANALYZE": true, "GRANT": true, "REVOKE": true,
	"COPY": true, "LOCK": true, "LISTEN": true, "NOTIFY": true, "DECLARE": true,
	"FETCH": true, "CLOSE": true, "PREPARE": true, "DEALLOCATE": true, "USE": true,
	"DESCRIBE": true, "ATTACH": true, "DETACH": true, "REINDEX": true, "REFRESH": true,
}

// maxCollection bounds a collection name.
const maxCollection = 64

// parseSQL returns the verb of a statement (upper case, "" when unknown)
// and the one table it names, where it is a simple statement on one table:
// SELECT … FROM t (no join, no second table, no UNION), INSERT INTO t,
// UPDATE t, DELETE FROM t, CREATE/DROP/ALTER TABLE t, TRUNCATE t.
// truncated says q is only the start of the statement: a table name that
// reaches its end is not trusted.
// maxVerbLen is the length of the longest verb.
var maxVerbLen = func() int {
	n := 0
	for v := range sqlVerbs {
		n = max(n, len(v))
	}
	return n
}()

func parseSQL(q string, truncated bool) (op, collection string) {
	l := sqlLexer{s: q}
	w := l.word()
	if len(w) > maxVerbLen { // no need to upper-case a long word
		return "", ""
	}
	op = strings.ToUpper(w)
	if !sqlVerbs[op] {
		return "", ""
	}
	table := func() string {
		t, complete := l.ident()
		if t == "" || (truncated && !complete) {
			return ""
		}
		return t
	}
	switch op {
	case "SELECT":
		return op, selectTable(&l, truncated)
	case "INSERT", "REPLACE", "UPSERT":
		if strings.EqualFold(l.peekWord(), "INTO") {
			l.word()
		}
		return op, table()
	case "UPDATE":
		return op, table()
	case "DELETE":
		if !strings.EqualFold(l.word(), "FROM") {
			return op, ""
		}
		return op, table()
	case "TRUNCATE":
		if strings.EqualFold(l.peekWord(), "TABLE") {
			l.word()
		}
		return op, table()
	case "CREATE", "DROP", "ALTER":
		if strings.EqualFold(l.peekWord(), "TEMP") || strings.EqualFold(l.peekWord(), "TEMPORARY") {
			l.word()
		}
		if !strings.EqualFold(l.word(), "TABLE") {
			return op, ""
		}
		if strings.EqualFold(l.peekWord(), "IF") {
			l.word()
			if strings.EqualFold(l.peekWord(), "NOT") {
				l.word()
			}
			if !strings.EqualFold(l.word(), "EXISTS") {
				return op, ""
			}
		}
		return op, table()
	}
	return op, ""
}

// selectTable finds the table of a SELECT with exactly one, at nesting
// depth 0.
func selectTable(l *sqlLexer, truncated bool) string {
	// Find FROM at depth 0.
	for {
		tok, depth := l.token()
		if tok == "" {
			return ""
		}
		if depth == 0 && strings.EqualFold(tok, "FROM") {
			break
		}
		if depth == 0 && strings.EqualFold(tok, "UNION") {
			return ""
		}
	}
	t, complete := l.ident()
	if t == "" || (truncated && !complete) {
		return ""
	}
	// What follows must not add a table: no comma, JOIN or second FROM at
	// depth 0.
	for {
		tok, depth := l.token()
		if tok == "" {
			if truncated {
				return "" // the rest is unknown
			}
			return t
		}
		if depth != 0 {
			continue
		}
		switch strings.ToUpper(tok) {
		case ",", "JOIN", "FROM", "UNION", "INTERSECT", "EXCEPT":
			return ""
		case "WHERE", "GROUP", "ORDER", "LIMIT", "HAVING", "WINDOW", "OFFSET", "FETCH", "FOR", ";":
			return t
		}
	}
}

// sqlLexer walks a statement, skipping whitespace, comments and string
// literals.
type sqlLexer struct {
	s     string
	i     int
	depth int
}

func (l *sqlLexer) skip() {
	for l.i < len(l.s) {
		c := l.s[l.i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			l.i++
		case c == '-' && l.i+1 < len(l.s) && l.s[l.i+1] == '-':
			for l.i < len(l.s) && l.s[l.i] != '\n' {
				l.i++
			}
		case c == '/' && l.i+1 < len(l.s) && l.s[l.i+1] == '*':
			end := strings.Index(l.s[l.i+2:], "*/")
			if end < 0 {
				l.i = len(l.s)
			} else {
				l.i += 2 + end + 2
			}
		default:
			return
		}
	}
}

func isWordByte(c byte) bool {
	return c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

// word returns the next bare word, skipping a leading "(".
func (l *sqlLexer) word() string {
	l.skip()
	for l.i < len(l.s) && l.s[l.i] == '(' {
		l.i++
		l.skip()
	}
	start := l.i
	for l.i < len(l.s) && isWordByte(l.s[l.i]) {
		l.i++
	}
	return l.s[start:l.i]
}

func (l *sqlLexer) peekWord() string {
	save := *l
	w := l.word()
	*l = save
	return w
}

// ident reads a possibly quoted, possibly schema-qualified name; complete
// says something followed it.
func (l *sqlLexer) ident() (name string, complete bool) {
	l.skip()
	var b strings.Builder
	for {
		if l.i >= len(l.s) {
			return "", false
		}
		c := l.s[l.i]
		switch c {
		case '"', '`', '[':
			closer := c
			if c == '[' {
				closer = ']'
			}
			end := strings.IndexByte(l.s[l.i+1:], closer)
			if end < 0 || b.Len()+end > maxCollection {
				return "", false // unterminated, or too long to name a collection
			}
			b.WriteString(l.s[l.i+1 : l.i+1+end])
			l.i += end + 2
		default:
			start := l.i
			for l.i < len(l.s) && isWordByte(l.s[l.i]) {
				l.i++
			}
			if l.i == start || b.Len()+l.i-start > maxCollection {
				return "", false // no name, or one too long to copy
			}
			b.WriteString(l.s[start:l.i])
		}
		if l.i < len(l.s) && l.s[l.i] == '.' {
			b.WriteByte('.')
			l.i++
			continue
		}
		break
	}
	name = b.String()
	if len(name) > maxCollection || !validName(name) {
		return "", false
	}
	return name, l.i < len(l.s)
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isWordByte(c) && c != '.' && c != '-' && c != ' ' {
			return false
		}
	}
	return true
}

// token returns the next token at its nesting depth: a word, or one
// punctuation character; string literals are skipped whole.
func (l *sqlLexer) token() (string, int) {
	for {
		l.skip()
		if l.i >= len(l.s) {
			return "", l.depth
		}
		c := l.s[l.i]
		switch {
		case c == '\'' || c == '"' || c == '`':
			end := strings.IndexByte(l.s[l.i+1:], c)
			if end < 0 {
				l.i = len(l.s)
				return "", l.depth
			}
			l.i += end + 2
			continue
		case c == '(':
			l.i++
			l.depth++
			continue
		case c == ')':
			l.i++
			if l.depth > 0 {
				l.depth--
			}
			continue
		case isWordByte(c):
			start := l.i
			for l.i < len(l.s) && isWordByte(l.s[l.i]) {
				l.i++
			}
			return l.s[start:l.i], l.depth
		default:
			l.i++
			return l.s[l.i-1 : l.i], l.depth
		}
	}
}
