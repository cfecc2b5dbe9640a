// Package cmd_test checks what the project's binaries are built from.
package cmd_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/tandem-mesh/tandem"

// TestProductionPackagesLinkNoTestCode: no package of the project that is
// built into a binary imports Go's testing package or the test helpers of
// internal/testutil (the project's convention for test-only code). The
// agent, the injector (whose discovery serves xDS) and the balancing
// benchmark (which serves the agent's xDS itself) still link testing
// through go-control-plane's pkg/log, which is not the project's to change;
// the other binaries, kubectl-tandem among them, link none. The
// measurement harnesses start envtest, as the tests do, and ship nowhere.
var xdsServers = []string{module + "/cmd/agent", module + "/cmd/injector", module + "/hack/balance"}

// The charts' make targets link testing through Helm's chart package, which
// asks testing.Testing() for its default capabilities; they ship nowhere.
var helmTools = []string{module + "/hack/charts"}

var measurementHarnesses = []string{module + "/hack/scale", module + "/hack/admission-latency"}

func TestProductionPackagesLinkNoTestCode(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}|{{.Name}}|{{join .Imports \" \"}}|{{join .Deps \" \"}}", module+"/...").Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	mains := 0
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "|")
		path, name, imports, deps := f[0], f[1], strings.Fields(f[2]), strings.Fields(f[3])
		if strings.HasPrefix(path, module+"/internal/testutil/") || strings.HasPrefix(path, module+"/test/") || slices.Contains(measurementHarnesses, path) {
			continue
		}
		if slices.Contains(imports, "testing") {
			t.Errorf("%s imports testing; move what needs it under internal/testutil", path)
		}
		for _, dep := range deps {
			if strings.HasPrefix(dep, module+"/internal/testutil/") {
				t.Errorf("%s imports %s; test helpers are for _test.go files only", path, dep)
			}
			if dep == "testing" && name == "main" && !slices.Contains(xdsServers, path) && !slices.Contains(helmTools, path) {
				t.Errorf("binary %s links the testing package", path)
			}
		}
		if name == "main" {
			mains++
			seen[path] = true
		}
	}
	for _, bin := range []string{"agent", "injector", "cni", "kubectl-tandem"} {
		if !seen[module+"/cmd/"+bin] {
			t.Errorf("the binary cmd/%s is not among the packages checked", bin)
		}
	}
	// cmd/injector, cmd/agent, cmd/cni, cmd/kubectl-tandem, hack/demo, the greeter's server and client.
	if mains < 7 {
		t.Errorf("found %d main packages, want at least 7; is go list seeing the module?\n%s", mains, out)
	}
}
