package probes

import "github.com/blindspot-dev/blindspot/probes/internal/eventbytes"

func raw[T any](ev *T) []byte             { return eventbytes.Raw(ev) }
func setChars(dst []int8, s string) uint8 { return eventbytes.SetChars(dst, s) }
