package dbsql

import "testing"

// pqServer replays lib/pq v1.10's reading of a DSN (NewConnector: ParseURL,
// then parseOpts) and keeps only what the DSN itself names. The host, port
// and dbname expected are what lib/pq v1.10.9's NewConnector made of the
// same DSNs (checked once with it, PG* unset), less the defaults it adds.
func TestPQServer(t *testing.T) {
	for _, c := range []struct {
		dsn  string
		want serverOf
		ok   bool
	}{
		{"postgres://postgres@127.0.0.1:5433/e2e0?sslmode=disable", serverOf{"127.0.0.1", "5433", "e2e0"}, true},
		{"postgresql://u:p%40ss@db.internal/orders", serverOf{"db.internal", "", "orders"}, true},
		{"postgres://[::1]:6432/x", serverOf{"::1", "6432", "x"}, true},
		{"postgres://[::1]/x", serverOf{"", "", "x"}, true}, // lib/pq keeps the brackets: undialable
		// A query's host sorts after the authority's and wins.
		{"postgres://a.example:5432/db?host=b.example", serverOf{"b.example", "5432", "db"}, true},
		{"postgres://b.example:5432/db?host=a.example", serverOf{"b.example", "5432", "db"}, true},
		{"postgres:///db?host=/var/run/postgresql", serverOf{"", "", "db"}, true}, // a socket directory
		{"postgres://", serverOf{}, true},
		{"host=10.0.0.7 port=6543 dbname=shop user=app sslmode=require", serverOf{"10.0.0.7", "6543", "shop"}, true},
		{"  host = 'my host'  dbname='it\\'s' port=5432 ", serverOf{"my host", "5432", "it's"}, true},
		{"host=a\\ b dbname=x host=c", serverOf{"c", "", "x"}, true}, // a later key wins
		{"dbname=only", serverOf{"", "", "only"}, true},
		{"port=0 host=h", serverOf{"h", "", ""}, true},
		{"port=+5432 host=h", serverOf{"h", "", ""}, true},
		{"port=", serverOf{}, true},
		{"host=h dbname='open", serverOf{}, false},
		{"host", serverOf{}, false},
		{"host=h\x00", serverOf{}, false},
		{"mysql://h/db", serverOf{}, false},
	} {
		got, ok := pqServer(c.dsn)
		if got != c.want || ok != c.ok {
			t.Errorf("pqServer(%q) = %+v, %v; want %+v, %v", c.dsn, got, ok, c.want, c.ok)
		}
	}
}
