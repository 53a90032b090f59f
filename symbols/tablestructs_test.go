package symbols

// tableStructs are the structs whose offsets the table records, as the
// probe families declare them (probes/internal/gentable merges their
// declarations; symbols knows no family): the tests compare DWARF, type
// data, the table and the code source on each of them.
var tableStructs = []StructSpec{
	{Type: "net/http.response", Fields: []string{"conn", "req", "status", "wroteHeader", "handlerDone"}},
	{Type: "net/http.Request", Fields: []string{"Method", "URL", "Host", "Pattern", "pat"}},
	{Type: "net/url.URL", Fields: []string{"Scheme", "Host", "Path"}},
	{Type: "net/http.pattern", Fields: []string{"str"}},
	{Type: "net/http.conn", Fields: []string{"hijackedv"}},
	// HTTP/2 server (the bundled copy of golang.org/x/net/http2 up to Go
	// 1.26; Go 1.27 moved it to net/http/internal/http2).
	{Type: "net/http.http2responseWriter", Fields: []string{"rws"}},
	{Type: "net/http.http2responseWriterState", Fields: []string{"status", "wroteHeader"}},
	{Type: "net/http/internal/http2.responseWriter", Fields: []string{"rws"}},
	{Type: "net/http/internal/http2.responseWriterState", Fields: []string{"status", "wroteHeader"}},
	{Type: "runtime.g", Fields: []string{"goid", "atomicstatus", "startpc", "gopc", "stack", "m", "_panic"}},
	{Type: "runtime.mstats", Fields: []string{"numgc", "pause_ns", "enablegc"}, Internal: true},
	{Type: "runtime.gcControllerState", Fields: []string{"gcPercent", "gcPercentHeapGoal", "mappedReady"}, Internal: true},
	{Type: "net/http.Response", Fields: []string{"Status", "StatusCode", "Proto"}},
	{Type: "net.OpError", Fields: []string{"Op", "Net", "Source", "Addr", "Err"}},
	{Type: "os.SyscallError", Fields: []string{"Syscall", "Err"}},
	{Type: "database/sql.DB", Fields: []string{"numOpen", "maxOpen", "freeConn", "connRequests", "connector"}},
	{Type: "database/sql.Stmt", Fields: []string{"db", "query", "stickyErr"}},
	{Type: "database/sql.Tx", Fields: []string{"db", "closemu", "dc", "done"}},
	{Type: "database/sql.dsnConnector", Fields: []string{"dsn", "driver"}},
	{Type: "database/sql.connRequestSet", Fields: []string{"s"}},
}
