// Package dbsql is the database/sql probe family: which functions it
// probes (Probes), the struct fields it reads (Structs), how its events
// decode into db_client_operation_duration_seconds (with the SQL parsed for
// the operation and collection, sql.go), the pools it samples for the
// db_client_connection_* gauges, and its BPF objects (bpf/db.c, generated
// into bpf_*_bpfel.go).
package dbsql

import (
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/blindspot-dev/blindspot/aggregator"
	"github.com/blindspot-dev/blindspot/probes"
	"github.com/blindspot-dev/blindspot/probes/goerror"
	"github.com/blindspot-dev/blindspot/probes/label"
	"github.com/blindspot-dev/blindspot/probes/procmem"
	"github.com/blindspot-dev/blindspot/symbols"
)

// kindDB is the kind of the family's events: FAMILY_DB of bpf/common.h
// (compared with it by TestConstantsMatchC).
const kindDB = 3

// Operations of db_event: DB_OP_* of bpf/db.c (compared with it by
// TestConstantsMatchC).
const (
	dbOpQuery    = 0
	dbOpBegin    = 1
	dbOpCommit   = 2
	dbOpRollback = 3
	dbOpWait     = 4
)

var (
	dbOperationDuration = &aggregator.Metric{
		Name:     "db_client_operation_duration_seconds",
		OTelName: "db.client.operation.duration",
		Help:     "Duration of database/sql operations (queries until the first result is ready).",
		Unit:     "s",
		Kind:     aggregator.Histogram,
		Labels:   []string{"db_system_name", "db_operation_name", "db_collection_name", "error_type", "server_address", "server_port", "db_namespace"},
		Buckets:  aggregator.DurationBuckets,
	}
	dbConnCount = &aggregator.Metric{
		Name:     "db_client_connection_count",
		OTelName: "db.client.connection.count",
		Help:     "Connections of a database/sql pool, by state (idle or used).",
		Unit:     "{connection}",
		Kind:     aggregator.Gauge,
		UpDown:   true,
		Labels:   []string{"db_client_connection_state", "db_client_connection_pool_name"},
	}
	dbConnMax = &aggregator.Metric{
		Name:     "db_client_connection_max",
		OTelName: "db.client.connection.max",
		Help:     "Most open connections a database/sql pool allows (0: unlimited).",
		Unit:     "{connection}",
		Kind:     aggregator.Gauge,
		UpDown:   true,
		Labels:   []string{"db_client_connection_pool_name"},
	}
	dbConnPending = &aggregator.Metric{
		Name:     "db_client_connection_pending_requests",
		OTelName: "db.client.connection.pending_requests",
		Help:     "Requests waiting for a connection of a database/sql pool.",
		Unit:     "{request}",
		Kind:     aggregator.Gauge,
		UpDown:   true,
		Labels:   []string{"db_client_connection_pool_name"},
	}
	dbConnWait = &aggregator.Metric{
		Name:     "db_client_connection_wait_time_seconds",
		OTelName: "db.client.connection.wait_time",
		Help:     "Time spent waiting for a connection of an exhausted database/sql pool.",
		Unit:     "s",
		Kind:     aggregator.Histogram,
		Labels:   []string{"db_client_connection_pool_name"},
		Buckets:  aggregator.DurationBuckets,
	}
)

