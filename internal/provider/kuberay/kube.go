// Package kuberay is the node provider of a goray cluster that a
// Kubernetes operator (goray's or KubeRay's) runs: the autoscaler beside
// the head (`goray kuberay-autoscaler`) reads the RayCluster resource,
// lists the cluster's pods as nodes, and scales by patching the
// RayCluster's worker group replicas and scaleStrategy.workersToDelete,
// which the operator carries out. It speaks to the API server over plain
// HTTPS with the pod's service account, as Ray's KubeRay provider does, so
// the goray binary links no Kubernetes client library.
package kuberay

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ErrNotFound is returned for a 404 from the API server.
var ErrNotFound = errors.New("kuberay: not found")

const serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// Kube is a minimal Kubernetes API client: JSON GETs and patches.
type Kube struct {
	Server string // https://HOST:PORT
	Token  string // bearer token ("" with client certificates)
	HTTP   *http.Client
}

// InCluster builds a client from the pod's service account, as every pod
// gets it: KUBERNETES_SERVICE_HOST/PORT, the token and the CA.
func InCluster() (*Kube, error) {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT_HTTPS")
	if port == "" {
		port = os.Getenv("KUBERNETES_SERVICE_PORT")
	}
	if host == "" || port == "" {
		return nil, errors.New("kuberay: not in a pod (KUBERNETES_SERVICE_HOST unset); pass --kubeconfig")
	}
	tok, err := os.ReadFile(serviceAccountDir + "/token")
	if err != nil {
		return nil, fmt.Errorf("kuberay: service account token: %w", err)
	}
	ca, err := os.ReadFile(serviceAccountDir + "/ca.crt")
	if err != nil {
		return nil, fmt.Errorf("kuberay: service account CA: %w", err)
	}
	tr, err := transport(ca, nil, nil)
	if err != nil {
		return nil, err
	}
	return &Kube{Server: "https://" + net.JoinHostPort(host, port), Token: strings.TrimSpace(string(tok)), HTTP: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, nil
}

// FromKubeconfig builds a client from a kubeconfig file's current context
// (server, CA, and a token or client certificate, all inline or as files).
func FromKubeconfig(path string) (*Kube, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("kuberay: kubeconfig: %w", err)
	}
	var kc struct {
		CurrentContext string `yaml:"current-context"`
		Clusters       []struct {
			Name    string `yaml:"name"`
			Cluster struct {
				Server     string `yaml:"server"`
				CAData     string `yaml:"certificate-authority-data"`
				CA         string `yaml:"certificate-authority"`
				SkipVerify bool   `yaml:"insecure-skip-tls-verify"`
			} `yaml:"cluster"`
		} `yaml:"clusters"`
		Users []struct {
			Name string `yaml:"name"`
			User struct {
				Token    string `yaml:"token"`
				CertData string `yaml:"client-certificate-data"`
				KeyData  string `yaml:"client-key-data"`
				Cert     string `yaml:"client-certificate"`
				Key      string `yaml:"client-key"`
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
	if err := yaml.Unmarshal(b, &kc); err != nil {
		return nil, fmt.Errorf("kuberay: kubeconfig %s: %w", path, err)
	}
	clusterName, userName := "", ""
	for _, c := range kc.Contexts {
		if c.Name == kc.CurrentContext || kc.CurrentContext == "" {
			clusterName, userName = c.Context.Cluster, c.Context.User
			break
		}
	}
	k := &Kube{}
	var ca, cert, key []byte
	skipVerify := false
	load := func(data, file string) ([]byte, error) {
		if data != "" {
			return base64.StdEncoding.DecodeString(data)
		}
		if file != "" {
			if !filepath.IsAbs(file) { // kubectl resolves paths against the kubeconfig's directory
				file = filepath.Join(filepath.Dir(path), file)
			}
			return os.ReadFile(file)
		}
		return nil, nil
	}
	found := false
	for _, c := range kc.Clusters {
		if c.Name == clusterName || (clusterName == "" && !found) {
			found = true
			k.Server = c.Cluster.Server
			skipVerify = c.Cluster.SkipVerify
			if ca, err = load(c.Cluster.CAData, c.Cluster.CA); err != nil {
				return nil, fmt.Errorf("kuberay: kubeconfig CA: %w", err)
			}
		}
	}
	if !found {
		return nil, fmt.Errorf("kuberay: kubeconfig %s: no cluster for context %q", path, kc.CurrentContext)
	}
	for _, u := range kc.Users {
		if u.Name == userName || userName == "" {
			k.Token = u.User.Token
			if cert, err = load(u.User.CertData, u.User.Cert); err != nil {
				return nil, err
			}
			if key, err = load(u.User.KeyData, u.User.Key); err != nil {
				return nil, err
			}
			break
		}
	}
	if skipVerify && len(ca) > 0 {
		return nil, fmt.Errorf("kuberay: kubeconfig %s: cluster %q sets both insecure-skip-tls-verify and a certificate authority (kubectl refuses this too)", path, clusterName)
	}
	tr, err := transport(ca, cert, key)
	if err != nil {
		return nil, err
	}
	tr.TLSClientConfig.InsecureSkipVerify = skipVerify
	k.HTTP = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	return k, nil
}

func transport(ca, cert, key []byte) (*http.Transport, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(ca) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			return nil, errors.New("kuberay: no certificate in the CA data")
		}
		cfg.RootCAs = pool
	}
	if len(cert) > 0 {
		pair, err := tls.X509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("kuberay: client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return &http.Transport{TLSClientConfig: cfg, Proxy: nil, MaxIdleConnsPerHost: 4}, nil
}

// do sends a request and decodes a 2xx JSON answer into out.
func (k *Kube) do(ctx context.Context, method, path, contentType string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(k.Server, "/")+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if k.Token != "" {
		req.Header.Set("Authorization", "Bearer "+k.Token)
	}
	resp, err := k.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("kuberay: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%w: %s", ErrNotFound, path)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("kuberay: %s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func clusterPath(namespace, name string) string {
	return "/apis/ray.io/v1/namespaces/" + url.PathEscape(namespace) + "/rayclusters/" + url.PathEscape(name)
}

// GetRayCluster reads a RayCluster.
func (k *Kube) GetRayCluster(ctx context.Context, namespace, name string) (*RayCluster, error) {
	var rc RayCluster
	if err := k.do(ctx, http.MethodGet, clusterPath(namespace, name), "", nil, &rc); err != nil {
		return nil, err
	}
	return &rc, nil
}

// PatchRayCluster applies a JSON Patch (RFC 6902) to a RayCluster.
func (k *Kube) PatchRayCluster(ctx context.Context, namespace, name string, ops []PatchOp) error {
	b, err := json.Marshal(ops)
	if err != nil {
		return err
	}
	return k.do(ctx, http.MethodPatch, clusterPath(namespace, name), "application/json-patch+json", b, nil)
}

// ListPods lists the pods of a cluster (label ray.io/cluster).
func (k *Kube) ListPods(ctx context.Context, namespace, cluster string) ([]Pod, error) {
	var list struct {
		Items []Pod `json:"items"`
	}
	q := url.Values{"labelSelector": {"ray.io/cluster=" + cluster}}
	if err := k.do(ctx, http.MethodGet, "/api/v1/namespaces/"+url.PathEscape(namespace)+"/pods?"+q.Encode(), "", nil, &list); err != nil {
		return nil, err
	}
	return list.Items, nil
}

// PatchOp is one JSON Patch operation.
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}
