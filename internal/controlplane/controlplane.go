// Package controlplane runs a real Kubernetes control plane on this machine:
// etcd and kube-apiserver through envtest, plus kube-controller-manager when
// Deployments must become Pods and Services must get EndpointSlices.
package controlplane

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

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

// AssetsDir returns a directory with kube-apiserver and etcd (and
// kube-controller-manager when withControllerManager): the one in
// KUBEBUILDER_ASSETS when it has them, else the one hack/envtest/assets.sh
// prepares (it builds them from Go modules when they cannot be downloaded;
// minutes on a first run).
func AssetsDir(withControllerManager bool) (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" && hasBinaries(dir, withControllerManager) {
		return dir, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	var args []string
	if withControllerManager {
		args = append(args, "--with-controller-manager")
	}
	cmd := exec.Command(filepath.Join(root, "hack", "envtest", "assets.sh"), args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hack/envtest/assets.sh: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

func hasBinaries(dir string, withControllerManager bool) bool {
	names := []string{"kube-apiserver", "etcd"}
	if withControllerManager {
		names = append(names, "kube-controller-manager")
	}
	for _, n := range names {
		if fi, err := os.Stat(filepath.Join(dir, n)); err != nil || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// Options adjust the environment New builds.
type Options struct {
	// WebhookInstall registers admission webhooks with the API server.
	WebhookInstall envtest.WebhookInstallOptions
	// APIServerFlags are extra kube-apiserver flags (name without "--").
	APIServerFlags map[string]string
	// WithControllerManager also prepares kube-controller-manager's binary.
	WithControllerManager bool
	// GatewayAPI also installs the Gateway API CRDs Tandem ships
	// (config/gateway-api: HTTPRoute, GRPCRoute).
	GatewayAPI bool
}

// New returns an envtest environment, not yet started, with the project's
// CRDs from config/crd (and config/gateway-api when asked).
func New(opts Options) (*envtest.Environment, error) {
	assets, err := AssetsDir(opts.WithControllerManager)
	if err != nil {
		return nil, fmt.Errorf("control-plane binaries: %w", err)
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	crds := []string{filepath.Join(root, "config", "crd", "bases")}
	if opts.GatewayAPI {
		crds = append(crds, filepath.Join(root, "config", "gateway-api"))
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     crds,
		ErrorIfCRDPathMissing: true,
		WebhookInstallOptions: opts.WebhookInstall,
	}
	if len(opts.APIServerFlags) > 0 {
		args := env.ControlPlane.GetAPIServer().Configure()
		for k, v := range opts.APIServerFlags {
			args.Set(k, v)
		}
	}
	return env, nil
}
