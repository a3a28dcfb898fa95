package kuberay_test

import (
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goray/goray/internal/provider/kuberay"
	"github.com/goray/goray/operator/test/testenv"
)

// TestFromKubeconfig reads kubeconfigs the way kubectl does, against the
// test API server: inline or file CA data (a relative path is taken from
// the kubeconfig's directory), insecure-skip-tls-verify, and refusals for
// an unverifiable server and for both settings at once.
func TestFromKubeconfig(t *testing.T) {
	env, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer env.Stop()
	cfg := env.Config
	b64 := base64.StdEncoding.EncodeToString
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), cfg.CAData, 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(name, cluster string) string { return writeKubeconfig(t, cfg, dir, name, cluster) }
	reach := func(path string) error {
		k, err := kuberay.FromKubeconfig(path)
		if err != nil {
			return err
		}
		_, err = k.GetRayCluster(context.Background(), "default", "none")
		if errors.Is(err, kuberay.ErrNotFound) {
			return nil // the server answered
		}
		return err
	}
	for _, c := range []struct{ name, cluster string }{
		{"inline-ca", "    certificate-authority-data: " + b64(cfg.CAData)},
		{"relative-ca-file", "    certificate-authority: ca.crt"},
		{"skip-verify", "    insecure-skip-tls-verify: true"},
	} {
		if err := reach(write(c.name, c.cluster)); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	if err := reach(write("no-ca", "    # no certificate authority")); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a server with no CA to verify it: %v, want a certificate error", err)
	}
	both := write("both", "    certificate-authority-data: "+b64(cfg.CAData)+"\n    insecure-skip-tls-verify: true")
	if _, err := kuberay.FromKubeconfig(both); err == nil || !strings.Contains(err.Error(), "insecure-skip-tls-verify") {
		t.Errorf("CA and insecure-skip-tls-verify together: %v, want a refusal naming them", err)
	}
}
