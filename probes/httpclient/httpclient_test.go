package httpclient

import "testing"

func TestSplitHostPort(t *testing.T) {
	cases := []struct{ scheme, host, addr, port string }{
		{"http", "example.com", "example.com", "80"},
		{"https", "example.com", "example.com", "443"},
		{"http", "127.0.0.1:8080", "127.0.0.1", "8080"},
		{"http", "[::1]:9000", "::1", "9000"},
		{"https", "[::1]", "::1", "443"},
		{"ftp", "x", "x", ""},
	}
	for _, c := range cases {
		a, p := splitHostPort(c.scheme, c.host)
		if a != c.addr || p != c.port {
			t.Errorf("splitHostPort(%q, %q) = %q, %q; want %q, %q", c.scheme, c.host, a, p, c.addr, c.port)
		}
	}
}
