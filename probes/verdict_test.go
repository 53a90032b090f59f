package probes

import (
	"testing"
	"time"
)

func TestPlausibleDuration(t *testing.T) {
	if !PlausibleDuration(5, 5) || !PlausibleDuration(1, uint64(23*time.Hour)) ||
		PlausibleDuration(2, 1) || PlausibleDuration(1, 1+uint64(24*time.Hour)) {
		t.Error("PlausibleDuration: want end >= start and less than a day")
	}
}
