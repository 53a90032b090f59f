package dbsql

import (
	"runtime"
	"strings"
	"testing"
)

func TestParseSQL(t *testing.T) {
	cases := []struct {
		q, op, coll string
		truncated   bool
	}{
		{q: "SELECT id, name FROM items", op: "SELECT", coll: "items"},
		{q: "  select id from items order by id", op: "SELECT", coll: "items"},
		{q: "/* hello */ SELECT id FROM items WHERE id = $1", op: "SELECT", coll: "items"},
		{q: "-- c\nSELECT * FROM public.users u WHERE u.id = ?", op: "SELECT", coll: "public.users"},
		{q: `SELECT * FROM "Order Lines" WHERE x = 'FROM a, b'`, op: "SELECT", coll: "Order Lines"},
		{q: "SELECT COUNT(*) FROM items", op: "SELECT", coll: "items"},
		{q: "SELECT 1", op: "SELECT"},
		{q: "SELECT pg_sleep(0.5)", op: "SELECT"},
		{q: "SELECT * FROM a, b", op: "SELECT"},
		{q: "SELECT * FROM a JOIN b ON a.id = b.id", op: "SELECT"},
		{q: "SELECT * FROM a LEFT OUTER JOIN b ON true", op: "SELECT"},
		{q: "SELECT * FROM (SELECT * FROM a) s", op: "SELECT"},
		{q: "SELECT x FROM a UNION SELECT x FROM b", op: "SELECT"},
		{q: "SELECT (SELECT max(id) FROM b) FROM a WHERE id IN (SELECT id FROM c)", op: "SELECT", coll: "a"},
		{q: "INSERT INTO items (id, name) VALUES ($1, $2)", op: "INSERT", coll: "items"},
		{q: "insert into `items` values (1)", op: "INSERT", coll: "items"},
		{q: "UPDATE items SET name = ? WHERE id = ?", op: "UPDATE", coll: "items"},
		{q: "DELETE FROM items WHERE id = 10", op: "DELETE", coll: "items"},
		{q: "CREATE TABLE items (id INTEGER)", op: "CREATE", coll: "items"},
		{q: "CREATE TABLE IF NOT EXISTS items (id INTEGER)", op: "CREATE", coll: "items"},
		{q: "DROP TABLE IF EXISTS items", op: "DROP", coll: "items"},
		{q: "CREATE INDEX i ON items (id)", op: "CREATE"},
		{q: "TRUNCATE TABLE items", op: "TRUNCATE", coll: "items"},
		{q: "BEGIN", op: "BEGIN"},
		{q: "commit", op: "COMMIT"},
		{q: "WITH x AS (SELECT 1) SELECT * FROM x", op: "WITH"},
		{q: "frobnicate the table", op: ""},
		{q: "", op: ""},
		{q: "SELECT * FROM items", op: "SELECT", truncated: true}, // may go on ", other"
		{q: "SELECT * FROM items WHERE id = 1 AND", op: "SELECT", coll: "items", truncated: true},
		{q: "INSERT INTO ite", op: "INSERT", truncated: true},
	}
	for _, c := range cases {
		op, coll := parseSQL(c.q, c.truncated)
		if op != c.op || coll != c.coll {
			t.Errorf("parseSQL(%q, %v) = %q, %q; want %q, %q", c.q, c.truncated, op, coll, c.op, c.coll)
		}
	}
}

func FuzzParseSQL(f *testing.F) {
	for _, s := range []string{"SELECT * FROM a", "INSERT INTO \"x", "/*", "--", "SELECT ((((", "UPDATE `a`.`b` SET", "CREATE TABLE IF NOT"} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, q string, truncated bool) {
		// On the event path: at most the collection name is copied. (The
		// least of two runs: a fuzzing worker allocates a little beside.)
		var op, coll string
		if n := min(allocs(func() { op, coll = parseSQL(q, truncated) }), allocs(func() { parseSQL(q, truncated) })); n > 1024 {
			t.Fatalf("parsing %d bytes allocated %d", len(q), n)
		}
		if op != "" && !sqlVerbs[op] {
			t.Fatalf("operation %q not a known verb", op)
		}
		if len(coll) > maxCollection {
			t.Fatalf("collection %q too long", coll)
		}
		if coll != "" && op == "" {
			t.Fatalf("collection %q without operation", coll)
		}
		if strings.ContainsAny(coll, "'();,\n") {
			t.Fatalf("collection %q holds punctuation", coll)
		}
	})
}

func TestSystemOfPackage(t *testing.T) {
	for pkg, want := range map[string]string{
		"github.com/lib/pq":              "postgresql",
		"github.com/jackc/pgx/v4/stdlib": "postgresql",
		"github.com/jackc/pgx/v5/stdlib": "postgresql",
		"modernc.org/sqlite":             "sqlite",
		"github.com/mattn/go-sqlite3":    "sqlite",
		"github.com/go-sql-driver/mysql": "mysql",
		"github.com/lib/pqx":             "other_sql",
		"example.com/mydriver":           "other_sql",
	} {
		if got := systemOfPackage(pkg); got != want {
			t.Errorf("systemOfPackage(%q) = %q, want %q", pkg, got, want)
		}
	}
}

// allocs returns the bytes the process allocates while f runs.
func allocs(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
