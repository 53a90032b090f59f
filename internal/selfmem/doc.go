// Package selfmem hands the agent's own executable pages back to the
// kernel once the agent no longer uses them.
//
// An agent touches most of its code and read-only tables once: package
// initialisation, the parsing of flags and configuration, the first
// attach to a program (ELF, DWARF and type data readers, the
// disassembler, the BPF loader). Those pages stay mapped, and count in
// its resident memory, for as long as it runs: about 20 MB of its 35 MB
// idle. Its working set afterwards, the event path, the exporter, the
// runtime's own tables, is a few megabytes. Executable tracks the
// executable's resident pages and, after a burst of work, unmaps the
// read-only ones (madvise MADV_DONTNEED): they leave the agent's resident
// set and stay in the page cache, shared and reclaimable as any cached
// file, so that whatever is used again (the next attach) maps back at
// the cost of a minor fault. MADV_PAGEOUT would free them from the page
// cache too, a few megabytes more, but the next attach then read its
// code back from the disk: 250–420 ms instead of 95–160 ms for a new
// executable on the development VM.
//
// Only read-only mappings of the executable are unmapped: their pages are
// the file's, so nothing is lost (writable mappings hold the data the
// program changed and are never touched).
package selfmem
