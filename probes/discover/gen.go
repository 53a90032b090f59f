package discover

//go:generate go tool bpf2go -tags linux -cc $BPF_CLANG -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target amd64,arm64 exec ../../bpf/process.c -- -I../../bpf
