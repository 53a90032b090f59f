// Package discover finds the programs running on the host and reports when
// they start, exec and exit: from a scheduler tracepoint on every exec (so a
// new program is seen at once) and from periodic scans of /proc (so nothing
// is missed if the tracepoint is unavailable or its ring overflows). It also
// keeps one parsed copy of each executable, shared by the processes running
// it.
package discover
