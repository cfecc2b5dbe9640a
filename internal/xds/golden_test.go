package xds_test

import (
	"bytes"
	"cmp"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/proto"

	"github.com/tandem-mesh/tandem/internal/testutil/textdiff"
	"github.com/tandem-mesh/tandem/internal/xds"
	"github.com/tandem-mesh/tandem/internal/xds/objects"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden from the current output")

var modes = []xds.Mode{xds.Sidecar, xds.Proxyless}

// readInputs reads one golden input file.
func readInputs(t testing.TB, path string) xds.Inputs {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	in, skipped, err := objects.Read(f, filepath.Base(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(skipped) > 0 {
		t.Fatalf("golden inputs hold only translated kinds; skipped %v", skipped)
	}
	return in
}

// Each testdata/golden/<case>.yaml (Kubernetes objects) is translated in
// both modes; the resources must equal <case>.<mode>.json (what `agent
// config` prints) and the reported problems <case>.<mode>.errors (absent
// when there are none). Run with -update to rewrite them, then review the diff.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "golden", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) < 15 {
		t.Fatalf("found %d golden cases, want at least 15", len(inputs))
	}
	for _, path := range inputs {
		name := strings.TrimSuffix(filepath.Base(path), ".yaml")
		for _, mode := range modes {
			t.Run(name+"/"+mode.String(), func(t *testing.T) {
				in := readInputs(t, path)
				res, errs := xds.Translate(in, mode)
				got, err := res.JSON()
				if err != nil {
					t.Fatal(err)
				}
				base := strings.TrimSuffix(path, ".yaml") + "." + mode.String()
				compareGolden(t, base+".json", got)
				var msgs bytes.Buffer
				for _, e := range errs {
					msgs.WriteString(e.Error() + "\n")
				}
				compareGolden(t, base+".errors", msgs.Bytes())

				for _, r := range all(res) {
					if err := xds.Validate(r); err != nil {
						t.Errorf("published resource fails validation: %v", err)
					}
				}
				checkIncrementalEndpoints(t, in, mode, res)
				snapshot(t, res)
			})
		}
	}
}

func all(res *xds.Resources) []types.Resource {
	return slices.Concat(res.Listeners, res.Routes, res.Clusters, res.Endpoints)
}

// checkIncrementalEndpoints: the incremental path, ServiceEndpoints per
// Service, must give exactly the load assignments of the full translation.
func checkIncrementalEndpoints(t *testing.T, in xds.Inputs, mode xds.Mode, res *xds.Resources) {
	t.Helper()
	var inc []types.Resource
	seen := map[string]bool{}
	for _, svc := range in.Services {
		// Translate uses the first of two objects with one name.
		key := svc.Namespace + "/" + svc.Name
		if seen[key] {
			continue
		}
		seen[key] = true
		for _, cla := range xds.ServiceEndpoints(svc, in.EndpointSlices, mode) {
			if err := xds.Validate(cla); err != nil {
				t.Errorf("ServiceEndpoints: %v", err)
			}
			inc = append(inc, cla)
		}
	}
	if len(inc) != len(res.Endpoints) {
		t.Fatalf("ServiceEndpoints gave %d load assignments, Translate %d", len(inc), len(res.Endpoints))
	}
	slices.SortFunc(inc, func(a, b types.Resource) int { return cmp.Compare(name(a), name(b)) })
	for i := range inc {
		if !proto.Equal(inc[i], res.Endpoints[i]) {
			t.Errorf("ServiceEndpoints and Translate differ for %s:\n%v\n%v", name(inc[i]), inc[i], res.Endpoints[i])
		}
	}
}

func name(r types.Resource) string {
	if n, ok := r.(interface{ GetClusterName() string }); ok {
		return n.GetClusterName()
	}
	return r.(types.ResourceWithName).GetName()
}

// compareGolden compares got with a golden file; an empty got means the
// file must not exist.
func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if len(got) == 0 {
			if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			return
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if os.IsNotExist(err) && len(got) == 0 {
		return
	}
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the output (go test -update rewrites it; review the diff):\n%s", path, textdiff.Lines(string(want), string(got)))
	}
}
