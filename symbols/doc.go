// Package symbols reads Go executables (ELF, amd64 and arm64) so that
// uprobes can be placed on them without any help from the program.
//
// From one executable it recovers:
//
//   - function addresses, from .symtab when present and otherwise from the
//     function table in .gopclntab, which Go keeps even in stripped builds;
//   - the Go release and main module, from the embedded build info;
//   - the cheapest safe probe sites inside a function (an emulated entry
//     instruction and every return), by disassembling it with
//     golang.org/x/arch;
//   - byte offsets of struct fields: from DWARF when present, else from the
//     runtime type data Go keeps for reflection, else from a table generated
//     per Go release (see offsets_table.go and probes/internal/gentable).
//
// Everything is parsed from untrusted bytes: corrupt input yields an error,
// never a panic.
package symbols
