// Package testenv gives tests a real kube-apiserver and etcd (envtest) with
// the project's CRDs installed, and small helpers to drive controllers.
package testenv

import (
	"testing"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/tandem-mesh/tandem/internal/controlplane"
)

// Options adjust the environment Start builds.
type Options = controlplane.Options

// RepoRoot returns the directory holding the project's go.mod.
func RepoRoot() (string, error) { return controlplane.RepoRoot() }

// Start runs a fresh API server for the test and stops it when the test
// ends. A missing control plane is a test failure, not a skip: the binaries
// are part of the build.
func Start(t testing.TB, opts Options) (*envtest.Environment, *rest.Config) {
	t.Helper()
	env, err := controlplane.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting envtest with assets in %s: %v", env.BinaryAssetsDirectory, err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping envtest: %v", err)
		}
	})
	return env, cfg
}
