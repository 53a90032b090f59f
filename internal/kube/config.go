package kube

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ClientConfig is how the agent reaches the API server: where, what it
// trusts, and who it says it is.
type ClientConfig struct {
	// Server is the API server's URL (https://host:port, maybe with a
	// path prefix).
	Server string
	// CAData are the PEM certificates the server's must chain to; none
	// means the host's roots.
	CAData []byte
	// InsecureSkipVerify accepts any server certificate (never with CAData).
	InsecureSkipVerify bool
	// ServerName is the name the server's certificate is checked against
	// when it is not the URL's host.
	ServerName string
	// CertData and KeyData are the PEM client certificate and its key.
	CertData, KeyData []byte
	// Token is the bearer token; TokenFile a file holding it, read again
	// every minute (service-account tokens rotate). TokenFile wins.
	Token, TokenFile string
	// Username and Password are used for basic authentication when there
	// is no token.
	Username, Password string
	// ProxyURL is the proxy the requests go through ("" uses the
	// environment's HTTPS_PROXY/NO_PROXY).
	ProxyURL string
}

// serviceAccountDir is where a pod's service account is mounted (tests
// point it elsewhere).
var serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// maxConfigFile bounds what is read of a kubeconfig, a CA or a key file.
const maxConfigFile = 4 << 20

// Config returns the API client configuration: the kubeconfig file when
// one is named, else the in-cluster service account.
func Config(kubeconfig string) (*ClientConfig, error) {
	if kubeconfig != "" {
		cfg, err := loadKubeconfig(kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
		}
		return cfg, nil
	}
	cfg, err := inClusterConfig(os.Getenv, serviceAccountDir)
	if err != nil {
		return nil, fmt.Errorf("in-cluster configuration: %w", err)
	}
	return cfg, nil
}

// inClusterConfig is the configuration of a pod: the API server's service
// from the environment the kubelet sets, the service account's CA and
// token from their mount.
func inClusterConfig(getenv func(string) string, dir string) (*ClientConfig, error) {
	host, port := getenv("KUBERNETES_SERVICE_HOST"), getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return nil, errors.New("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set: the agent does not run in a pod; name a kubeconfig instead")
	}
	tokenFile := filepath.Join(dir, "token")
	if _, err := readToken(tokenFile); err != nil {
		return nil, fmt.Errorf("service account token: %w (is automountServiceAccountToken off?)", err)
	}
	ca, err := readFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("service account CA: %w", err)
	}
	return &ClientConfig{
		Server:    "https://" + net.JoinHostPort(host, port),
		CAData:    ca,
		TokenFile: tokenFile,
	}, nil
}

// kubeconfig is the part of a kubeconfig file the agent reads.
type kubeconfig struct {
	CurrentContext string `yaml:"current-context"`
	Clusters       []struct {
		Name    string `yaml:"name"`
		Cluster struct {
			Server                   string `yaml:"server"`
			CertificateAuthority     string `yaml:"certificate-authority"`
			CertificateAuthorityData string `yaml:"certificate-authority-data"`
			InsecureSkipTLSVerify    bool   `yaml:"insecure-skip-tls-verify"`
			TLSServerName            string `yaml:"tls-server-name"`
			ProxyURL                 string `yaml:"proxy-url"`
		} `yaml:"cluster"`
	} `yaml:"clusters"`
	Users []struct {
		Name string `yaml:"name"`
		User struct {
			Token                 string    `yaml:"token"`
			TokenFile             string    `yaml:"tokenFile"`
			ClientCertificate     string    `yaml:"client-certificate"`
			ClientCertificateData string    `yaml:"client-certificate-data"`
			ClientKey             string    `yaml:"client-key"`
			ClientKeyData         string    `yaml:"client-key-data"`
			Username              string    `yaml:"username"`
			Password              string    `yaml:"password"`
			Exec                  yaml.Node `yaml:"exec"`
			AuthProvider          yaml.Node `yaml:"auth-provider"`
			As                    string    `yaml:"as"`
			AsUID                 string    `yaml:"as-uid"`
			AsGroups              []string  `yaml:"as-groups"`
		} `yaml:"user"`
	} `yaml:"users"`
	Contexts []struct {
		Name    string `yaml:"name"`
		Context struct {
			Cluster string `yaml:"cluster"`
			User    string `yaml:"user"`
		} `yaml:"context"`
	} `yaml:"contexts"`
}

// loadKubeconfig reads the current context of a kubeconfig file: its
// cluster and user. Relative paths are the file's directory's.
func loadKubeconfig(path string) (*ClientConfig, error) {
	b, err := readFile(path)
	if err != nil {
		return nil, err
	}
	var kc kubeconfig
	if err := yaml.Unmarshal(b, &kc); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	return kc.config(filepath.Dir(path))
}

