// Command dbclient is blindspot's end-to-end target for database/sql: it
// runs a known mix of queries through DB, Conn, Tx and Stmt against SQLite
// (modernc.org/sqlite, a file in -dir) and, with -pg, against PostgreSQL
// (github.com/lib/pq), then saturates a PostgreSQL pool of two connections.
//
// It waits for commands on stdin so that the test can attach the agent
// first:
//
//	mix        run the query mix on every database; prints "mix done"
//	saturate   10 concurrent slow queries on a pool of 2; prints
//	           "saturating" when they start and "saturated waits=N" when
//	           they are done (N: the pool's own wait count)
//	saturate Q MS   the same with Q queries of MS milliseconds each
//
// After stdin closes it stays alive until killed.
package main

import (
	"bufio"
	"context"
	"database/sql"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "github.com/lib/pq"
	_ "modernc.org/sqlite"
)

func main() {
	dir := flag.String("dir", "", "directory for the SQLite file")
	pg := flag.String("pg", "", "PostgreSQL DSN (empty: no PostgreSQL)")
	flag.Parse()
	if *dir == "" {
		log.Fatal("need -dir")
	}
	lite, err := sql.Open("sqlite", filepath.Join(*dir, "test.db"))
	if err != nil {
		log.Fatal(err)
	}
	dbs := []*sql.DB{lite}
	ph := []func(int) string{func(int) string { return "?" }}
	var pgdb *sql.DB
	if *pg != "" {
		pgdb, err = sql.Open("postgres", *pg)
		if err != nil {
			log.Fatal(err)
		}
		dbs = append(dbs, pgdb)
		ph = append(ph, func(i int) string { return fmt.Sprintf("$%d", i) })
	}
	for _, db := range dbs {
		if err := db.Ping(); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		cmd := strings.Fields(sc.Text())
		if len(cmd) == 0 {
			continue
		}
		switch cmd[0] {
		case "mix":
			for i, db := range dbs {
				mix(db, ph[i])
			}
			fmt.Println("mix done")
		case "saturate":
			if pgdb == nil {
				log.Fatal("saturate needs -pg")
			}
			queries, ms := 10, 600
			if len(cmd) == 3 {
				queries, _ = strconv.Atoi(cmd[1])
				ms, _ = strconv.Atoi(cmd[2])
			}
			fmt.Printf("saturated waits=%d\n", saturate(*pg, queries, ms))
		}
	}
	select {}
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

func drain(rows *sql.Rows, err error) {
	must(err)
	for rows.Next() {
	}
	must(rows.Err())
	must(rows.Close())
}

// mix runs, on one database (p formats the i-th placeholder):
//
//	CREATE items 1, DROP items 1 (at the end)
//	INSERT items 5 (DB) + 1 (Tx) + 1 (Tx Stmt)          = 7
//	SELECT items 3 Query + 3 QueryRow + 1 Conn + 1 Tx + 3 Stmt = 11
//	UPDATE items 1 (Conn) + 2 (Stmt)                    = 3
//	DELETE items 1 (Tx)
//	BEGIN 3, COMMIT 2, ROLLBACK 1
//	SELECT missing_table 1 failing, INSERT missing_table 1 failing
//	SELECT (no table: "SELECT 1") 1
func mix(db *sql.DB, p func(int) string) {
	ctx := context.Background()
	_, err := db.Exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
	must(err)
	for i := 1; i <= 3; i++ {
		_, err = db.Exec("INSERT INTO items (id, name) VALUES ("+p(1)+", "+p(2)+")", i, fmt.Sprint("n", i))
		must(err)
	}
	for i := 4; i <= 5; i++ {
		_, err = db.ExecContext(ctx, "insert into items (id, name) values ("+p(1)+", "+p(2)+")", i, "x")
		must(err)
	}
	drain(db.Query("SELECT id, name FROM items"))
	drain(db.Query("SELECT name FROM items WHERE id > "+p(1), 1))
	drain(db.QueryContext(ctx, "  select id from items order by id"))
	var n int
	must(db.QueryRow("SELECT COUNT(*) FROM items").Scan(&n))
	must(db.QueryRow("SELECT COUNT(*) FROM items WHERE id < "+p(1), 3).Scan(&n))
	must(db.QueryRowContext(ctx, "SELECT 1").Scan(&n))
	must(db.QueryRowContext(ctx, "/* hello */ SELECT id FROM items WHERE id = "+p(1), 2).Scan(&n))

	c, err := db.Conn(ctx)
	must(err)
	_, err = c.ExecContext(ctx, "UPDATE items SET name = "+p(1)+" WHERE id = "+p(2), "u", 1)
	must(err)
	must(c.QueryRowContext(ctx, "SELECT name FROM items WHERE id = "+p(1), 1).Scan(new(string)))
	must(c.Close())

	tx, err := db.Begin()
	must(err)
	_, err = tx.Exec("INSERT INTO items (id, name) VALUES (10, 'tx')")
	must(err)
	drain(tx.Query("SELECT id FROM items"))
	must(tx.Commit())
	if err := tx.Rollback(); err != sql.ErrTxDone { // the deferred-Rollback idiom: not an operation
		log.Fatalf("rollback after commit: %v", err)
	}

	tx2, err := db.BeginTx(ctx, nil)
	must(err)
	_, err = tx2.ExecContext(ctx, "DELETE FROM items WHERE id = 10")
	must(err)
	must(tx2.Rollback())

	st, err := db.Prepare("SELECT name FROM items WHERE id = " + p(1))
	must(err)
	must(st.QueryRow(1).Scan(new(string)))
	must(st.QueryRowContext(ctx, 2).Scan(new(string)))
	drain(st.Query(3))
	up, err := db.PrepareContext(ctx, "UPDATE items SET name = "+p(1)+" WHERE id = "+p(2))
	must(err)
	_, err = up.Exec("a", 1)
	must(err)
	_, err = up.ExecContext(ctx, "b", 2)
	must(err)
	ins, err := db.Prepare("INSERT INTO items (id, name) VALUES (" + p(1) + ", 'st')")
	must(err)
	tx3, err := db.Begin()
	must(err)
	_, err = tx3.Stmt(ins).Exec(20)
	must(err)
	must(tx3.Commit())
	must(st.Close())
	must(up.Close())
	must(ins.Close())

	if _, err := db.Query("SELECT * FROM missing_table"); err == nil {
		log.Fatal("query of a missing table succeeded")
	}
	if _, err := db.Exec("INSERT INTO missing_table VALUES (1)"); err == nil {
		log.Fatal("insert into a missing table succeeded")
	}
	_, err = db.Exec("DROP TABLE items")
	must(err)
}

// saturate opens a pool of two connections and runs queries slow queries
// of ms milliseconds at once (plus one to open it); it returns the pool's
// wait count.
func saturate(dsn string, queries, ms int) int64 {
	db, err := sql.Open("postgres", dsn)
	must(err)
	db.SetMaxOpenConns(2)
	_, err = db.Exec("SELECT 1")
	must(err)
	fmt.Println("saturating")
	var wg sync.WaitGroup
	for i := 0; i < queries; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			drain(db.Query(fmt.Sprintf("SELECT pg_sleep(%g)", float64(ms)/1000)))
		}()
	}
	wg.Wait()
	time.Sleep(1500 * time.Millisecond) // let the sampler see the idle pool
	return db.Stats().WaitCount
}