// database/sql operations are timed from the entry of the function that
// runs them against a connection (an emulated instruction) to each of its
// RETs; a wait for a connection around the blocking select of
// (*DB).conn, which only an exhausted pool reaches. Start programs are
// idempotent. Functions a program does not use are absent from it (the
// linker drops them): every operation probe is optional.
var Probes = []probes.Probe{
	{Function: "database/sql.(*DB).queryDC", Program: "uprobe_db_query_dc", Idempotent: true, Optional: true},
	{Function: "database/sql.(*DB).queryDC", Program: "uprobe_db_finish", Returns: true, Optional: true},
	{Function: "database/sql.(*DB).execDC", Program: "uprobe_db_exec_dc", Idempotent: true, Optional: true},
	{Function: "database/sql.(*DB).execDC", Program: "uprobe_db_finish", Returns: true, Optional: true},
	{Function: "database/sql.(*Stmt).QueryContext", Program: "uprobe_db_stmt_query", Idempotent: true, Optional: true},
	{Function: "database/sql.(*Stmt).QueryContext", Program: "uprobe_db_finish", Returns: true, Optional: true},
	{Function: "database/sql.(*Stmt).ExecContext", Program: "uprobe_db_stmt_exec", Idempotent: true, Optional: true},
	{Function: "database/sql.(*Stmt).ExecContext", Program: "uprobe_db_finish", Returns: true, Optional: true},
	{Function: "database/sql.(*DB).beginDC", Program: "uprobe_db_begin", Idempotent: true, Optional: true},
	{Function: "database/sql.(*DB).beginDC", Program: "uprobe_db_finish", Returns: true, Optional: true},
	{Function: "database/sql.(*Tx).Commit", Program: "uprobe_db_commit", Idempotent: true, Optional: true},
	{Function: "database/sql.(*Tx).Commit", Program: "uprobe_db_finish", Returns: true, Optional: true},
	{Function: "database/sql.(*Tx).rollback", Program: "uprobe_db_rollback", Idempotent: true, Optional: true},
	{Function: "database/sql.(*Tx).rollback", Program: "uprobe_db_finish", Returns: true, Optional: true},
	{Function: "database/sql.(*DB).conn", Program: "uprobe_db_wait_start", Call: "runtime.selectgo"},
	{Function: "database/sql.(*DB).conn", Program: "uprobe_db_wait_end", Call: "runtime.selectgo", AfterCall: true},
}

// Bounds of the user-space state.
const (
	maxDBsPerProcess = 64
	queryCacheLimit  = 4096
	dbSampleInterval = time.Second
)

// dbKey names one *sql.DB.
type dbKey struct {
	pid  uint32
	addr uint64
}

// dbPool is one *sql.DB seen in a process.
type dbPool struct {
	key    dbKey
	t      aggregator.TargetID
	system string // "" when the driver is not known
	pool   string
	server serverOf
}

// dbLayout is where the pool sampler finds the fields of sql.DB.
type dbLayout struct {
	numOpen, maxOpen, freeConn, connRequests, connector uint64
	// requestsSet: connRequests is a connRequestSet (a slice, Go ≥ 1.23),
	// else a map (its count is the first word of the map header).
	requestsSet bool
	dsnDriver   uint64 // dsnConnector.driver
	dsn         uint64 // dsnConnector.dsn
	dsnKnown    bool   // dsn is proven (the DSN is read only then)
	pqVersion   string // of github.com/lib/pq, from the build info
	ok          bool
}

type dbState struct {
	names map[string]string
	agg   *aggregator.Aggregator

	procs  goerror.Procs
	shards map[*aggregator.Shard]*dbShard

	mu       sync.Mutex
	pools    map[dbKey]*dbPool
	perProc  map[uint32]map[string]int // pid → system → pools seen
	layouts  map[uint32]dbLayout
	dropped  map[uint32]bool // pids past maxDBsPerProcess
	sampler  *aggregator.Shard
	stop     chan struct{}
	stopping sync.WaitGroup
}

// dbShard holds caches touched only by one ring's reader.
type dbShard struct {
	types   goerror.TypeNames
	queries map[string]parsedQuery
	pools   map[dbKey]*dbPoolValues
}

type parsedQuery struct{ op, collection aggregator.Value }

type dbPoolValues struct {
	system, pool             aggregator.Value
	address, port, namespace aggregator.Value
}

// Metrics returns the family's metrics, for the aggregator.
func Metrics() []*aggregator.Metric {
	return []*aggregator.Metric{dbOperationDuration, dbConnCount, dbConnMax, dbConnPending, dbConnWait}
}