func (kc *kubeconfig) config(dir string) (*ClientConfig, error) {
	if kc.CurrentContext == "" {
		return nil, errors.New("no current-context: choose one with kubectl config use-context")
	}
	var clusterName, userName string
	found := false
	for _, c := range kc.Contexts {
		if c.Name == kc.CurrentContext {
			clusterName, userName, found = c.Context.Cluster, c.Context.User, true
			break
		}
	}
	if !found {
		return nil, fmt.Errorf("current-context %q is not among the contexts", kc.CurrentContext)
	}
	cfg := &ClientConfig{}
	found = false
	for _, c := range kc.Clusters {
		if c.Name != clusterName {
			continue
		}
		found = true
		cl := c.Cluster
		if cl.Server == "" {
			return nil, fmt.Errorf("cluster %q has no server", clusterName)
		}
		cfg.Server, cfg.ServerName, cfg.InsecureSkipVerify, cfg.ProxyURL = cl.Server, cl.TLSServerName, cl.InsecureSkipTLSVerify, cl.ProxyURL
		var err error
		if cfg.CAData, err = dataOrFile(cl.CertificateAuthorityData, cl.CertificateAuthority, dir); err != nil {
			return nil, fmt.Errorf("cluster %q certificate authority: %w", clusterName, err)
		}
		break
	}
	if !found {
		return nil, fmt.Errorf("context %q names cluster %q, which is not among the clusters", kc.CurrentContext, clusterName)
	}
	if userName == "" {
		return cfg, nil // anonymous
	}
	found = false
	for _, u := range kc.Users {
		if u.Name != userName {
			continue
		}
		found = true
		us := u.User
		switch {
		case present(us.Exec):
			return nil, fmt.Errorf("kubeconfig user %q uses an exec credential plugin, which blindspot does not run: give it a token, tokenFile or client certificate", userName)
		case present(us.AuthProvider):
			return nil, fmt.Errorf("kubeconfig user %q uses an auth-provider, which blindspot does not support: give it a token, tokenFile or client certificate", userName)
		case us.As != "" || us.AsUID != "" || len(us.AsGroups) > 0:
			return nil, fmt.Errorf("kubeconfig user %q impersonates another (as, as-uid, as-groups), which blindspot does not support: give the agent that user's own credentials", userName)
		}
		cfg.Token, cfg.Username, cfg.Password = us.Token, us.Username, us.Password
		if us.TokenFile != "" {
			cfg.TokenFile = resolve(dir, us.TokenFile)
			if _, err := readToken(cfg.TokenFile); err != nil {
				return nil, fmt.Errorf("user %q token: %w", userName, err)
			}
		}
		var err error
		if cfg.CertData, err = dataOrFile(us.ClientCertificateData, us.ClientCertificate, dir); err != nil {
			return nil, fmt.Errorf("user %q client certificate: %w", userName, err)
		}
		if cfg.KeyData, err = dataOrFile(us.ClientKeyData, us.ClientKey, dir); err != nil {
			return nil, fmt.Errorf("user %q client key: %w", userName, err)
		}
		if (cfg.CertData == nil) != (cfg.KeyData == nil) {
			return nil, fmt.Errorf("user %q has a client certificate without its key, or a key without its certificate", userName)
		}
		break
	}
	if !found {
		return nil, fmt.Errorf("context %q names user %q, which is not among the users", kc.CurrentContext, userName)
	}
	return cfg, nil
}

// dataOrFile returns the base64 data when given (it wins, as in kubectl),
// else the file's content, else nil.
func dataOrFile(data, file, dir string) ([]byte, error) {
	if data != "" {
		b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(data), ""))
		if err != nil {
			return nil, fmt.Errorf("data is not base64: %w", err)
		}
		return b, nil
	}
	if file == "" {
		return nil, nil
	}
	return readFile(resolve(dir, file))
}

// present tells whether a kubeconfig field is given (not absent, not null).
func present(n yaml.Node) bool { return !n.IsZero() && n.Tag != "!!null" }

func resolve(dir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// readFile reads a configuration file, at most maxConfigFile bytes of it
// (a kubeconfig naming /dev/zero is an error, not the agent's memory).
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxConfigFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxConfigFile {
		return nil, fmt.Errorf("%s is larger than %d MiB", path, maxConfigFile>>20)
	}
	return b, nil
}

// readToken reads a bearer token file.
func readToken(path string) (string, error) {
	b, err := readFile(path)
	if err != nil {
		return "", err
	}
	tok := string(bytes.TrimSpace(b))
	if tok == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return tok, nil
}

// baseURL parses the server's URL; one without a scheme is https.
func (c *ClientConfig) baseURL() (*url.URL, error) {
	s := c.Server
	if s == "" {
		return nil, errors.New("no API server")
	}
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("API server URL: %w", err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return nil, fmt.Errorf("API server URL %q: scheme is neither https nor http", c.Server)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("API server URL %q has no host", c.Server)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawQuery, u.Fragment = "", ""
	return u, nil
}
