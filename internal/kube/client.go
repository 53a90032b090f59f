package kube

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// client reads the Kubernetes API over REST with JSON: the node's pods
// (listed by pages, then watched) and the pods' owners. It decodes only
// what the watcher reads.
type client struct {
	base  *url.URL
	http  *http.Client
	token *tokenSource // nil without a token file
	cfg   ClientConfig
}

// tokenPeriod is how often a token file is read again: a projected
// service-account token is rotated by the kubelet well before it expires
// (client-go reads it once a minute too).
const tokenPeriod = time.Minute

// newClient returns the client cfg describes; every response (or failure
// to get one) is reported to observe.
func newClient(cfg *ClientConfig, observe func(error)) (*client, error) {
	base, err := cfg.baseURL()
	if err != nil {
		return nil, err
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.ServerName, InsecureSkipVerify: cfg.InsecureSkipVerify}
	if len(cfg.CAData) > 0 {
		if cfg.InsecureSkipVerify {
			return nil, errors.New("a certificate authority and insecure-skip-tls-verify are both given: choose one")
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(cfg.CAData) {
			return nil, errors.New("the certificate authority holds no PEM certificate")
		}
		tlsCfg.RootCAs = pool
	}
	if len(cfg.CertData) > 0 || len(cfg.KeyData) > 0 {
		cert, err := tls.X509KeyPair(cfg.CertData, cfg.KeyData)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		tlsCfg.Certificates = []tls.Certificate{cert}
	}
	proxy := http.ProxyFromEnvironment
	if cfg.ProxyURL != "" {
		u, err := url.Parse(cfg.ProxyURL)
		if err != nil {
			return nil, fmt.Errorf("proxy URL: %w", err)
		}
		proxy = http.ProxyURL(u)
	}
	tr := &http.Transport{
		Proxy:               proxy,
		DialContext:         (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tlsCfg,
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
		// A watch that hears nothing for a while is probed: a dead
		// connection ends it instead of keeping it silent forever.
		HTTP2: &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 15 * time.Second},
	}
	c := &client{base: base, cfg: *cfg, http: &http.Client{Transport: observer{tr, observe}}}
	if cfg.TokenFile != "" {
		c.token = &tokenSource{path: cfg.TokenFile, period: tokenPeriod, now: time.Now, token: cfg.Token}
	}
	return c, nil
}

// observer reports the outcome of each round trip: an error or a server
// failure (5xx) says the API is unreachable, any other answer that it is
// reachable.
type observer struct {
	rt      http.RoundTripper
	observe func(error)
}

func (o observer) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := o.rt.RoundTrip(req)
	switch {
	case err != nil:
		o.observe(err)
	case resp.StatusCode >= 500:
		o.observe(fmt.Errorf("%s %s: %s", req.Method, req.URL.Path, resp.Status))
	default:
		o.observe(nil)
	}
	return resp, err
}

// tokenSource reads a bearer token from a file, again after each period;
// when the file cannot be read, the last token read goes on being used.
type tokenSource struct {
	path   string
	period time.Duration
	now    func() time.Time

	mu     sync.Mutex
	token  string
	readAt time.Time
}

func (t *tokenSource) get() (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if t.token != "" && !t.readAt.IsZero() && now.Sub(t.readAt) < t.period {
		return t.token, nil
	}
	tok, err := readToken(t.path)
	if err != nil {
		if t.token != "" {
			t.readAt = now // tried again after a period
			return t.token, nil
		}
		return "", fmt.Errorf("bearer token: %w", err)
	}
	t.token, t.readAt = tok, now
	return tok, nil
}

// apiError is a request the API server answered with a failure.
type apiError struct {
	method, path string
	code         int
	reason       string // the Status's reason ("NotFound", "Expired")
	message      string
}

func (e *apiError) Error() string {
	s := fmt.Sprintf("%s %s: %d %s", e.method, e.path, e.code, http.StatusText(e.code))
	if e.message != "" {
		s += ": " + e.message
	}
	return s
}

// isStatus tells whether err is the API's answer with that HTTP code.
func isStatus(err error, code int) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.code == code
}