// Structs are the struct fields the family reads, for the offset table of
// Go releases (probes/internal/gentable); the errors' are goerror.Structs.
var Structs = []symbols.StructSpec{
	{Type: "database/sql.DB", Fields: []string{"numOpen", "maxOpen", "freeConn", "connRequests", "connector"}},
	{Type: "database/sql.Stmt", Fields: []string{"db", "query", "stickyErr"}},
	{Type: "database/sql.Tx", Fields: []string{"db", "closemu", "dc", "done"}},
	{Type: "database/sql.dsnConnector", Fields: []string{"dsn", "driver"}},
	{Type: "database/sql.connRequestSet", Fields: []string{"s"}},
}

// Family is the database/sql family: operations timed, pools sampled.
// agg is the aggregator its decoder and sampler fold into; poolNames renames pools: a pool's default name ("postgresql-1": the
// driver's system and the pool's first-seen order in its process) → the
// name to export.
func Family(agg *aggregator.Aggregator, poolNames map[string]string) *probes.Family {
	st := &dbState{
		names:   poolNames,
		agg:     agg,
		pools:   map[dbKey]*dbPool{},
		perProc: map[uint32]map[string]int{},
		layouts: map[uint32]dbLayout{},
		dropped: map[uint32]bool{},
		shards: probes.PerShard(agg, func() *dbShard {
			return &dbShard{types: goerror.TypeNames{}, queries: map[string]parsedQuery{}, pools: map[dbKey]*dbPoolValues{}}
		}),
	}
	return &probes.Family{
		Name:      "db",
		Kind:      kindDB,
		Anchor:    "database/sql.(*DB).conn", // every use of a pool goes through it
		Probes:    Probes,
		Spec:      loadBpf,
		ConfigMap: "db_config",
		StartMap:  "db_starts",
		// Waits for a pooled connection in flight.
		InFlightMaps: []string{"db_waits"},
		Configure:    dbOffsets,
		Decode:       st.decode,
		Invalid:      []string{"utf8", "duration"},
		Attached:     st.attached,
		Detached:     st.detached,
	}
}

func dbOffsets(b *symbols.Binary) (any, error) {
	var o bpfDbOffsets
	// A program that never uses Stmt or Tx has neither their methods nor
	// (often) any description of their layout: their probes are optional.
	s, _, err := b.StructFields("database/sql.Stmt", "db", "query", "stickyErr")
	if err == nil {
		o.StmtDb, o.StmtQuery = s["db"], s["query"]
	} else if usesAny(b, "database/sql.(*Stmt).QueryContext", "database/sql.(*Stmt).ExecContext") {
		return nil, err
	}
	tx, _, err := b.StructFields("database/sql.Tx", "db", "closemu", "dc", "done")
	if err == nil {
		o.TxDb, o.TxDone = tx["db"], tx["done"]
	} else if usesAny(b, "database/sql.(*Tx).Commit", "database/sql.(*Tx).rollback") {
		return nil, err
	}
	o.ConnDbSpill, err = receiverSpill(b, "database/sql.(*DB).conn")
	if err != nil {
		return nil, err
	}
	o.OpErrErr, o.SyscallErrErr = goerror.Offsets(b)
	return &o, nil
}

func usesAny(b *symbols.Binary, funcs ...string) bool {
	for _, f := range funcs {
		if _, err := b.LookupFunc(f); err == nil {
			return true
		}
	}
	return false
}

// receiverSpill finds where a method spills its receiver (arg 1, RAX) in
// its prologue, as an offset from SP in the function's body.
func receiverSpill(b *symbols.Binary, fn string) (uint64, error) {
	f, err := b.LookupFunc(fn)
	if err != nil {
		return 0, err
	}
	off, ok, err := b.ArgSpill(f)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, fmt.Errorf("%s: no receiver spill found", fn)
	}
	return off, nil
}

