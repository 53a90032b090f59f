package probes

// BPF objects of the HTTP client and database/sql families, generated from
// bpf/http_client.c and bpf/db.c and committed. Regenerate with `make generate`.
//go:generate go tool bpf2go -tags linux -cc $BPF_CLANG -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target amd64,arm64 -type http_client_event -type http_client_offsets httpClient ../bpf/http_client.c -- -I../bpf
//go:generate go tool bpf2go -tags linux -cc $BPF_CLANG -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target amd64,arm64 -type db_event -type db_offsets db ../bpf/db.c -- -I../bpf
