package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/tandem-mesh/tandem/internal/version"
)

func runOffline(stdin string, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(args, genericiooptions.IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut})
	return code, out.String(), errOut.String()
}

// TestInjectUninject: the plugin's inject takes the injector's flags and
// uninject gives the manifests back byte for byte.
func TestInjectUninject(t *testing.T) {
	src, err := os.ReadFile("../injector/testdata/greeter.yaml")
	if err != nil {
		t.Fatal(err)
	}
	code, injected, errOut := runOffline(string(src), "inject", "-f", "-", "--proxy-image", "registry.example/envoy:1")
	if code != 0 || !strings.Contains(injected, "tandem-proxy") || !strings.Contains(injected, "registry.example/envoy:1") {
		t.Fatalf("inject: exit %d, stderr %q\n%s", code, errOut, injected)
	}
	code, back, errOut := runOffline(injected, "uninject", "-f", "-")
	if code != 0 || back != string(src) {
		t.Fatalf("uninject: exit %d, stderr %q; the manifests differ from the input:\n%s", code, errOut, back)
	}
	if code, _, errOut := runOffline("", "inject"); code != 2 || !strings.Contains(errOut, "kubectl tandem inject: flag -f is required") {
		t.Errorf("inject without -f: exit %d, stderr %q", code, errOut)
	}
}

func TestVersionAndFlags(t *testing.T) {
	code, out, errOut := runOffline("", "version", "--client", "-o", "json")
	var v versions
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil || v.Client != version.Number() || v.Injector != nil {
		t.Fatalf("version --client -o json: exit %d (%v) %q %s", code, err, out, errOut)
	}
	for _, args := range [][]string{{"status", "-o", "xml"}, {"check", "--bogus"}, {"config"}, {"status", "extra"}, {"frobnicate"}} {
		code, _, errOut := runOffline("", args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2: %s", args, code, errOut)
		}
		if errOut == "" {
			t.Errorf("%v: no message", args)
		}
	}
}
