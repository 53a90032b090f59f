package main

import (
	"slices"

	"github.com/blindspot-dev/blindspot/probes/dbsql"
	"github.com/blindspot-dev/blindspot/probes/goerror"
	"github.com/blindspot-dev/blindspot/probes/goruntime"
	"github.com/blindspot-dev/blindspot/probes/httpclient"
	"github.com/blindspot-dev/blindspot/probes/httpserver"
	"github.com/blindspot-dev/blindspot/symbols"
)

// families are the struct fields each probe family (and goerror, which
// two of them share) declares it reads. A new family adds its Structs here.
var families = [][]symbols.StructSpec{
	httpserver.Structs,
	httpclient.Structs,
	goerror.Structs,
	dbsql.Structs,
	goruntime.Structs,
}

// tableStructs merges the families' declarations: one spec per type, with
// every field any family reads (in the order first declared), internal
// when any family says so.
func tableStructs() []symbols.StructSpec {
	var out []symbols.StructSpec
	at := map[string]int{}
	for _, specs := range families {
		for _, s := range specs {
			i, ok := at[s.Type]
			if !ok {
				at[s.Type] = len(out)
				out = append(out, symbols.StructSpec{Type: s.Type, Internal: s.Internal})
				i = len(out) - 1
			}
			out[i].Internal = out[i].Internal || s.Internal
			for _, f := range s.Fields {
				if !slices.Contains(out[i].Fields, f) {
					out[i].Fields = append(out[i].Fields, f)
				}
			}
		}
	}
	return out
}
