package probes

// The types the manager shares with every family's programs, generated
// from bpf/shared.c (struct event_header and struct goroutine_key of
// bpf/common.h) and committed. Regenerate with `make generate`.
//go:generate go tool bpf2go -tags linux -cc $BPF_CLANG -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target amd64,arm64 -type event_header -type goroutine_key shared ../bpf/shared.c -- -I../bpf
