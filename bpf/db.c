//go:build ignore

// database/sql operations and connection-pool waits.
//
// Operations are timed from the entry (PUSHQ BP, or the emulated
// stack-check JBE on Go 1.19/1.20: starts are idempotent) to every RET of:
//   database/sql.(*DB).queryDC     queries of DB, Conn and Tx (query text, *DB in args)
//   database/sql.(*DB).execDC      execs of DB, Conn and Tx
//   database/sql.(*Stmt).QueryContext, (*Stmt).ExecContext   prepared statements
//   database/sql.(*DB).beginDC     BEGIN
//   database/sql.(*Tx).Commit, (*Tx).rollback   COMMIT, ROLLBACK (skipped when
//                                  the transaction is already done: the
//                                  deferred-Rollback idiom is no operation)
// Nothing of these nests, so one start per goroutine suffices.
//
// A wait for a pooled connection is timed around the blocking
// runtime.selectgo call inside database/sql.(*DB).conn, which runs only when
// the pool is exhausted: acquisitions that do not wait hit no probe.

#include "common.h"
#include "go_error.h"

#define DB_QUERY_MAX 256

// Operations, compared with probes/db.go by probes/contract_test.go.
// An enum, and a pointer to it, so that the object's BTF carries the values.
enum db_op {
	DB_OP_QUERY = 0, // the verb comes from the query text
	DB_OP_BEGIN = 1,
	DB_OP_COMMIT = 2,
	DB_OP_ROLLBACK = 3,
	DB_OP_WAIT = 4, // a wait for a connection, not an operation
};
const enum db_op *unused_db_op __attribute__((unused));

// Where the error result sits in each function's results.
#define ERR_IN_AX 0
#define ERR_IN_BX 1
#define ERR_IN_CX 2

#if defined(__TARGET_ARCH_x86)
#define GO_SP(r) ((r)->sp)
#else
#define GO_SP(r) ((r)->sp)
#endif

struct db_offsets {
	u64 stmt_db;         // database/sql.Stmt.db
	u64 stmt_query;      // database/sql.Stmt.query
	u64 tx_db;           // database/sql.Tx.db
	u64 tx_done;         // database/sql.Tx.done (int32 or atomic.Bool: nonzero first byte)
	u64 conn_db_spill;   // where (*DB).conn spilled its receiver, from SP in its body
	u64 op_err_err;      // net.OpError.Err
	u64 syscall_err_err; // os.SyscallError.Err
};

struct db_start {
	u64 start_ns;
	u64 db;
	u64 query; // string data pointer (0 for BEGIN/COMMIT/ROLLBACK)
	u64 query_len;
	u8 op;
	u8 err_pos;
	u8 _pad[6];
};

struct db_event {
	struct event_header hdr;
	struct go_error err;
	u64 db;
	u8 op;
	u8 _pad;
	u16 query_len;
	u32 _pad2;
	char query[DB_QUERY_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, u32);
	__type(value, struct db_offsets);
} db_config SEC(".maps");

// Operations in flight: a plain hash, cheaper per update than an LRU map
// and never evicting an operation in flight silently; a start that finds
// it full is counted as lost, and the agent sweeps starts whose end never
// came.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct goroutine_key);
	__type(value, struct db_start);
} db_starts SEC(".maps");

// Waits for a connection in flight: start time by goroutine. A plain hash
// like db_starts: a wait that finds it full is counted as lost, and the
// agent sweeps waits whose end never came.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct goroutine_key);
	__type(value, u64);
} db_waits SEC(".maps");

const struct db_event *unused_db_event __attribute__((unused));

static __always_inline int start(struct go_regs *ctx, u64 db, u64 q, u64 qlen, u8 op, u8 err_pos)
{
	struct goroutine_key k = {.tgid = current_tgid(), .g = GO_G(ctx)};
	struct db_start s = {
		.start_ns = bpf_ktime_get_ns(),
		.db = db,
		.query = q,
		.query_len = qlen,
		.op = op,
		.err_pos = err_pos,
	};
	if (bpf_map_update_elem(&db_starts, &k, &s, BPF_ANY) != 0)
		count_lost(FAMILY_DB);
	return 0;
}

