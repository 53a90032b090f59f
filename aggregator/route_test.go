package aggregator

import (
	"runtime"
	"strings"
	"testing"
)

func TestTemplatePath(t *testing.T) {
	cases := map[string]string{
		"":                   "/",
		"/":                  "/",
		"/healthz":           "/healthz",
		"/users/42":          "/users/{id}",
		"/users/42/orders/7": "/users/{id}/orders/{id}",
		"/items/3f2a9c1e-8b7d-4e6f-a1b2-c3d4e5f60718": "/items/{id}",
		"/blobs/deadbeefcafebabe0123":                 "/blobs/{id}",
		"/api/v1/users":                               "/api/v1/users",
		"/api/v2/orders/":                             "/api/v2/orders/",
		"/reports/2024-01-31":                         "/reports/{id}",
		"/t/AbC9xYz12QwE7rTy":                         "/t/{id}",
		"/static/app.js":                              "/static/app.js",
		"/cafe":                                       "/cafe", // hex letters, but a word
		"/oauth2/callback":                            "/oauth2/callback",
		"relative/5":                                  "/relative/{id}",
		"/a//b":                                       "/a//b",
	}
	for in, want := range cases {
		if got := TemplatePath(in); got != want {
			t.Errorf("TemplatePath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPatternRoute(t *testing.T) {
	cases := map[string]string{
		"GET /items/{id}":           "/items/{id}",
		"/items/{id}":               "/items/{id}",
		"POST example.com/orders":   "/orders",
		"example.com/":              "/",
		"GET  /x":                   "/x",
		"/static/":                  "/static/",
		"DELETE /u/{id}/o/{oid...}": "/u/{id}/o/{oid...}",
		"GET api.example.com/{$}":   "/{$}",
		"":                          "/",
	}
	for in, want := range cases {
		if got := PatternRoute(in); got != want {
			t.Errorf("PatternRoute(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTemplates(t *testing.T) {
	tp, err := ParseTemplates([]string{"/users/{user}/orders/{order}", "/files/{path...}", "/users/me"})
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"/users/abc/orders/xyz": "/users/{user}/orders/{order}",
		"/users/me":             "/users/me",
		"/files/a/b/c.txt":      "/files/{path...}",
		"/files":                "/files/{path...}",
		"/users/abc":            "",
	}
	for in, want := range cases {
		got, ok := tp.Match(in)
		if want == "" {
			if ok {
				t.Errorf("Match(%q) = %q, want no match", in, got)
			}
			continue
		}
		if !ok || got != want {
			t.Errorf("Match(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, bad := range []string{"users/{id}", "/a/{rest...}/b", "/a/x{id}"} {
		if _, err := ParseTemplates([]string{bad}); err == nil {
			t.Errorf("ParseTemplates(%q) succeeded, want error", bad)
		}
	}
}

func FuzzTemplatePath(f *testing.F) {
	for _, s := range []string{"/users/42", "", "/a/b/c", "/x/3f2a9c1e-8b7d-4e6f-a1b2-c3d4e5f60718", "//", "\xff/1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		// The least of two runs: a fuzzing worker allocates a little beside.
		var out string
		if n := min(allocs(func() { out = TemplatePath(path) }), allocs(func() { TemplatePath(path) })); n > uint64(4*len(path)+1024) {
			t.Fatalf("templating %d bytes allocated %d", len(path), n)
		}
		if !strings.HasPrefix(out, "/") {
			t.Fatalf("TemplatePath(%q) = %q: no leading slash", path, out)
		}
		if again := TemplatePath(out); again != out {
			t.Fatalf("not idempotent: %q → %q → %q", path, out, again)
		}
		if path != "" && strings.Count(out, "/") != strings.Count(path, "/")+boolInt(!strings.HasPrefix(path, "/")) {
			t.Fatalf("segments changed: %q → %q", path, out)
		}
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestRouterRoute(t *testing.T) {
	for _, c := range []struct {
		syntax RouteSyntax
		in     string
		want   string
	}{
		{ColonSyntax, "/users/:id", "/users/{id}"},
		{ColonSyntax, "/users/:id/orders/:order", "/users/{id}/orders/{order}"},
		{ColonSyntax, "/files/*path", "/files/{path...}"},
		{ColonSyntax, "/static/*", "/static/*"},
		{ColonSyntax, "/", "/"},
		{ColonSyntax, "", "/"},
		{ColonSyntax, "/a:b", "/a:b"},
		{ChiSyntax, "/users/{id}", "/users/{id}"},
		{ChiSyntax, "/api/*/items/{item}", "/api/items/{item}"},
		{ChiSyntax, "/a/*/b/*/c/{id:[0-9]+}", "/a/b/c/{id}"},
		{ChiSyntax, "/files/*", "/files/*"},
		{ChiSyntax, "/api/*/", "/api"},
		{ChiSyntax, "/", "/"},
		{BraceSyntax, "/users/{id:[0-9]+}", "/users/{id}"},
		{BraceSyntax, "/users/{id:[0-9]{3}}/x", "/users/{id}/x"},
		{BraceSyntax, "/users/{id}", "/users/{id}"},
		{BraceSyntax, "/files/", "/files/"},
		{BraceSyntax, "/bad/{id:[0-9]+", "/bad/{id:[0-9]+"},
	} {
		if got := RouterRoute(c.syntax, c.in); got != c.want {
			t.Errorf("RouterRoute(%d, %q) = %q, want %q", c.syntax, c.in, got, c.want)
		}
	}
}

// Whatever text a router's state holds, rendering it never panics and grows
// it at most threefold ("*p" is "{p...}").
func FuzzRouterRoute(f *testing.F) {
	for _, s := range []string{"/users/:id", "/files/*path", "/api/*/x/{id:[0-9]{3}}", "{", "}{:", "/*/*/", ":", "*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for syntax := ColonSyntax; syntax < routeSyntaxes; syntax++ {
			if out := RouterRoute(syntax, s); len(out) > 3*len(s)+1 {
				t.Errorf("RouterRoute(%d, %q) = %q: longer than the template allows", syntax, s, out)
			}
		}
	})
}

// allocs returns the bytes the process allocates while f runs.
func allocs(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
