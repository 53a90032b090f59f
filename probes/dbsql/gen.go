package dbsql

// The family's BPF objects, generated from bpf/db.c and committed so that
// go build and go test never need clang. Regenerate with `make generate`.
//go:generate go tool bpf2go -tags linux -cc $BPF_CLANG -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target amd64,arm64 -type db_event -type db_offsets bpf ../../bpf/db.c -- -I../../bpf