// (*DB).queryDC(db, ctx, txctx, dc, releaseConn, query string, args):
// db in arg 1, query in args 8 and 9; returns (*Rows, error).
SEC("uprobe/db_query_dc")
int uprobe_db_query_dc(struct go_regs *ctx)
{
	return start(ctx, GO_ARG1(ctx), GO_ARG8(ctx), GO_ARG9(ctx), DB_OP_QUERY, ERR_IN_BX);
}

// (*DB).execDC(db, ctx, dc, release, query string, args): query in args 6
// and 7; returns (Result, error).
SEC("uprobe/db_exec_dc")
int uprobe_db_exec_dc(struct go_regs *ctx)
{
	return start(ctx, GO_ARG1(ctx), GO_ARG6(ctx), GO_ARG7(ctx), DB_OP_QUERY, ERR_IN_CX);
}

static __always_inline int start_stmt(struct go_regs *ctx, u8 err_pos)
{
	u32 tgid = current_tgid();
	const struct db_offsets *off = bpf_map_lookup_elem(&db_config, &tgid);
	if (!off)
		return 0;
	u64 s = GO_ARG1(ctx);
	// Stmt.db and the query's header beside it (database/sql.Stmt's
	// first two fields in every Go release; checked at run time against
	// the proven offsets) in one read: each read costs ~45 ns.
	struct {
		u64 db;
		u64 ptr;
		u64 len;
	} q = {};
	if (off->stmt_query == off->stmt_db + sizeof(u64)) {
		bpf_probe_read_user(&q, sizeof(q), (void *)(s + off->stmt_db));
	} else {
		bpf_probe_read_user(&q.ptr, 2 * sizeof(u64), (void *)(s + off->stmt_query));
		q.db = read_u64(s + off->stmt_db);
	}
	return start(ctx, q.db, q.ptr, q.len, DB_OP_QUERY, err_pos);
}

// (*Stmt).QueryContext(s, ctx, args...) (*Rows, error)
SEC("uprobe/db_stmt_query")
int uprobe_db_stmt_query(struct go_regs *ctx)
{
	return start_stmt(ctx, ERR_IN_BX);
}

// (*Stmt).ExecContext(s, ctx, args...) (Result, error)
SEC("uprobe/db_stmt_exec")
int uprobe_db_stmt_exec(struct go_regs *ctx)
{
	return start_stmt(ctx, ERR_IN_CX);
}

// (*DB).beginDC(db, ctx, dc, release, opts) (*Tx, error)
SEC("uprobe/db_begin")
int uprobe_db_begin(struct go_regs *ctx)
{
	return start(ctx, GO_ARG1(ctx), 0, 0, DB_OP_BEGIN, ERR_IN_BX);
}

static __always_inline int start_tx_end(struct go_regs *ctx, u8 op)
{
	u32 tgid = current_tgid();
	const struct db_offsets *off = bpf_map_lookup_elem(&db_config, &tgid);
	if (!off)
		return 0;
	u64 tx = GO_ARG1(ctx);
	u8 done = 0;
	bpf_probe_read_user(&done, 1, (void *)(tx + off->tx_done));
	if (done)
		return 0; // ErrTxDone: no operation
	return start(ctx, read_u64(tx + off->tx_db), 0, 0, op, ERR_IN_AX);
}

// (*Tx).Commit(tx) error
SEC("uprobe/db_commit")
int uprobe_db_commit(struct go_regs *ctx)
{
	return start_tx_end(ctx, DB_OP_COMMIT);
}

// (*Tx).rollback(tx, discardConn bool) error
SEC("uprobe/db_rollback")
int uprobe_db_rollback(struct go_regs *ctx)
{
	return start_tx_end(ctx, DB_OP_ROLLBACK);
}

