// Package eventbytes builds, in tests, the bytes of an event as a BPF
// program writes it into a ring buffer.
package eventbytes

import "unsafe"

// Raw views an event struct as the bytes a ring buffer would hand over.
func Raw[T any](ev *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(ev)), unsafe.Sizeof(*ev))
}

// SetChars copies s into a C char array and returns the length copied.
func SetChars(dst []int8, s string) uint8 {
	for i := 0; i < len(s) && i < len(dst); i++ {
		dst[i] = int8(s[i])
	}
	return uint8(min(len(s), len(dst)))
}
