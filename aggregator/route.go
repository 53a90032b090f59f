package aggregator

import (
	"strings"
)

// RouteOverflow is the http_route value used once a service has as many
// distinct routes as its bound allows.
const RouteOverflow = "/{overflow}"

// PatternRoute turns a net/http ServeMux pattern ("GET example.com/items/{id}")
// into an http_route ("/items/{id}"): the method and host are labels of their
// own or not labels at all.
func PatternRoute(pattern string) string {
	if i := strings.IndexByte(pattern, ' '); i >= 0 {
		pattern = strings.TrimLeft(pattern[i+1:], " \t")
	}
	if i := strings.IndexByte(pattern, '/'); i > 0 {
		pattern = pattern[i:]
	}
	if pattern == "" {
		return "/"
	}
	return pattern
}

// RouteSyntax names how a router writes its route templates.
type RouteSyntax int

const (
	// ColonSyntax: gin and echo, "/users/:id", "/files/*path", "/static/*".
	ColonSyntax RouteSyntax = 1 + iota
	// ChiSyntax: chi, "/users/{id}", "/users/{id:[0-9]+}", "/files/*", and
	// the patterns of nested routers joined ("/api/*" + "/items/{id}").
	ChiSyntax
	// BraceSyntax: gorilla/mux, "/users/{id}", "/users/{id:[0-9]+}".
	BraceSyntax
	routeSyntaxes
)

// RouterRoute renders a route template a router matched as an http_route
// in ServeMux's syntax, the one OpenTelemetry's examples use: a parameter
// is "{name}" whatever the router's syntax (":id" and "{id:[0-9]+}" both
// become "{id}"), a named catch-all is "{name...}" (gin's "*path"), and an
// unnamed catch-all stays "*" as written (chi's and echo's "/files/*").
// chi's nested routers are joined as chi's own RoutePattern joins them.
func RouterRoute(syntax RouteSyntax, template string) string {
	switch syntax {
	case ColonSyntax:
		template = colonParams(template)
	case ChiSyntax:
		for strings.Contains(template, "/*/") {
			template = strings.ReplaceAll(template, "/*/", "/")
		}
		if template != "/" {
			template = strings.TrimSuffix(strings.TrimSuffix(template, "//"), "/")
		}
		template = braceParams(template)
	case BraceSyntax:
		template = braceParams(template)
	}
	if template == "" {
		return "/"
	}
	return template
}

// colonParams rewrites ":name" segments as "{name}" and a final "*name" as
// "{name...}".
func colonParams(t string) string {
	if !strings.ContainsAny(t, ":*") {
		return t
	}
	var b strings.Builder
	for i, seg := range strings.Split(t, "/") {
		if i > 0 {
			b.WriteByte('/')
		}
		switch {
		case len(seg) > 1 && seg[0] == ':':
			b.WriteString("{" + seg[1:] + "}")
		case len(seg) > 1 && seg[0] == '*':
			b.WriteString("{" + seg[1:] + "...}")
		default:
			b.WriteString(seg)
		}
	}
	return b.String()
}

// braceParams drops the regular expression of "{name:regexp}" parameters,
// whose braces may nest ("{id:[0-9]{3}}"), keeping "{name}".
func braceParams(t string) string {
	if !strings.Contains(t, ":") {
		return t
	}
	var b strings.Builder
	for i := 0; i < len(t); i++ {
		if t[i] != '{' {
			b.WriteByte(t[i])
			continue
		}
		depth, end := 0, -1
		for j := i; j < len(t); j++ {
			if t[j] == '{' {
				depth++
			} else if t[j] == '}' {
				depth--
				if depth == 0 {
					end = j
					break
				}
			}
		}
		if end < 0 { // unbalanced: keep the rest as written
			b.WriteString(t[i:])
			break
		}
		name := t[i+1 : end]
		if c := strings.IndexByte(name, ':'); c >= 0 {
			name = name[:c]
		}
		b.WriteString("{" + strings.TrimSpace(name) + "}")
		i = end
	}
	return b.String()
}

// Templates are user-configured route templates such as
// "/api/users/{user}/orders/{order}". A segment "{name}" matches any one
// segment; a final "{name...}" matches the rest of the path.
type Templates struct {
	list []template
}

