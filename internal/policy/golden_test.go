package policy_test

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/tandem-mesh/tandem/internal/policy"
	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
)

var update = flag.Bool("update", false, "rewrite config/policy/policies.yaml from the current output")

// The checked-in policies are what `injector policy` prints with its
// default flags (make policy writes them; make verify fails when stale).
func TestCheckedInPolicies(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Compile(newInjector(t))
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.YAML()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, "config", "policy", "policies.yaml")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("%s is stale (run make policy):\n%s", path, diff(string(want), string(got)))
	}
}
