// Payment retries climb for one gateway: each gateway takes ten payments a
// second and retries one in five; with -fault, after the warm-up, alipay
// retries every payment three times.
package main

import "scenarios/scenario"

// Gateway is a payment gateway client.
type Gateway struct{ name string }

// retry sends a payment again; blindspot counts its calls per gateway.
//
//go:noinline
func (g *Gateway) retry(gateway string, attempt int) bool {
	scenario.Sleep(1)
	return attempt < 3
}

//go:noinline
func (g *Gateway) charge(n int) {
	retries := 0
	if n%5 == 0 {
		retries = 1
	}
	if g.name == "alipay" && scenario.Faulty() {
		retries = 3
	}
	for a := 1; a <= retries; a++ {
		g.retry(g.name, a)
	}
}

func main() {
	scenario.Parse()
	gws := []*Gateway{{"alipay"}, {"wechat"}, {"stripe"}}
	n := make([]int, len(gws))
	scenario.Loop(len(gws), 100*1e6, func(w int) {
		n[w]++
		gws[w].charge(n[w])
	})
}
