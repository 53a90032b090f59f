package symbols

// StructSpec names a struct type and the fields of it whose offsets the
// generated table (offsets_table.go) records.
type StructSpec struct {
	// Type is the full Go type name, e.g. "net/http.response".
	Type string
	// Fields are the field names to record. Fields a Go release lacks are
	// left out of that release's table entry.
	Fields []string
	// Internal types are never converted to an interface, so a stripped
	// binary keeps no type data for them: only DWARF or the table know them.
	Internal bool
}

// TableStructs lists the structs whose field offsets internal/gentable
// records per Go release, for executables that have neither DWARF nor
// usable type data.
var TableStructs = []StructSpec{
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