func (st *dbState) layout(pid uint32, bin *symbols.Binary) dbLayout {
	var l dbLayout
	f, _, err := bin.StructFields("database/sql.DB", "numOpen", "maxOpen", "freeConn", "connRequests", "connector")
	if err != nil {
		return l
	}
	l.numOpen, l.maxOpen, l.freeConn, l.connRequests, l.connector =
		f["numOpen"], f["maxOpen"], f["freeConn"], f["connRequests"], f["connector"]
	if _, _, err := bin.StructFields("database/sql.connRequestSet", "s"); err == nil {
		l.requestsSet = true
	} else if major, minor, ok := bin.Version(); ok && (major > 1 || minor >= 23) {
		l.requestsSet = true
	}
	if d, _, err := bin.StructFields("database/sql.dsnConnector", "dsn", "driver"); err == nil {
		l.dsnDriver = d["driver"]
		l.dsn, l.dsnKnown = d["dsn"], true
	} else {
		l.dsnDriver = 16 // string, then the driver interface
	}
	l.pqVersion = bin.Deps["github.com/lib/pq"]
	l.ok = true
	return l
}

func (st *dbState) attached(pid int, bin *symbols.Binary, t aggregator.TargetID) {
	st.procs.Set(uint32(pid), goerror.NewProc(pid, bin, t))
	l := st.layout(uint32(pid), bin)
	st.mu.Lock()
	defer st.mu.Unlock()
	st.layouts[uint32(pid)] = l
	if st.stop == nil && st.agg != nil {
		if st.sampler == nil {
			st.sampler = st.agg.NewShard()
		}
		st.stop = make(chan struct{})
		st.stopping.Add(1)
		go st.sample(st.stop)
	}
}

func (st *dbState) detached(pid int) {
	p := st.procs.Lookup(uint32(pid))
	st.procs.Set(uint32(pid), nil)
	st.mu.Lock()
	for k := range st.pools {
		if k.pid == uint32(pid) {
			delete(st.pools, k)
		}
	}
	delete(st.perProc, uint32(pid))
	delete(st.layouts, uint32(pid))
	delete(st.dropped, uint32(pid))
	var stop chan struct{}
	if st.procs.Len() == 0 && st.stop != nil {
		stop, st.stop = st.stop, nil
	}
	sampler := st.sampler
	st.mu.Unlock()
	if stop != nil {
		close(stop)
		st.stopping.Wait()
	}
	if p != nil && sampler != nil {
		for _, m := range []*aggregator.Metric{dbConnCount, dbConnMax, dbConnPending} {
			sampler.DeleteSeries(m, p.T)
		}
	}
}

// decode folds one db_event into a shard, after checking what was read
// from the program: the timestamps and the statement's text.
func (st *dbState) decode(sh *aggregator.Shard, t aggregator.TargetID, raw []byte) probes.Verdict {
	if len(raw) < int(unsafe.Sizeof(bpfDbEvent{})) {
		return probes.Malformed
	}
	ev := (*bpfDbEvent)(unsafe.Pointer(&raw[0]))
	c := st.shards[sh]
	if c == nil {
		return probes.Malformed
	}
	if ev.Op > dbOpWait {
		return probes.Malformed
	}
	if !probes.PlausibleDuration(ev.Hdr.StartNs, ev.Hdr.EndNs) {
		return probes.InvalidDuration
	}
	d := float64(ev.Hdr.EndNs-ev.Hdr.StartNs) / 1e9
	// An error's type is read from the program, and a pool is named once
	// registered: only operations without an error, on no pool or a named
	// one, are memoised.
	var kb [dbKeyMax]byte
	var key []byte
	if ev.Err.Type == 0 {
		key = dbMemoKey(kb[:0], t, ev)
		if sh.ObserveMemo(key, t, d) {
			return probes.Decoded // these bytes were decoded (as valid) before
		}
	}
	var q parsedQuery
	if ev.Op == dbOpQuery {
		var ok bool
		if q, ok = c.parse(sh, label.Chars(ev.Query[:], int(ev.QueryLen)), int(ev.QueryLen) >= len(ev.Query)); !ok {
			return probes.InvalidUTF8
		}
	}
	pid := ev.Hdr.Pid
	pv := c.pool(st, sh, dbKey{pid, ev.Db}, t)
	if pv == nil && ev.Db != 0 {
		key = nil // it may be named later
	}
	if ev.Op == dbOpWait {
		if pv == nil {
			return probes.Decoded // not a *sql.DB we can name
		}
		observe(sh, key, dbConnWait, t, aggregator.Labels{pv.pool}, d)
		return probes.Decoded
	}
	var l aggregator.Labels
	if pv != nil {
		l[0], l[4], l[5], l[6] = pv.system, pv.address, pv.port, pv.namespace
	}
	switch ev.Op {
	case dbOpQuery:
		l[1], l[2] = q.op, q.collection
	case dbOpBegin:
		l[1] = sh.InternString("BEGIN")
	case dbOpCommit:
		l[1] = sh.InternString("COMMIT")
	case dbOpRollback:
		l[1] = sh.InternString("ROLLBACK")
	}
	if ev.Err.Type != 0 {
		e := (*goerror.Error)(unsafe.Pointer(&ev.Err))
		l[3] = sh.InternString(goerror.TypeOf(c.types, st.procs.Lookup(pid), pid, e))
	}
	observe(sh, key, dbOperationDuration, t, l, d)
	return probes.Decoded
}

