// Message publishing fails for one topic: three topics take twenty messages
// a second each; with -fault, after the warm-up, half of the publishes to
// order_events fail.
package main

import (
	"errors"

	"scenarios/scenario"
)

var errBroker = errors.New("broker: not leader for partition")

// publish sends one message; blindspot counts calls per topic and outcome.
//
//go:noinline
func publish(topic string, payload []byte) error {
	scenario.Sleep(1)
	if topic == "order_events" && scenario.Faulty() && payload[0]%2 == 0 {
		return errBroker
	}
	return nil
}

func main() {
	scenario.Parse()
	topics := []string{"order_events", "user_events", "audit_log"}
	n := make([]byte, len(topics))
	scenario.Loop(len(topics), 50*1e6, func(w int) {
		n[w]++
		publish(topics[w], []byte{n[w]})
	})
}
