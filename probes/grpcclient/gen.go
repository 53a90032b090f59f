package grpcclient

// The family's BPF objects, generated from bpf/grpc_client.c and committed
// so that go build and go test never need clang. Regenerate with
// `make generate`.
//go:generate go tool bpf2go -tags linux -cc $BPF_CLANG -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target amd64,arm64 -type grpc_client_event -type grpc_client_offsets bpf ../../bpf/grpc_client.c -- -I../../bpf
