package kube

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCA issues the tests' certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T, cn string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a certificate and its key, PEM encoded: a server's for
// the names and addresses, or a client's.
func (ca *testCA) issue(t *testing.T, cn string, dns []string, ips []net.IP, client bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	usage := x509.ExtKeyUsageServerAuth
	if client {
		usage = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: dns, IPAddresses: ips, ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

const kubeconfigHead = `apiVersion: v1
kind: Config
preferences: {}
current-context: prod
contexts:
- name: staging
  context: {cluster: staging, user: admin}
- name: prod
  context: {cluster: prod, user: agent, namespace: monitoring}
`

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func TestKubeconfig(t *testing.T) {
	ca := newCA(t, "kube-ca")
	cert, key := ca.issue(t, "blindspot", nil, nil, true)
	cluster := func(extra string) string {
		return "clusters:\n- name: staging\n  cluster: {server: https://staging.example:6443}\n- name: prod\n  cluster:\n    server: https://prod.example:6443\n" + extra
	}
	users := func(user string) string {
		return "users:\n- name: admin\n  user: {token: not-this-one}\n- name: agent\n  user:\n" + user
	}
	for _, c := range []struct {
		name  string
		yaml  string
		files map[string][]byte
		want  ClientConfig // paths relative to the kubeconfig's directory
		err   string
	}{
		{
			name: "token and CA data",
			yaml: kubeconfigHead + cluster("    certificate-authority-data: "+b64(ca.pem)+"\n") + users("    token: abc.def\n"),
			want: ClientConfig{Server: "https://prod.example:6443", CAData: ca.pem, Token: "abc.def"},
		},
		{
			name:  "token file and CA file, relative",
			yaml:  kubeconfigHead + cluster("    certificate-authority: pki/ca.crt\n    tls-server-name: kubernetes.default.svc\n") + users("    tokenFile: secrets/token\n"),
			files: map[string][]byte{"pki/ca.crt": ca.pem, "secrets/token": []byte("from-file\n")},
			want:  ClientConfig{Server: "https://prod.example:6443", CAData: ca.pem, ServerName: "kubernetes.default.svc", TokenFile: "secrets/token"},
		},
		{
			name: "client certificate data",
			yaml: kubeconfigHead + cluster("    insecure-skip-tls-verify: true\n") + users("    client-certificate-data: "+b64(cert)+"\n    client-key-data: "+b64(key)+"\n"),
			want: ClientConfig{Server: "https://prod.example:6443", InsecureSkipVerify: true, CertData: cert, KeyData: key},
		},
		{
			name:  "client certificate files, relative and absolute",
			yaml:  kubeconfigHead + cluster("    proxy-url: http://proxy.example:3128\n") + users("    client-certificate: ./pki/agent.crt\n    client-key: ABS/pki/agent.key\n"),
			files: map[string][]byte{"pki/agent.crt": cert, "pki/agent.key": key},
			want:  ClientConfig{Server: "https://prod.example:6443", ProxyURL: "http://proxy.example:3128", CertData: cert, KeyData: key},
		},
		{
			name: "basic authentication; null plugins are none",
			yaml: kubeconfigHead + cluster("") + users("    username: ops\n    password: hunter2\n    exec: null\n    auth-provider: null\n"),
			want: ClientConfig{Server: "https://prod.example:6443", Username: "ops", Password: "hunter2"},
		},
		{
			name: "exec plugin refused",
			yaml: kubeconfigHead + cluster("") + users("    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: aws\n      args: [eks, get-token]\n"),
			err:  `kubeconfig user "agent" uses an exec credential plugin, which blindspot does not run: give it a token, tokenFile or client certificate`,
		},
		{
			name: "auth provider refused",
			yaml: kubeconfigHead + cluster("") + users("    auth-provider:\n      name: oidc\n      config: {idp-issuer-url: https://issuer.example}\n"),
			err:  `kubeconfig user "agent" uses an auth-provider, which blindspot does not support`,
		},
		{
			name: "impersonation refused",
			yaml: kubeconfigHead + cluster("") + users("    token: abc\n    as: system:admin\n"),
			err:  `impersonates another`,
		},
		{
			name: "no current context",
			yaml: strings.Replace(kubeconfigHead, "current-context: prod\n", "", 1) + cluster("") + users("    token: abc\n"),
			err:  "no current-context: choose one with kubectl config use-context",
		},
		{
			name: "current context not defined",
			yaml: strings.Replace(kubeconfigHead, "current-context: prod", "current-context: dev", 1) + cluster("") + users("    token: abc\n"),
			err:  `current-context "dev" is not among the contexts`,
		},
		{
			name: "cluster not defined",
			yaml: kubeconfigHead + "clusters: []\n" + users("    token: abc\n"),
			err:  `names cluster "prod", which is not among the clusters`,
		},
		{
			name: "user not defined",
			yaml: kubeconfigHead + cluster("") + "users: []\n",
			err:  `names user "agent", which is not among the users`,
		},
		{
			name: "token file missing",
			yaml: kubeconfigHead + cluster("") + users("    tokenFile: secrets/token\n"),
			err:  "no such file or directory",
		},
		{
			name: "certificate without key",
			yaml: kubeconfigHead + cluster("") + users("    client-certificate-data: "+b64(cert)+"\n"),
			err:  "a client certificate without its key",
		},
		{
			name: "CA data not base64",
			yaml: kubeconfigHead + cluster("    certificate-authority-data: '!!!'\n") + users("    token: abc\n"),
			err:  "not base64",
		},
		{
			name: "not YAML",
			yaml: "clusters: [\n",
			err:  "parse:",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, b := range c.files {
				writeFile(t, filepath.Join(dir, name), b)
			}
			path := filepath.Join(dir, "kubeconfig")
			writeFile(t, path, []byte(strings.ReplaceAll(c.yaml, "ABS/", dir+"/")))
			got, err := Config(path)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) || !strings.HasPrefix(err.Error(), "kubeconfig "+path+": ") {
					t.Fatalf("err = %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := c.want
			if want.TokenFile != "" {
				want.TokenFile = filepath.Join(dir, want.TokenFile)
			}
			if got.Server != want.Server || !bytes.Equal(got.CAData, want.CAData) || got.InsecureSkipVerify != want.InsecureSkipVerify ||
				got.ServerName != want.ServerName || !bytes.Equal(got.CertData, want.CertData) || !bytes.Equal(got.KeyData, want.KeyData) ||
				got.Token != want.Token || got.TokenFile != want.TokenFile || got.Username != want.Username || got.Password != want.Password ||
				got.ProxyURL != want.ProxyURL {
				t.Errorf("config %+v\nwant   %+v", got, want)
			}
			if _, err := newClient(got, func(error) {}); err != nil {
				t.Errorf("client: %v", err)
			}
		})
	}
}

func TestKubeconfigNotAFile(t *testing.T) {
	if _, err := Config("/dev/zero"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("err = %v", err)
	}
	if _, err := Config(filepath.Join(t.TempDir(), "none")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("err = %v", err)
	}
}

func TestClientConfigRefused(t *testing.T) {
	ca := newCA(t, "kube-ca")
	for _, c := range []struct {
		cfg ClientConfig
		err string
	}{
		{ClientConfig{Server: "https://h", CAData: ca.pem, InsecureSkipVerify: true}, "choose one"},
		{ClientConfig{Server: "https://h", CAData: []byte("not PEM")}, "no PEM certificate"},
		{ClientConfig{Server: "https://h", CertData: []byte("x"), KeyData: []byte("y")}, "client certificate"},
		{ClientConfig{Server: "ftp://h"}, "neither https nor http"},
		{ClientConfig{Server: ""}, "no API server"},
		{ClientConfig{Server: "https://"}, "no host"},
	} {
		if _, err := newClient(&c.cfg, func(error) {}); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%+v: err = %v, want %q", c.cfg, err, c.err)
		}
	}
	if u, err := (&ClientConfig{Server: "proxy.example/k8s/clusters/c-1/"}).baseURL(); err != nil || u.String() != "https://proxy.example/k8s/clusters/c-1" {
		t.Errorf("a server without a scheme: %v %v", u, err)
	}
}

// TestTLS: the agent checks the server against the kubeconfig's CA (and
// its tls-server-name), and shows its client certificate.
func TestTLS(t *testing.T) {
	ca := newCA(t, "kube-ca")
	srvCert, srvKey := ca.issue(t, "apiserver", []string{"kubernetes.default.svc"}, nil, false)
	pair, err := tls.X509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	f := newFakeAPITLS(t, node, &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert})
	f.setPod(newPod(podUID, nil, "app"))
	cert, key := ca.issue(t, "system:node-agent", nil, nil, true)
	other := newCA(t, "another-ca")

	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "pki", "ca.crt"), ca.pem)
	writeFile(t, filepath.Join(dir, "pki", "other.crt"), other.pem)
	writeFile(t, filepath.Join(dir, "pki", "agent.crt"), cert)
	writeFile(t, filepath.Join(dir, "pki", "agent.key"), key)
	kubeconfig := func(clusterExtra, user string) string {
		p := filepath.Join(dir, "kubeconfig")
		writeFile(t, p, []byte(kubeconfigHead+"clusters:\n- name: prod\n  cluster:\n    server: "+f.srv.URL+"\n"+clusterExtra+
			"users:\n- name: agent\n  user:\n"+user))
		return p
	}
	withCert := "    client-certificate: pki/agent.crt\n    client-key: pki/agent.key\n"
	for _, c := range []struct {
		name, cluster, user string
		err                 string // the state's error; "" for connected
	}{
		{"CA file and client certificate", "    certificate-authority: pki/ca.crt\n    tls-server-name: kubernetes.default.svc\n", withCert, ""},
		{"certificate data", "    certificate-authority-data: " + b64(ca.pem) + "\n    tls-server-name: kubernetes.default.svc\n",
			"    client-certificate-data: " + b64(cert) + "\n    client-key-data: " + b64(key) + "\n", ""},
		{"another CA", "    certificate-authority: pki/other.crt\n    tls-server-name: kubernetes.default.svc\n", withCert, "certificate signed by unknown authority"},
		{"no server name", "    certificate-authority: pki/ca.crt\n", withCert, "doesn't contain any IP SANs"},
		{"no client certificate", "    certificate-authority: pki/ca.crt\n    tls-server-name: kubernetes.default.svc\n", "    token: abc\n", "certificate required"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Config(kubeconfig(c.cluster, c.user))
			if err != nil {
				t.Fatal(err)
			}
			w, err := NewForConfig(cfg, Options{Node: node, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			w.retry = backoff{min: 5 * time.Millisecond, max: 50 * time.Millisecond}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			w.Start(ctx)
			if c.err == "" {
				waitSynced(t, w)
				if !found(w, podUID) {
					t.Error("pod not listed")
				}
				for _, r := range f.allRequests() {
					if r.client != "system:node-agent" {
						t.Errorf("request with client certificate %q", r.client)
					}
				}
				return
			}
			eventually(t, "unreachable", func() bool { return w.Status().State == Unreachable })
			if st := w.Status(); !strings.Contains(st.Error, c.err) {
				t.Errorf("status %+v, want %q", st, c.err)
			}
		})
	}
}

