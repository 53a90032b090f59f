// A saga whose business success rate falls while HTTP stays green: POST
// /checkout runs reserve, charge and ship, compensating the done steps when
// one fails, and always answers 200. With -fault, after the warm-up, a third
// of the charge steps fail.
package main

import (
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"

	"scenarios/scenario"
)

var errDeclined = errors.New("charge declined")

// sagaStep runs one step of the checkout saga; blindspot counts calls per
// step and outcome.
//
//go:noinline
func sagaStep(step string, orderID int) error {
	scenario.Sleep(2)
	if step == "charge" && scenario.Faulty() && orderID%3 == 0 {
		return errDeclined
	}
	return nil
}

//go:noinline
func compensate(step string, orderID int) { scenario.Sleep(1) }

func main() {
	scenario.Parse()
	var order atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("POST /checkout", func(w http.ResponseWriter, r *http.Request) {
		id := int(order.Add(1))
		steps := []string{"reserve", "charge", "ship"}
		for i, s := range steps {
			if err := sagaStep(s, id); err != nil {
				for j := i - 1; j >= 0; j-- {
					compensate(steps[j], id)
				}
				fmt.Fprintf(w, `{"order":%d,"status":"compensated"}`, id)
				return
			}
		}
		fmt.Fprintf(w, `{"order":%d,"status":"done"}`, id)
	})
	addr := scenario.Serve("127.0.0.1:0", mux)
	c := &http.Client{}
	scenario.Loop(1, 50*1e6, func(int) {
		resp, err := c.Post("http://"+addr+"/checkout", "application/json", nil)
		if err == nil {
			resp.Body.Close()
		}
	})
}
