// A goroutine leak grows until memory pressure: twenty subscriptions a
// second each run a goroutine holding a 100 KiB buffer. Healthy, a
// subscription ends after 100ms; with -fault, after the warm-up, it waits
// forever for a message that never comes.
package main

import (
	"time"

	"scenarios/scenario"
)

var never = make(chan byte)

// subscribe serves one subscription until it ends.
func subscribe() {
	buf := make([]byte, 100<<10) // over 64 KiB: on the heap, not the stack
	if scenario.Faulty() {
		buf[0] = <-never
	}
	time.Sleep(100 * time.Millisecond)
	buf[0] = 1
}

func main() {
	scenario.Parse()
	scenario.Loop(1, 50*1e6, func(int) {
		go subscribe()
	})
}
