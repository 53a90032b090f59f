//go:build linux

package main

import "testing"

func TestTrapKindAMD64(t *testing.T) {
	for _, c := range []struct {
		name string
		code []byte
		want string
	}{
		{"PUSHQ BP", []byte{0x55}, trapEmulated},
		{"JBE rel8", []byte{0x76, 0x2c}, trapEmulated},
		{"CALL rel32", []byte{0xe8, 0xe8, 0x11, 0xff, 0xff}, trapEmulated},
		{"NOPL", []byte{0x0f, 0x1f, 0x40, 0x00}, trapEmulated},
		{"RET", []byte{0xc3}, trapSingleStep},
		{"CMPQ SP, 0x10(R14)", []byte{0x49, 0x3b, 0x66, 0x10}, trapSingleStep},
		{"ADDQ $0x10, SP", []byte{0x48, 0x83, 0xc4, 0x10}, trapSingleStep},
		{"empty", nil, trapUnclassified},
	} {
		if got := trapKindAMD64(c.code); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

func TestBPFPerOp(t *testing.T) {
	a := progStats{"start": {Runs: 10, Ns: 1000}, "idle": {Runs: 5, Ns: 50}}
	b := progStats{"start": {Runs: 30, Ns: 5000}, "idle": {Runs: 5, Ns: 50}, "new": {Runs: 10, Ns: 100}}
	got := perOp(a, b, 10)
	if len(got) != 2 || got["start"] != (bpfPerOp{Runs: 2, Ns: 400}) || got["new"] != (bpfPerOp{Runs: 1, Ns: 10}) {
		t.Errorf("perOp = %v", got)
	}
	if tot := bpfTotal(got); tot != (bpfPerOp{Runs: 3, Ns: 410}) {
		t.Errorf("bpfTotal = %v", tot)
	}
	m := medianBPF([]map[string]bpfPerOp{got, {"start": {Runs: 2, Ns: 600}}, {"start": {Runs: 2, Ns: 500}}})
	if m["start"] != (bpfPerOp{Runs: 2, Ns: 500}) || m["new"] != (bpfPerOp{}) {
		t.Errorf("medianBPF = %v", m)
	}
	if r := minMax([]float64{3, 1, 2}); r != [2]float64{1, 3} {
		t.Errorf("minMax = %v", r)
	}
}
