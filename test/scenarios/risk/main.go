// Risk-rule evaluation latency rises for one rule: three rules take about
// 2ms each; with -fault, after the warm-up, the velocity rule takes 150ms.
package main

import "scenarios/scenario"

// evalRule evaluates one risk rule; blindspot times it per rule.
//
//go:noinline
func evalRule(rule string, amount int) bool {
	if rule == "velocity" && scenario.Faulty() {
		scenario.Sleep(150)
	} else {
		scenario.Sleep(2)
	}
	return amount < 10000
}

func main() {
	scenario.Parse()
	rules := []string{"velocity", "geo", "blacklist"}
	scenario.Loop(len(rules), 20*1e6, func(w int) {
		evalRule(rules[w], 500)
	})
}
