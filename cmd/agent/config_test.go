package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const golden = "../../internal/xds/testdata/golden/"

func agentConfigRun(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if stdin != "" {
		f := filepath.Join(t.TempDir(), "stdin")
		if err := os.WriteFile(f, []byte(stdin), 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		old := os.Stdin
		os.Stdin = r
		defer func() { os.Stdin = old }()
	}
	code := runMain(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// `agent config` prints exactly what the golden files hold for the same
// objects, in both modes.
func TestConfigPrintsTheTranslation(t *testing.T) {
	for _, c := range []struct {
		args   []string
		golden string
	}{
		{[]string{"config", "-f", golden + "policy-full.yaml"}, "policy-full.sidecar.json"},
		{[]string{"config", "-f", golden + "policy-full.yaml", "--proxyless"}, "policy-full.proxyless.json"},
		{[]string{"config", "--proxyless", "-o", "json", "-f", golden + "dual-stack.yaml"}, "dual-stack.proxyless.json"},
		// The golden cases' client runs on node-a in zone-a.
		{[]string{"config", "-f", golden + "topology.yaml", "--node", "node-a", "--zone", "zone-a"}, "topology.sidecar.json"},
		{[]string{"config", "--proxyless", "--node=node-a", "--zone=zone-a", "-f", golden + "internal-traffic-local.yaml"}, "internal-traffic-local.proxyless.json"},
		// Its namespace is "client", whose consumer routes apply to it.
		{[]string{"config", "-f", golden + "route-consumer.yaml", "--namespace", "client"}, "route-consumer.sidecar.json"},
		{[]string{"config", "-f", golden + "route-consumer.yaml", "--namespace", "mesh"}, "route-consumer.producer.sidecar.json"},
		{[]string{"config", "-f", golden + "route-matching.yaml", "--proxyless"}, "route-matching.proxyless.json"},
	} {
		code, stdout, stderr := agentConfigRun(t, "", c.args...)
		if code != 0 || stderr != "" {
			t.Fatalf("%v: exit %d, stderr %q", c.args, code, stderr)
		}
		want, err := os.ReadFile(golden + c.golden)
		if err != nil {
			t.Fatal(err)
		}
		if stdout != string(want) {
			t.Errorf("%v: output differs from %s", c.args, c.golden)
		}
	}
}

// Without --node, a Local Service gets no endpoints and is reported, and
// topology prefers nothing.
func TestConfigWithoutLocality(t *testing.T) {
	code, stdout, stderr := agentConfigRun(t, "", "config", "-f", golden+"unknown-locality-local.yaml")
	want, err := os.ReadFile(golden + "unknown-locality-local.sidecar.json")
	if err != nil {
		t.Fatal(err)
	}
	if code != 1 || stdout != string(want) || !strings.Contains(stderr, "Service infra/node-agent: spec.internalTrafficPolicy is Local, but the node this client runs on is unknown") {
		t.Errorf("exit %d, stderr %q; output equal to the golden file: %v", code, stderr, stdout == string(want))
	}
}

func TestConfigYAMLAndStdin(t *testing.T) {
	in, err := os.ReadFile(golden + "grpc-port-name.yaml")
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := agentConfigRun(t, string(in), "config", "-f", "-", "-o", "yaml")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	j, err := yaml.YAMLToJSON([]byte(stdout))
	if err != nil {
		t.Fatalf("output is not YAML: %v", err)
	}
	var got, want any
	wantJSON, err := os.ReadFile(golden + "grpc-port-name.sidecar.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(j, &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(wantJSON, &want); err != nil {
		t.Fatal(err)
	}
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if !bytes.Equal(gj, wj) {
		t.Errorf("YAML output holds other resources than the JSON output")
	}
}

func TestConfigReportsProblems(t *testing.T) {
	code, stdout, stderr := agentConfigRun(t, "", "config", "-f", golden+"policy-missing-service.yaml")
	if code != 1 {
		t.Errorf("exit %d with policies not applied, want 1", code)
	}
	if !strings.Contains(stdout, `"name": "greeter.demo.svc.cluster.local:50051"`) {
		t.Errorf("resources not printed when some objects are reported")
	}
	if !strings.Contains(stderr, "agent config: TrafficPolicy demo/ghost: targets Service demo/ghost, which does not exist; not applied\n") {
		t.Errorf("stderr %q does not report the policy", stderr)
	}

	other := "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: demo}\n"
	code, stdout, stderr = agentConfigRun(t, other, "config", "-f", "-")
	if code != 0 || !strings.Contains(stderr, "agent config: stdin: document 1 (line 1): apps/v1 Deployment demo/web: ignored: not a Service, EndpointSlice, TrafficPolicy, HTTPRoute or GRPCRoute") {
		t.Errorf("other kinds: exit %d, stderr %q; want them reported as ignored, exit 0", code, stderr)
	}
	if !strings.Contains(stdout, `"name": "outbound"`) {
		t.Errorf("no objects still gives the sidecar its listener and passthrough:\n%s", stdout)
	}
}

func TestConfigUsageErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: ns}\nspec: {clusterIp: 10.0.0.1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"config"}, "-f is required"},
		{[]string{"config", "-f", bad, "-o", "xml"}, `-o "xml" is not an output format; use json or yaml`},
		{[]string{"config", "-f", filepath.Join(dir, "missing.yaml")}, "no such file or directory"},
		{[]string{"config", "-f", bad}, `bad.yaml: document 1 (line 1): v1 Service ns/a: unknown field "spec.clusterIp"`},
		{[]string{"config", "-f", bad, "extra"}, `unexpected argument "extra"`},
		{[]string{"config", "--nope"}, "flag provided but not defined: -nope"},
	} {
		code, stdout, stderr := agentConfigRun(t, "", c.args...)
		if code != 2 || stdout != "" || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and %q", c.args, code, stdout, stderr, c.want)
		}
	}
	if code, _, stderr := agentConfigRun(t, "", "config", "-h"); code != 0 || !strings.Contains(stderr, "Usage: agent config -f FILE") {
		t.Errorf("-h: exit %d, %q", code, stderr)
	}
}
