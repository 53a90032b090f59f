// Capturing a Go error value cheaply in BPF, for classification in user
// space: the dynamic type of the error (its runtime type descriptor, read
// from the itab), the first bytes of a leading string field (the text of an
// errors.New error), and, speculatively, the types two levels down as
// *net.OpError → *os.SyscallError → syscall.Errno nest them, with the errno.
// User space trusts the nested words only when the outer types match.
#pragma once

#include "common.h"

#define GO_ERROR_MSG_MAX 40

struct go_error {
	u64 type;        // runtime type of the error (0: nil error)
	u64 inner_type;  // type of the error at data+inner_off (OpError.Err)
	u64 inner2_type; // type of the error at inner data+inner2_off (SyscallError.Err)
	u64 errno;       // the word inner2's data points to
	u8 msg_len;
	u8 _pad[7];
	char msg[GO_ERROR_MSG_MAX];
};

// Go's itab: inter, type, hash, fun[]; the type at offset 8 on 64-bit.
static __always_inline u64 itab_type(u64 itab)
{
	if (!itab)
		return 0;
	return read_u64(itab + 8);
}

// capture_go_error_head is capture_go_error that also gives the two words
// it read at data (the leading string's header), for a caller that wants
// them too without reading them again: it returns 1 when it read them.
static __always_inline int capture_go_error_head(struct go_error *e, u64 itab, u64 data,
						 u64 inner_off, u64 inner2_off, u64 head[2])
{
	e->type = 0;
	e->inner_type = 0;
	e->inner2_type = 0;
	e->errno = 0;
	e->msg_len = 0;
	if (!itab)
		return 0;
	e->type = itab_type(itab);
	if (!data)
		return 0;
	struct go_string msg = {};
	int ok = bpf_probe_read_user(&msg, sizeof(msg), (void *)data) == 0;
	head[0] = msg.ptr;
	head[1] = (u64)msg.len;
	e->msg_len = copy_go_string(e->msg, GO_ERROR_MSG_MAX, msg);
	if (!inner_off)
		return ok;
	struct {
		u64 itab;
		u64 data;
	} in = {}, in2 = {};
	if (bpf_probe_read_user(&in, sizeof(in), (void *)(data + inner_off)) != 0 || !in.itab)
		return ok;
	e->inner_type = itab_type(in.itab);
	if (!in.data || !inner2_off)
		return ok;
	if (bpf_probe_read_user(&in2, sizeof(in2), (void *)(in.data + inner2_off)) != 0 || !in2.itab)
		return ok;
	e->inner2_type = itab_type(in2.itab);
	if (in2.data)
		e->errno = read_u64(in2.data);
	return ok;
}

static __always_inline void capture_go_error(struct go_error *e, u64 itab, u64 data,
					     u64 inner_off, u64 inner2_off)
{
	u64 head[2] = {};
	capture_go_error_head(e, itab, data, inner_off, inner2_off, head);
}
