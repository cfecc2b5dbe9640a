// Package testenv starts a real kube-apiserver and etcd (envtest) for tests,
// with the project's CRDs installed.
package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// RepoRoot returns the directory holding the project's go.mod, found by
// walking up from the working directory (go test runs in the package dir).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(data, []byte("module github.com/tandem-mesh/tandem\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module github.com/tandem-mesh/tandem above the working directory")
		}
		dir = parent
	}
}

// AssetsDir returns a directory with kube-apiserver and etcd: the one in
// KUBEBUILDER_ASSETS, or the one hack/envtest/assets.sh prepares (it builds
// them from Go modules when they cannot be downloaded; minutes on a first run).
func AssetsDir(extraArgs ...string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(filepath.Join(root, "hack", "envtest", "assets.sh"), extraArgs...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hack/envtest/assets.sh: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Options adjust the environment Start builds.
type Options struct {
	// WebhookInstall registers admission webhooks with the API server.
	WebhookInstall envtest.WebhookInstallOptions
	// APIServerFlags are extra kube-apiserver flags (name without "--").
	APIServerFlags map[string]string
}

// Start runs a fresh API server for the test, with the CRDs of config/crd
// installed, and stops it when the test ends. A missing control plane is a
// test failure, not a skip: the binaries are part of the build.
func Start(t testing.TB, opts Options) (*envtest.Environment, *rest.Config) {
	t.Helper()
	assets, err := AssetsDir()
	if err != nil {
		t.Fatalf("control-plane binaries for envtest: %v", err)
	}
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		WebhookInstallOptions: opts.WebhookInstall,
	}
	if len(opts.APIServerFlags) > 0 {
		args := env.ControlPlane.GetAPIServer().Configure()
		for k, v := range opts.APIServerFlags {
			args.Set(k, v)
		}
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting envtest with assets in %s: %v", assets, err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping envtest: %v", err)
		}
	})
	return env, cfg
}
