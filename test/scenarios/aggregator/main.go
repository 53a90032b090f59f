// The aggregation layer: every request fans out to four downstreams (on
// 127.0.0.2 to 127.0.0.5), each answering in 20ms; with -fault, after the
// warm-up, the one on 127.0.0.4 answers in 300ms.
package main

import (
	"fmt"
	"net/http"
	"sync"

	"scenarios/scenario"
)

func downstream(slowWhenFaulty bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slowWhenFaulty && scenario.Faulty() {
			scenario.Sleep(300)
		} else {
			scenario.Sleep(20)
		}
		fmt.Fprintln(w, "{}")
	})
}

func main() {
	scenario.Parse()
	var addrs []string
	for i := 2; i <= 5; i++ {
		addrs = append(addrs, scenario.Serve(fmt.Sprintf("127.0.0.%d:0", i), downstream(i == 4)))
	}
	c := &http.Client{}
	// Each request of the aggregation layer fans out to every downstream.
	scenario.Loop(3, 50*1e6, func(int) {
		var wg sync.WaitGroup
		for _, a := range addrs {
			wg.Add(1)
			go func() { defer wg.Done(); scenario.Get(c, "http://"+a+"/data") }()
		}
		wg.Wait()
	})
}