// db_finish runs at every RET of the functions above.
SEC("uprobe/db_finish")
int uprobe_db_finish(struct go_regs *ctx)
{
	struct goroutine_key k = {.tgid = current_tgid(), .g = GO_G(ctx)};
	struct db_start *sp = bpf_map_lookup_elem(&db_starts, &k);
	if (!sp)
		return 0;
	struct db_start s = *sp;
	bpf_map_delete_elem(&db_starts, &k);
	const struct db_offsets *off = bpf_map_lookup_elem(&db_config, &k.tgid);
	if (!off)
		return 0;
	void *ring;
	struct db_event *e = reserve(FAMILY_DB, sizeof(*e), &ring);
	if (!e)
		return 0;
	e->hdr.kind = FAMILY_DB;
	e->hdr.flags = 0;
	e->hdr.pid = k.tgid;
	e->hdr.start_ns = s.start_ns;
	e->hdr.end_ns = bpf_ktime_get_ns();
	e->db = s.db;
	e->op = s.op;
	e->_pad = 0;
	e->_pad2 = 0;
	// Read every candidate register at a fixed offset (the verifier
	// forbids computed context offsets), then choose.
	u64 a1 = GO_ARG1(ctx), a2 = GO_ARG2(ctx), a3 = GO_ARG3(ctx), a4 = GO_ARG4(ctx);
	asm volatile("" : "+r"(a1), "+r"(a2), "+r"(a3), "+r"(a4));
	u64 itab = a3, data = a4;
	if (s.err_pos == ERR_IN_AX) {
		itab = a1;
		data = a2;
	} else if (s.err_pos == ERR_IN_BX) {
		itab = a2;
		data = a3;
	}
	capture_go_error(&e->err, itab, data, off->op_err_err, off->syscall_err_err);
	e->query_len = 0;
	if (s.query && s.query_len > 0) {
		u64 n = s.query_len;
		if (n > DB_QUERY_MAX)
			n = DB_QUERY_MAX;
		asm volatile("" : "+r"(n));
		if (n <= DB_QUERY_MAX && bpf_probe_read_user(e->query, n, (void *)s.query) == 0)
			e->query_len = n;
	}
	submit(ring, e);
	return 0;
}

// db_wait_start runs at the CALL of the blocking select in (*DB).conn.
SEC("uprobe/db_wait_start")
int uprobe_db_wait_start(struct go_regs *ctx)
{
	struct goroutine_key k = {.tgid = current_tgid(), .g = GO_G(ctx)};
	u64 now = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&db_waits, &k, &now, BPF_ANY) != 0)
		count_lost(FAMILY_DB);
	return 0;
}

// db_wait_end runs where that call returns: SP is back where it was at the
// call, so the receiver's spill slot is at the same place.
SEC("uprobe/db_wait_end")
int uprobe_db_wait_end(struct go_regs *ctx)
{
	struct goroutine_key k = {.tgid = current_tgid(), .g = GO_G(ctx)};
	u64 *sp = bpf_map_lookup_elem(&db_waits, &k);
	if (!sp)
		return 0;
	u64 start_ns = *sp;
	bpf_map_delete_elem(&db_waits, &k);
	const struct db_offsets *off = bpf_map_lookup_elem(&db_config, &k.tgid);
	if (!off)
		return 0;
	void *ring;
	struct db_event *e = reserve(FAMILY_DB, sizeof(*e), &ring);
	if (!e)
		return 0;
	e->hdr.kind = FAMILY_DB;
	e->hdr.flags = 0;
	e->hdr.pid = k.tgid;
	e->hdr.start_ns = start_ns;
	e->hdr.end_ns = bpf_ktime_get_ns();
	e->db = read_u64(GO_SP(ctx) + off->conn_db_spill);
	e->op = DB_OP_WAIT;
	e->_pad = 0;
	e->_pad2 = 0;
	e->query_len = 0;
	capture_go_error(&e->err, 0, 0, 0, 0);
	submit(ring, e);
	return 0;
}