type template struct {
	text     string
	segments []string
	rest     bool // last segment is {name...}
}

// ParseTemplates checks and compiles route templates.
func ParseTemplates(list []string) (*Templates, error) {
	t := &Templates{}
	for _, s := range list {
		if !strings.HasPrefix(s, "/") {
			return nil, &TemplateError{Template: s, Reason: `must start with "/"`}
		}
		segs := strings.Split(strings.Trim(s, "/"), "/")
		tp := template{text: s, segments: segs}
		for i, seg := range segs {
			if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "...}") {
				if i != len(segs)-1 {
					return nil, &TemplateError{Template: s, Reason: `"{name...}" must be the last segment`}
				}
				tp.rest = true
			} else if strings.ContainsAny(seg, "{}") && !(strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}")) {
				return nil, &TemplateError{Template: s, Reason: "a segment is either literal or a whole {name}"}
			}
		}
		t.list = append(t.list, tp)
	}
	return t, nil
}

// TemplateError reports a route template that cannot be used.
type TemplateError struct {
	Template string
	Reason   string
}

func (e *TemplateError) Error() string {
	return "route template " + quote(e.Template) + ": " + e.Reason
}

func quote(s string) string { return `"` + s + `"` }

// Match returns the first template that matches path.
func (t *Templates) Match(path string) (string, bool) {
	if t == nil || len(t.list) == 0 {
		return "", false
	}
	segs := splitPath(path)
	for _, tp := range t.list {
		if tp.matches(segs) {
			return tp.text, true
		}
	}
	return "", false
}

func (tp *template) matches(segs []string) bool {
	n := len(tp.segments)
	if tp.rest {
		if len(segs) < n-1 {
			return false
		}
		n--
	} else if len(segs) != n {
		return false
	}
	for i := 0; i < n; i++ {
		want := tp.segments[i]
		if strings.HasPrefix(want, "{") {
			if segs[i] == "" {
				return false
			}
			continue
		}
		if segs[i] != want {
			return false
		}
	}
	return true
}

func splitPath(path string) []string {
	p := strings.Trim(path, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// TemplatePath folds the identifier-like segments of a raw path to "{id}":
// numbers, UUIDs, long hex strings and long random-looking tokens.
// "/users/42/orders/9f8c1e2a-..." becomes "/users/{id}/orders/{id}".
func TemplatePath(path string) string {
	if path == "" {
		return "/"
	}
	var b strings.Builder
	b.Grow(len(path))
	if path[0] != '/' {
		b.WriteByte('/')
	}
	start := 0
	for start <= len(path) {
		end := strings.IndexByte(path[start:], '/')
		if end < 0 {
			end = len(path)
		} else {
			end += start
		}
		seg := path[start:end]
		if isIdentifier(seg) {
			b.WriteString("{id}")
		} else {
			b.WriteString(seg)
		}
		if end < len(path) {
			b.WriteByte('/')
		}
		start = end + 1
	}
	return b.String()
}

// isIdentifier reports whether a path segment looks like a value rather than
// a name: such segments would give every request its own route.
func isIdentifier(seg string) bool {
	if seg == "" {
		return false
	}
	var digits, hex, letters, other int
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		switch {
		case c >= '0' && c <= '9':
			digits++
			hex++
		case c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F':
			hex++
			letters++
		case c >= 'g' && c <= 'z' || c >= 'G' && c <= 'Z':
			letters++
		case c == '-' || c == '_' || c == '.' || c == '~' || c == '=' || c == '+' || c == ':' || c == '%':
			other++
		default:
			other++
		}
	}
	n := len(seg)
	switch {
	case digits == n:
		return true // 42
	case isUUID(seg):
		return true
	case hex == n && n >= 12:
		return true // long hex: hashes, object ids
	case digits > 0 && digits+other == n && digits*2 >= n:
		return true // 2024-01-31, 1.5, 12:30
	case n >= 16 && digits >= 3 && letters >= 2 && other*8 <= n:
		return true // random tokens: base64url, ULIDs, Stripe-like ids
	}
	return false
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}