// TestInCluster: in a pod, the API server's service comes from the
// environment, the CA and the token from the service account's mount;
// the token is read again after a minute, as the kubelet rotates it.
func TestInCluster(t *testing.T) {
	ca := newCA(t, "kube-ca")
	srvCert, srvKey := ca.issue(t, "apiserver", []string{"kubernetes.default.svc"}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, false)
	pair, err := tls.X509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	f := newFakeAPITLS(t, node, &tls.Config{Certificates: []tls.Certificate{pair}})
	f.addReplicaSet("shop", "rs", "rs-1", nil)
	host, port, _ := net.SplitHostPort(f.srv.Listener.Addr().String())
	env := map[string]string{"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}
	getenv := func(k string) string { return env[k] }

	dir := t.TempDir()
	if _, err := inClusterConfig(getenv, dir); err == nil || !strings.Contains(err.Error(), "service account token") {
		t.Errorf("without a token: %v", err)
	}
	writeFile(t, filepath.Join(dir, "token"), []byte("token-1"))
	if _, err := inClusterConfig(getenv, dir); err == nil || !strings.Contains(err.Error(), "service account CA") {
		t.Errorf("without a CA: %v", err)
	}
	writeFile(t, filepath.Join(dir, "ca.crt"), ca.pem)
	if _, err := inClusterConfig(func(string) string { return "" }, dir); err == nil || !strings.Contains(err.Error(), "KUBERNETES_SERVICE_HOST") {
		t.Errorf("outside a pod: %v", err)
	}
	v6, err := inClusterConfig(func(k string) string {
		return map[string]string{"KUBERNETES_SERVICE_HOST": "fd00:10:96::1", "KUBERNETES_SERVICE_PORT": "443"}[k]
	}, dir)
	if err != nil || v6.Server != "https://[fd00:10:96::1]:443" {
		t.Errorf("IPv6 service: %+v, %v", v6, err)
	}

	cfg, err := inClusterConfig(getenv, dir)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TokenFile != filepath.Join(dir, "token") {
		t.Errorf("token file %q", cfg.TokenFile)
	}
	w, err := NewForConfig(cfg, Options{Node: node, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	w.client.token.now = func() time.Time { return now }
	lastToken := func() string {
		t.Helper()
		if _, err := w.client.getOwner(context.Background(), "ReplicaSet", "shop", "rs"); err != nil {
			t.Fatal(err)
		}
		rs := f.allRequests()
		return strings.TrimPrefix(rs[len(rs)-1].header.Get("Authorization"), "Bearer ")
	}
	if tok := lastToken(); tok != "token-1" {
		t.Errorf("token %q, want token-1", tok)
	}
	writeFile(t, filepath.Join(dir, "token"), []byte("token-2\n"))
	now = now.Add(30 * time.Second)
	if tok := lastToken(); tok != "token-1" {
		t.Errorf("token %q within the minute, want token-1 still", tok)
	}
	now = now.Add(31 * time.Second)
	if tok := lastToken(); tok != "token-2" {
		t.Errorf("token %q after a minute, want the rotated token-2", tok)
	}
	// The file cannot be read for a while: the last token goes on.
	os.Remove(filepath.Join(dir, "token"))
	now = now.Add(2 * time.Minute)
	if tok := lastToken(); tok != "token-2" {
		t.Errorf("token %q while the file is missing, want token-2", tok)
	}
	writeFile(t, filepath.Join(dir, "token"), []byte("token-3"))
	now = now.Add(2 * time.Minute)
	if tok := lastToken(); tok != "token-3" {
		t.Errorf("token %q, want token-3", tok)
	}
}