// observe observes d, memoised under key unless key is nil.
func observe(sh *aggregator.Shard, key []byte, m *aggregator.Metric, t aggregator.TargetID, l aggregator.Labels, d float64) {
	if key != nil {
		sh.ObserveAndMemo(key, m, t, l, d)
	} else {
		sh.Observe(m, t, l, d)
	}
}

// dbKeyMax bounds dbMemoKey's bytes.
const dbKeyMax = 1 + 4 + 1 + 8 + 2 + len(bpfDbEvent{}.Query)

// dbMemoKey appends the bytes the labels of an operation without an error
// are made of, for the shard's memo (see httpserver's serverKey): the
// process's pool and, for a query, its text.
func dbMemoKey(b []byte, t aggregator.TargetID, ev *bpfDbEvent) []byte {
	b = append(b, kindDB, byte(t), byte(t>>8), byte(t>>16), byte(t>>24), ev.Op)
	b = binary.LittleEndian.AppendUint64(b, ev.Db)
	if ev.Op != dbOpQuery {
		return b
	}
	b = append(b, byte(ev.QueryLen), byte(ev.QueryLen>>8))
	return append(b, label.Chars(ev.Query[:], int(ev.QueryLen))...)
}

// parse returns the operation and collection of a query text, cached by
// text: the event path parses each distinct text once. ok is false for a
// text that is not valid UTF-8 or holds control characters other than
// white space (what a misread string holds); only plausible texts are
// cached.
func (c *dbShard) parse(sh *aggregator.Shard, q []byte, truncated bool) (p parsedQuery, ok bool) {
	if p, ok := c.queries[string(q)]; ok {
		return p, true
	}
	text, ok := label.Text(q, truncated, true)
	if !ok {
		return parsedQuery{}, false
	}
	s := string(text)
	op, coll := parseSQL(s, truncated)
	p = parsedQuery{op: sh.InternString(op), collection: sh.InternString(coll)}
	if len(c.queries) >= queryCacheLimit {
		clear(c.queries)
	}
	c.queries[string(q)] = p
	return p, true
}

// pool returns the label values of a *sql.DB, registering it on first
// sight; nil when it cannot be named.
func (c *dbShard) pool(st *dbState, sh *aggregator.Shard, k dbKey, t aggregator.TargetID) *dbPoolValues {
	if k.addr == 0 {
		return nil
	}
	if v, ok := c.pools[k]; ok {
		return v
	}
	p := st.register(k, t)
	if p == nil {
		return nil
	}
	v := &dbPoolValues{system: sh.InternString(p.system), pool: sh.InternString(p.pool),
		address: sh.InternString(p.server.address), port: sh.InternString(p.server.port), namespace: sh.InternString(p.server.namespace)}
	if len(c.pools) >= 4096 {
		clear(c.pools)
	}
	c.pools[k] = v
	return v
}

