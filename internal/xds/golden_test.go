package xds_test

import (
	"bytes"
	"cmp"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/proto"

	"github.com/tandem-mesh/tandem/internal/testutil/golden"
	"github.com/tandem-mesh/tandem/internal/xds"
	"github.com/tandem-mesh/tandem/internal/xds/objects"
)

var modes = []xds.Mode{xds.Sidecar, xds.Proxyless}

// goldenClient is where the client of the golden cases runs; the Nodes,
// zones and hints of their EndpointSlices are named to match. Cases named
// unknown-locality-* are translated for a client whose node and zone are
// unknown.
var goldenClient = xds.Locality{Node: "node-a", Zone: "zone-a"}

// readInputs reads the golden input file name of d.
func readInputs(t testing.TB, d *golden.Dir, name string) xds.Inputs {
	t.Helper()
	in, skipped, err := objects.Read(bytes.NewReader(d.Read(t, name)), name)
	if err != nil {
		t.Fatal(err)
	}
	if len(skipped) > 0 {
		t.Fatalf("golden inputs hold only translated kinds; skipped %v", skipped)
	}
	if !strings.HasPrefix(name, "unknown-locality-") {
		in.Local = goldenClient
	}
	return in
}

// Each testdata/golden/<case>.yaml (Kubernetes objects) is translated in
// both modes; the resources must equal <case>.<mode>.json (what `agent
// config` prints) and the reported problems <case>.<mode>.errors (absent
// when there are none). Run with -update to rewrite them, then review the diff.
func TestGolden(t *testing.T) {
	d := golden.New(t, filepath.Join("testdata", "golden"))
	cases := d.Cases(t, ".yaml")
	if len(cases) < 15 {
		t.Fatalf("found %d golden cases, want at least 15", len(cases))
	}
	for _, name := range cases {
		for _, mode := range modes {
			t.Run(name+"/"+mode.String(), func(t *testing.T) {
				in := readInputs(t, d, name+".yaml")
				res, errs := xds.Translate(in, mode)
				got, err := res.JSON()
				if err != nil {
					t.Fatal(err)
				}
				base := name + "." + mode.String()
				d.Check(t, base+".json", got)
				var msgs bytes.Buffer
				for _, e := range errs {
					msgs.WriteString(e.Error() + "\n")
				}
				d.Check(t, base+".errors", msgs.Bytes())

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
		for _, cla := range xds.ServiceEndpoints(svc, in.EndpointSlices, in.Local, mode) {
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
