// Package decoy declares structs whose field names are those of
// net/http.response at other offsets, as real programs do (a distribution
// build of a popular server had one): type data must never take their
// offsets for net/http's.
package decoy

// Response shares its field names with net/http.response.
type Response struct {
	req         *int
	conn        *int
	pad         [5]int
	status      int
	wroteHeader bool
	handlerDone bool
}

// response has even the same type name, in another package.
type response struct {
	conn        *int
	req         *int
	status      int
	wroteHeader bool
	handlerDone bool
}

// Values keeps the decoys' type descriptors in the binary.
func Values() []any {
	anon := struct {
		req         *int
		conn        *int
		status      int
		wroteHeader bool
		handlerDone bool
	}{}
	return []any{&Response{}, &response{}, &anon}
}