// register names a *sql.DB the first time any reader sees it: its system
// from its driver's package, its pool name from the system and the order in
// which the process's pools of that system were seen (or the configured
// name for that).
func (st *dbState) register(k dbKey, t aggregator.TargetID) *dbPool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if p, ok := st.pools[k]; ok {
		return p
	}
	proc := st.procs.Lookup(k.pid)
	l, ok := st.layouts[k.pid]
	if proc == nil || !ok || !l.ok {
		return nil
	}
	n := st.perProc[k.pid]
	if n == nil {
		n = map[string]int{}
		st.perProc[k.pid] = n
	}
	total := 0
	for _, c := range n {
		total += c
	}
	if total >= maxDBsPerProcess {
		st.dropped[k.pid] = true
		return nil
	}
	system, pkg, dsnConn := driverSystem(proc, l, k.addr)
	if system == "" {
		return nil // not a *sql.DB after all (or unreadable)
	}
	var server serverOf
	if dsnConn != 0 && l.dsnKnown && hasPathPrefix(pkg, "github.com/lib/pq") && pqVersionRead(l.pqVersion) {
		if dsn, err := readGoString(proc.Pid, dsnConn+l.dsn, maxDSNLen); err == nil {
			server, _ = pqServer(dsn)
		}
	}
	n[system]++
	name := fmt.Sprintf("%s-%d", system, n[system])
	if alias, ok := st.names[name]; ok && alias != "" {
		name = alias
	}
	p := &dbPool{key: k, t: t, system: system, pool: name, server: server}
	st.pools[k] = p
	return p
}

// driverSystem reads a DB's connector from the process and names the
// database system from the package of its driver's methods; dsnConn is
// the address of database/sql's dsnConnector where sql.Open made one.
func driverSystem(p *goerror.Proc, l dbLayout, db uint64) (system, pkg string, dsnConn uint64) {
	pkg = ifacePackage(p, db+l.connector)
	if pkg == "database/sql" {
		// sql.Open with a driver that has no connector of its own: the
		// dsnConnector holds the driver.
		data, err := procmem.Word(p.Pid, db+l.connector+8)
		if err != nil || data == 0 {
			return "", "", 0
		}
		pkg, dsnConn = ifacePackage(p, data+l.dsnDriver), data
	}
	if pkg == "" {
		return "", "", 0
	}
	return systemOfPackage(pkg), pkg, dsnConn
}

// maxDSNLen bounds the DSN read from a program: longer ones are not read.
const maxDSNLen = 4096

// readGoString reads the Go string whose header is at addr.
func readGoString(pid int, addr uint64, max int) (string, error) {
	ptr, err := procmem.Word(pid, addr)
	if err != nil {
		return "", err
	}
	n, err := procmem.Word(pid, addr+8)
	if err != nil {
		return "", err
	}
	if n == 0 {
		return "", nil
	}
	if n > uint64(max) || ptr == 0 {
		return "", fmt.Errorf("string of %d bytes at %#x: not read", n, ptr)
	}
	b := make([]byte, n)
	if err := procmem.Read(pid, ptr, b); err != nil {
		return "", err
	}
	return string(b), nil
}

// ifacePackage returns the package of the first method of the interface
// value at addr (its itab's fun[0]), "" if unreadable.
func ifacePackage(p *goerror.Proc, addr uint64) string {
	itab, err := procmem.Word(p.Pid, addr)
	if err != nil || itab == 0 {
		return ""
	}
	fn, err := procmem.Word(p.Pid, itab+24) // inter, type, hash+pad, fun[0]
	if err != nil || fn == 0 {
		return ""
	}
	f, ok := p.Bin.FuncForPC(fn - p.Bias)
	if !ok {
		return ""
	}
	return symbols.PackageOf(f.Name)
}

