//go:build ignore

// The types every family's programs share with the probe manager
// (probes/): compiled only so that bpf2go generates their Go types from
// this object's BTF, which the manager then decodes through. No program.

#include "common.h"

const struct event_header *unused_event_header __attribute__((unused));
const struct goroutine_key *unused_goroutine_key __attribute__((unused));
