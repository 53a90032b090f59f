// Package selfmem hands the agent's own executable pages back to the
// kernel once the agent no longer uses them.
//
// An agent touches most of its code and read-only tables once: package
// initialisation, the parsing of flags and configuration, the first
// attach to a program (ELF, DWARF and type data readers, the
// disassembler, the BPF loader). Those pages stay mapped, and count in
// its resident memory, for as long as it runs: about 22 MB of its 36 MB
// idle. Its working set afterwards, the event path, the exporter, the
// runtime's own tables, is a couple of megabytes. Executable tracks the
// executable's resident pages and asks the kernel (madvise MADV_PAGEOUT)
// to take back the read-only ones after a burst of work: they leave the
// page cache too (the memory is free, not merely unmapped), and whatever
// is used again is read back from the file on its next touch, as any page
// of a program is, at the cost of a slower next attach. (MADV_DONTNEED
// would only unmap them: they would stay cached, charged to the agent's
// cgroup, and come back 64 KiB at a time, about twice the working set.)
// Writable pages (the data a program changed) and pages other processes
// map too are never touched.
package selfmem
