package e2e

import (
	"context"
	"crypto/tls"
	"net/http"
	"testing"
	"time"
)

// TestHTTP2ExactCounts drives the same known mix as TestExactCounts over
// HTTP/2 (TLS, net/http's bundled server) through every variant, and checks
// that every request is counted once under the right labels: the HTTP/2
// server ends requests in (*http2responseWriter).handlerDone (Go 1.27: net/http/internal/http2.(*responseWriter).handlerDone) and a stream's
// deferred recover instead of finishRequest.
func TestHTTP2ExactCounts(t *testing.T) {
	requireBPF(t)
	a := startAgent(t, "")
	for _, name := range allVariantNames() {
		t.Run(name, func(t *testing.T) {
			v := variantByName(t, name)
			t.Parallel()
			tp := startTarget(t, v.exe, uniqueService("h2", v), "-tls")
			a.waitTargeted(t, tp.pid, 10*time.Second)
			c := &http.Client{
				Timeout: 10 * time.Second,
				Transport: &http.Transport{
					Proxy:             nil,
					ForceAttemptHTTP2: true,
					TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // the target's throwaway certificate
				},
			}
			mix := trafficMix(v.minor)
			for _, r := range mix {
				ctx, cancel := context.WithTimeout(env.ctx, 10*time.Second)
				req, err := http.NewRequestWithContext(ctx, r.method, "https://"+tp.addr+r.path, nil)
				if err != nil {
					cancel()
					t.Fatal(err)
				}
				resp, err := c.Do(req)
				switch {
				case r.wantStatus == 0 && err == nil:
					t.Errorf("%s %s: status %d, want a reset stream", r.method, r.path, resp.StatusCode)
				case r.wantStatus != 0 && err != nil:
					cancel()
					t.Fatalf("%s %s: %v (target stderr: %s)", r.method, r.path, err, tp.stderr.String())
				case err == nil && resp.ProtoMajor != 2:
					t.Fatalf("%s %s: served over %s, want HTTP/2", r.method, r.path, resp.Proto)
				case err == nil && resp.StatusCode != r.wantStatus:
					t.Errorf("%s %s: status %d, want %d", r.method, r.path, resp.StatusCode, r.wantStatus)
				}
				if err == nil {
					resp.Body.Close()
				}
				cancel()
			}
			want := expectedCounts(mix)
			got := waitTotal(t, a, tp.service, uint64(len(mix)), 15*time.Second)
			for k, n := range want {
				if got[k].count != n {
					t.Errorf("%v: count %d, want %d", k, got[k].count, n)
				}
			}
			for k, se := range got {
				if _, ok := want[k]; !ok {
					t.Errorf("unexpected series %v count=%d", k, se.count)
				}
			}
			for k, se := range got {
				if se.labels["url_scheme"] != "https" || se.labels["network_protocol_version"] != "2" {
					t.Errorf("%v: url_scheme %q network_protocol_version %q, want https and 2", k, se.labels["url_scheme"], se.labels["network_protocol_version"])
				}
			}
			// The same TLS server answers HTTP/1.1 (no ALPN h2) and
			// HTTP/1.0: each under its own version.
			h1 := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
				Proxy:           nil,
				TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{},
				TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
			}}
			for i := 0; i < 3; i++ {
				resp, err := h1.Get("https://" + tp.addr + "/teapot")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.ProtoMajor != 1 || resp.StatusCode != 418 {
					t.Fatalf("HTTPS/1.1 GET /teapot: %s %d", resp.Proto, resp.StatusCode)
				}
			}
			h1.CloseIdleConnections()
			for i := 0; i < 2; i++ {
				conn, err := tls.Dial("tcp", tp.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
				if err != nil {
					t.Fatal(err)
				}
				rawHTTP10(t, conn, "/teapot", 418)
			}
			checkSchemeVersionCounts(t, a, tp.service, "/teapot", map[string]uint64{"https|2": 5, "https|1.1": 3, "https|1.0": 2})
			if !tp.alive() {
				t.Errorf("target exited: %s", tp.stderr.String())
			}
			if t.Failed() {
				t.Logf("series of %s:\n%s", tp.service, dump(got))
			}
		})
	}
}
