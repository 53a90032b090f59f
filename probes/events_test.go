package probes

import "unsafe"

// raw views an event struct as the bytes a ring buffer would hand over.
func raw[T any](ev *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(ev)), unsafe.Sizeof(*ev))
}

func setChars(dst []int8, s string) uint8 {
	for i := 0; i < len(s) && i < len(dst); i++ {
		dst[i] = int8(s[i])
	}
	return uint8(min(len(s), len(dst)))
}