// get sends a GET of the API path with the query, and returns the
// response when it succeeded; else an *apiError or the transport's.
func (c *client) get(ctx context.Context, path string, q url.Values) (*http.Response, error) {
	u := *c.base
	u.Path = c.base.Path + path
	u.RawPath = ""
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "blindspot")
	switch {
	case c.token != nil:
		tok, err := c.token.get()
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	case c.cfg.Token != "":
		req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	case c.cfg.Username != "" || c.cfg.Password != "":
		req.SetBasicAuth(c.cfg.Username, c.cfg.Password)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	ae := &apiError{method: req.Method, path: path, code: resp.StatusCode}
	var st status
	// The Status a failure carries is small; what is not one is not shown.
	if json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&st) == nil {
		ae.reason, ae.message = st.Reason, oneLine(st.Message)
	}
	return nil, ae
}

// oneLine makes text from the API fit one line of the status page.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(strings.ToValidUTF8(s, "?")), " ")
	if len(s) > 300 {
		s = strings.ToValidUTF8(s[:300], "") + "…"
	}
	return s
}

// podsPath lists the pods of every namespace.
const podsPath = "/api/v1/pods"

// listTimeout bounds one page of a list.
const listTimeout = 2 * time.Minute

// listPods asks for one page of the pods selector matches: from the
// continue token when there is one, else at resource version rv ("" is
// the latest, "0" any the server has).
func (c *client) listPods(ctx context.Context, selector, rv, cont string, limit int, fn func(*pod) error) (listMeta, error) {
	ctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	q := url.Values{"fieldSelector": {selector}, "limit": {strconv.Itoa(limit)}}
	switch {
	case cont != "":
		q.Set("continue", cont)
	case rv == "0":
		q.Set("resourceVersion", rv)
	case rv != "":
		q.Set("resourceVersion", rv)
		q.Set("resourceVersionMatch", "NotOlderThan")
	}
	resp, err := c.get(ctx, podsPath, q)
	if err != nil {
		return listMeta{}, err
	}
	defer resp.Body.Close()
	lm, err := decodePodList(resp.Body, fn)
	if err != nil {
		return lm, fmt.Errorf("list pods: %w", err)
	}
	return lm, nil
}

// watchTimeout returns the time the server is asked to end a watch
// after: 5 to 10 minutes, random so that the agents of a cluster do not
// all come back at once (as client-go does).
func watchTimeout() time.Duration {
	return 5*time.Minute + rand.N(5*time.Minute)
}

// watchPods opens a watch of the pods selector matches, from rv, which
// the server ends after timeout. The caller closes the body.
func (c *client) watchPods(ctx context.Context, selector, rv string, timeout time.Duration) (io.ReadCloser, error) {
	q := url.Values{
		"fieldSelector":       {selector},
		"watch":               {"true"},
		"resourceVersion":     {rv},
		"allowWatchBookmarks": {"true"},
		"timeoutSeconds":      {strconv.Itoa(int(timeout / time.Second))},
	}
	resp, err := c.get(ctx, podsPath, q)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// ownerPaths are where the owners the watcher resolves are read.
var ownerPaths = map[string]string{
	"ReplicaSet": "/apis/apps/v1/namespaces/%s/replicasets/%s",
	"Job":        "/apis/batch/v1/namespaces/%s/jobs/%s",
}

// getOwner reads the metadata of a pod's owner.
func (c *client) getOwner(ctx context.Context, kind, namespace, name string) (*objectMeta, error) {
	p, ok := ownerPaths[kind]
	if !ok {
		return nil, fmt.Errorf("owner kind %q is not read", kind)
	}
	if !pathSegment(namespace) || !pathSegment(name) {
		return nil, fmt.Errorf("%s %q in namespace %q: not a valid name", kind, name, namespace)
	}
	resp, err := c.get(ctx, fmt.Sprintf(p, namespace, name), nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var obj struct {
		Metadata objectMeta `json:"metadata"`
	}
	br := &budgetReader{r: resp.Body, n: maxObject}
	if err := json.NewDecoder(br).Decode(&obj); err != nil {
		return nil, fmt.Errorf("decode %s %s/%s: %w", kind, namespace, name, err)
	}
	return &obj.Metadata, nil
}

// pathSegment tells whether an object's name can be put in a path as it
// is (the API's names are DNS labels or subdomains).
func pathSegment(s string) bool {
	if s == "" || s == "." || s == ".." || len(s) > 253 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == ':' || r == '_' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}
