package goerror

import "testing"

func TestClassifyError(t *testing.T) {
	cases := []struct {
		typ, inner, inner2 string
		errno              uint64
		msg, want          string
	}{
		{"*net.OpError", "*os.SyscallError", "syscall.Errno", 111, "dial", "connection_refused"},
		{"*net.OpError", "*os.SyscallError", "syscall.Errno", 104, "read", "connection_reset"},
		{"*net.OpError", "*os.SyscallError", "syscall.Errno", 110, "dial", "timeout"},
		{"*net.OpError", "*os.SyscallError", "syscall.Errno", 113, "dial", "host_unreachable"},
		{"*net.OpError", "*os.SyscallError", "syscall.Errno", 1, "dial", "*net.OpError"},
		{"*net.OpError", "*poll.DeadlineExceededError", "", 0, "read", "timeout"},
		{"*net.OpError", "*net.DNSError", "", 0, "dial", "dns_error"},
		{"context.deadlineExceededError", "", "", 0, "", "timeout"},
		{"*errors.errorString", "", "", 0, "context canceled", "context_canceled"},
		{"*errors.errorString", "", "", 0, "net/http: request canceled", "context_canceled"},
		{"*errors.errorString", "", "", 0, "context deadline exceeded", "timeout"},
		{"*http.httpError", "", "", 0, "net/http: timeout awaiting response headers", "timeout"},
		{"*errors.errorString", "", "", 0, "sql: no rows in result set", "*errors.errorString"},
		{"*pq.Error", "", "", 0, "", "*pq.Error"},
		{"", "", "", 0, "", "_OTHER"},
	}
	for _, c := range cases {
		if got := Classify(c.typ, c.inner, c.inner2, c.errno, []byte(c.msg)); got != c.want {
			t.Errorf("Classify(%q, %q, %q, %d, %q) = %q, want %q", c.typ, c.inner, c.inner2, c.errno, c.msg, got, c.want)
		}
	}
}