// systemOfPackage maps a driver's package path to db_system_name.
func systemOfPackage(pkg string) string {
	switch {
	case hasPathPrefix(pkg, "github.com/lib/pq"), hasPathPrefix(pkg, "github.com/jackc/pgx"),
		hasPathPrefix(pkg, "github.com/jackc/pgx/v4"), hasPathPrefix(pkg, "github.com/jackc/pgx/v5"):
		return "postgresql"
	case hasPathPrefix(pkg, "modernc.org/sqlite"), hasPathPrefix(pkg, "github.com/mattn/go-sqlite3"),
		hasPathPrefix(pkg, "github.com/glebarez/go-sqlite"), hasPathPrefix(pkg, "github.com/ncruces/go-sqlite3"):
		return "sqlite"
	case hasPathPrefix(pkg, "github.com/go-sql-driver/mysql"):
		return "mysql"
	case hasPathPrefix(pkg, "github.com/microsoft/go-mssqldb"), hasPathPrefix(pkg, "github.com/denisenkom/go-mssqldb"):
		return "microsoft.sql_server"
	case hasPathPrefix(pkg, "github.com/sijms/go-ora"), hasPathPrefix(pkg, "github.com/godror/godror"):
		return "oracle.db"
	case hasPathPrefix(pkg, "github.com/ClickHouse/clickhouse-go"):
		return "clickhouse"
	case hasPathPrefix(pkg, "github.com/snowflakedb/gosnowflake"):
		return "snowflake"
	case hasPathPrefix(pkg, "github.com/trinodb/trino-go-client"):
		return "trino"
	}
	return "other_sql"
}

func hasPathPrefix(pkg, prefix string) bool {
	return pkg == prefix || strings.HasPrefix(pkg, prefix+"/")
}

// sample reads every known pool's state from its process on a timer.
func (st *dbState) sample(stop chan struct{}) {
	defer st.stopping.Done()
	tk := time.NewTicker(dbSampleInterval)
	defer tk.Stop()
	var buf [8 * 4]byte
	for {
		st.sampleOnce(buf[:])
		select {
		case <-stop:
			return
		case <-tk.C:
		}
	}
}

func (st *dbState) sampleOnce(buf []byte) {
	st.mu.Lock()
	pools := make([]*dbPool, 0, len(st.pools))
	for _, p := range st.pools {
		pools = append(pools, p)
	}
	layouts := make(map[uint32]dbLayout, len(st.layouts))
	for k, v := range st.layouts {
		layouts[k] = v
	}
	sh := st.sampler
	st.mu.Unlock()
	if sh == nil {
		return
	}
	idle, used := sh.InternString("idle"), sh.InternString("used")
	for _, p := range pools {
		l := layouts[p.key.pid]
		pid := int(p.key.pid)
		numOpen, err1 := procmem.Word(pid, p.key.addr+l.numOpen)
		maxOpen, err2 := procmem.Word(pid, p.key.addr+l.maxOpen)
		free, err3 := procmem.Word(pid, p.key.addr+l.freeConn+8) // slice len
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		var pending uint64
		if l.requestsSet {
			pending, _ = procmem.Word(pid, p.key.addr+l.connRequests+8) // connRequestSet.s len
		} else if m, err := procmem.Word(pid, p.key.addr+l.connRequests); err == nil && m != 0 {
			pending, _ = procmem.Word(pid, m) // map header: count first
		}
		inUse := int64(numOpen) - int64(free)
		if inUse < 0 {
			inUse = 0
		}
		pool := sh.InternString(p.pool)
		sh.Set(dbConnCount, p.t, aggregator.Labels{idle, pool}, float64(free))
		sh.Set(dbConnCount, p.t, aggregator.Labels{used, pool}, float64(inUse))
		sh.Set(dbConnMax, p.t, aggregator.Labels{pool}, float64(int64(maxOpen)))
		sh.Set(dbConnPending, p.t, aggregator.Labels{pool}, float64(pending))
	}
	_ = buf
}
