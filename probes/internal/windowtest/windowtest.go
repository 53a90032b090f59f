// Package windowtest checks, in the families' tests, that the windows a
// BPF program reads a struct through (probes.Window) hold every field the
// program takes from them and fit the room the program has for them.
package windowtest

import "testing"

// Field is one field a program takes from a window: its offset in the
// struct and its size.
type Field struct {
	Name      string
	Off, Size uint64
}

// Window is a window as the offsets give it, and the fields read from it.
type Window struct {
	Name     string
	Off, Len uint64
	Fields   []Field
}

// Check fails t for a window that is empty, not 8-aligned, larger than
// room, or that leaves out a field read from it.
func Check(t *testing.T, room uint64, windows ...Window) {
	t.Helper()
	for _, w := range windows {
		if w.Len == 0 || w.Len > room || w.Off%8 != 0 {
			t.Errorf("%s: window [%d, +%d): want 8-aligned, 1 to %d bytes", w.Name, w.Off, w.Len, room)
			continue
		}
		for _, f := range w.Fields {
			if f.Off < w.Off || f.Off+f.Size > w.Off+w.Len {
				t.Errorf("%s: %s at [%d, %d) is outside the window [%d, %d)", w.Name, f.Name, f.Off, f.Off+f.Size, w.Off, w.Off+w.Len)
			}
		}
	}
}

// W is a window named name at [off, off+n) and the fields read from it.
func W(name string, off, n uint64, fields ...Field) Window {
	return Window{Name: name, Off: off, Len: n, Fields: fields}
}

// F is a field named name at [off, off+size).
func F(name string, off, size uint64) Field { return Field{Name: name, Off: off, Size: size} }
