//go:build linux

package main

// The empty probe programs are generated from bpf/bench_empty.c and
// committed, so that running the benchmark never needs clang.
//go:generate go tool bpf2go -tags linux -cc clang -cflags "-O2 -g -Wall -I/usr/include/x86_64-linux-gnu" -target amd64,arm64 benchEmpty ../../bpf/bench_empty.c

// The pipeline benchmark's producer (pipeline.go), from bpf/bench_pipeline.c.
//go:generate go tool bpf2go -tags linux -cc $BPF_CLANG -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target amd64,arm64 -type pipeline_template benchPipeline ../../bpf/bench_pipeline.c -- -I../../bpf
