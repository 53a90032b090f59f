package e2e

import (
	"strings"
	"testing"
	"time"
)

// strippedNoSignatureConfig counts and times calls of test/targets/business
// without any signature: on a binary without DWARF these read no argument,
// so they must attach. The last two read one (a label, an outcome) and
// must be refused, naming what needs the signature.
const strippedNoSignatureConfig = `
functions:
  - metric: retry_calls_total
    kind: count
    function: main.(*Gateway).Retry
  - metric: order_duration_seconds
    function: main.(*Shop).ProcessOrder
  - metric: explode_calls_total
    kind: count
    function: main.Explode
  - metric: explode_duration_seconds
    function: main.Explode
  - metric: walk_duration_seconds
    function: main.Walk
  - metric: ship_calls_total
    kind: count
    function: main.Ship
    labels: {fast: fast}
  - metric: explode_outcome_calls_total
    kind: count
    function: main.Explode
    outcome: status
`

// What one /run gives. A count without outcome is one hit at the entry, so
// the three calls of Explode that panic are counted; a duration needs the
// return, so they are not. Walk's recursive calls are not measured.
var strippedNoSignatureExpected = []bizExpect{
	{"retry_calls_total", nil, map[string]float64{"": 5}},
	{"order_duration_seconds", nil, map[string]float64{"": 10}},
	{"explode_calls_total", nil, map[string]float64{"": 6}},
	{"explode_duration_seconds", nil, map[string]float64{"": 3}},
	{"walk_duration_seconds", nil, map[string]float64{"": 2}},
}

func TestBusinessStrippedWithoutSignature(t *testing.T) {
	requireBPF(t)
	for _, v := range businessVariants(t) {
		if v.flavor != "stripped" {
			continue
		}
		t.Run(v.name, func(t *testing.T) {
			a := startAgent(t, strippedNoSignatureConfig)
			svc := uniqueService("biznosig", v)
			tp := startTarget(t, v.exe, svc)
			a.waitTargeted(t, tp.pid, 15*time.Second)
			errs := map[string]string{}
			attached := 0
			waitFor(15*time.Second, func() bool {
				ts := a.findTarget(tp.pid)
				if ts == nil {
					return false
				}
				attached, errs = 0, map[string]string{}
				for _, p := range ts.Probes {
					if m, ok := strings.CutPrefix(p.Family, "userfunc:"); ok {
						if p.Error != "" {
							errs[m] = p.Error
						} else {
							attached++
						}
					}
				}
				return attached+len(errs) == 7
			})
			if attached != 5 || len(errs) != 2 {
				t.Fatalf("%d entries attached, errors %v; want 5 attached and 2 refused", attached, errs)
			}
			for m, want := range map[string]string{"ship_calls_total": "labels.fast", "explode_outcome_calls_total": "outcome"} {
				if e := errs[m]; !strings.Contains(e, "no DWARF") || !strings.Contains(e, want) || !strings.Contains(e, "add signature") {
					t.Errorf("%s refused with %q, want the reason (no DWARF), what needs the signature (%s) and the fix", m, e, want)
				}
			}
			for i := 1; i <= 2; i++ {
				if code, body, err := tp.do("GET", "/run"); err != nil || code != 200 {
					t.Fatalf("/run: %d %s %v", code, body, err)
				}
				waitBusiness(t, a, svc, strippedNoSignatureExpected, float64(i))
			}
		})
	}
}
