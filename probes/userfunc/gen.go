package userfunc

// The family's BPF objects, generated from bpf/userfunc.c and committed so
// that go build and go test never need clang. Regenerate with
// `make generate`.
//go:generate go tool bpf2go -tags linux -cc $BPF_CLANG -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target amd64,arm64 -type uf_event -type uf_spec -type uf_label -type uf_loc bpf ../../bpf/userfunc.c -- -I../../bpf
