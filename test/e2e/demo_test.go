package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-mesh/tandem/internal/controlplane"
	"github.com/tandem-mesh/tandem/internal/demo"
	"github.com/tandem-mesh/tandem/internal/netns"
	"github.com/tandem-mesh/tandem/internal/testutil/netnstest"
)

const binDirEnv = "TANDEM_E2E_BIN"

// buildBinaries builds what the demo runs as processes, as `make demo` does.
func buildBinaries(t *testing.T) string {
	t.Helper()
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, pkg := range map[string]string{
		"injector":       "./cmd/injector",
		"agent":          "./cmd/agent",
		"greeter-client": "./examples/greeter/cmd/greeter-client",
	} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return dir
}

// logWriter sends the demo's narration to the test log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestSeedExperiment is `make demo` without a terminal: the real control
// plane, injector, agent and greeter; one backend takes every request over a
// cluster IP, and Tandem spreads them over all three.
func TestSeedExperiment(t *testing.T) {
	var binDir string
	if !netns.InChild() {
		binDir = buildBinaries(t)
	}
	if !netnstest.RunTest(t, binDirEnv+"="+binDir) {
		return
	}
	binDir = os.Getenv(binDirEnv)
	// Both installs: the webhook, and the admission policies with the
	// injector as config/policy runs it.
	for _, injection := range []string{demo.InjectionWebhook, demo.InjectionPolicy} {
		t.Run(injection, func(t *testing.T) { testSeedExperiment(t, binDir, injection) })
	}
}

func testSeedExperiment(t *testing.T, binDir, injection string) {
	envoy, _ := exec.LookPath("envoy")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := demo.Run(ctx, demo.Options{
		Out:              logWriter{t},
		BinDir:           binDir,
		DirectRequests:   12,
		BalancedRequests: 300,
		DataPlane:        true,
		Envoy:            envoy,
		Injection:        injection,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Pods) != 4 {
		t.Fatalf("%d pods, want 3 servers and 1 client", len(res.Pods))
	}
	for i := range res.Pods {
		if !demo.Injected(&res.Pods[i]) {
			t.Errorf("pod %s was not injected", res.Pods[i].Name)
		}
	}
	if len(res.Direct) != 1 {
		t.Errorf("without a sidecar, answers came from %d pods (%v), want all 12 from one", len(res.Direct), res.Direct)
	}
	for pod, n := range res.Direct {
		if n != 12 {
			t.Errorf("without a sidecar, %s answered %d of 12", pod, n)
		}
	}
	if len(res.Balanced) != 3 {
		t.Errorf("with Tandem (%s), answers came from %d pods (%v), want 3", res.Path, len(res.Balanced), res.Balanced)
	}
	for pod, n := range res.Balanced {
		if n < 60 {
			t.Errorf("with Tandem (%s), %s answered %d of 300, want at least 20%%", res.Path, pod, n)
		}
	}
	if envoy == "" {
		t.Logf("no envoy binary on PATH: the balanced run used the proxyless path served by the same agent")
	}
}
