package xds_test

import (
	"bytes"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/proto"

	"github.com/tandem-mesh/tandem/internal/testutil/golden"
	"github.com/tandem-mesh/tandem/internal/xds"
	"github.com/tandem-mesh/tandem/internal/xds/objects"
)

var modes = []xds.Mode{xds.Sidecar, xds.Proxyless}

// goldenClient is where the client of the golden cases runs; the Nodes,
// zones and hints of their EndpointSlices, and the namespace of consumer
// routes, are named to match. Cases named unknown-locality-* are
// translated for a client whose node, zone and namespace are unknown.
var goldenClient = xds.Locality{Node: "node-a", Zone: "zone-a", Namespace: "client"}

// views are the clients a case is translated for: the golden client, and
// for consumer-route cases also one of another namespace, whose files are
// named <case>.producer.<mode>.*.
func views(name string) map[string]xds.Locality {
	out := map[string]xds.Locality{"": goldenClient}
	if strings.HasPrefix(name, "unknown-locality-") {
		out[""] = xds.Locality{}
	}
	if strings.HasPrefix(name, "route-consumer") {
		other := goldenClient
		other.Namespace = "mesh"
		out[".producer"] = other
	}
	return out
}

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
	in.Local = views(strings.TrimSuffix(name, ".yaml"))[""]
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
		t.Run(name+"/status", func(t *testing.T) {
			d.Check(t, name+".status", routeStatus(readInputs(t, d, name+".yaml")))
		})
		for view, local := range views(name) {
			for _, mode := range modes {
				t.Run(name+view+"/"+mode.String(), func(t *testing.T) {
					in := readInputs(t, d, name+".yaml")
					in.Local = local
					checkGolden(t, d, name+view+"."+mode.String(), in, mode)
				})
			}
		}
	}
}

// checkGolden translates in and compares the result with the golden
// files base.json and base.errors.
func checkGolden(t *testing.T, d *golden.Dir, base string, in xds.Inputs, mode xds.Mode) {
	t.Helper()
	res, errs := xds.Translate(in, mode)
	got, err := res.JSON()
	if err != nil {
		t.Fatal(err)
	}
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
	full := map[string]types.Resource{}
	for _, cla := range res.Endpoints {
		full[name(cla)] = cla
	}
	for _, cla := range inc {
		if !proto.Equal(cla, full[name(cla)]) {
			t.Errorf("ServiceEndpoints and Translate differ for %s:\n%v\n%v", name(cla), cla, full[name(cla)])
		}
		delete(full, name(cla))
	}
	// What only Translate has is the empty assignment of the cluster that
	// answers for backends that do not resolve.
	for n, cla := range full {
		if len(cla.(*endpointv3.ClusterLoadAssignment).GetEndpoints()) > 0 {
			t.Errorf("Translate has load assignment %s with endpoints, which ServiceEndpoints lacks", n)
		}
	}
}

func name(r types.Resource) string {
	if n, ok := r.(interface{ GetClusterName() string }); ok {
		return n.GetClusterName()
	}
	return r.(types.ResourceWithName).GetName()
}

// routeStatus renders what the injector writes into the routes' status,
// and which routes' timeouts win over each TrafficPolicy's: one line per
// condition; empty without routes.
func routeStatus(in xds.Inputs) []byte {
	var b bytes.Buffer
	cond := func(name string, c xds.RouteCondition) {
		fmt.Fprintf(&b, "  %s=%v %s: %s\n", name, c.OK, c.Reason, c.Message)
	}
	for _, rs := range xds.EvaluateRoutes(in) {
		fmt.Fprintf(&b, "%s %s/%s\n", rs.Kind, rs.Namespace, rs.Name)
		for _, p := range rs.Parents {
			cond(fmt.Sprintf("parentRefs[%d] Accepted", p.Index), p.Accepted)
		}
		cond("ResolvedRefs", rs.ResolvedRefs)
		if rs.DroppedRules != "" {
			fmt.Fprintf(&b, "  PartiallyInvalid: %s\n", rs.DroppedRules)
		}
		cond("Proxyless", rs.Proxyless)
	}
	for _, tp := range in.Policies {
		if routes := xds.RouteTimeoutOverrides(in, tp); len(routes) > 0 {
			fmt.Fprintf(&b, "TrafficPolicy %s/%s: the timeouts of %s win\n", tp.Namespace, tp.Name, strings.Join(routes, ", "))
		}
	}
	return b.Bytes()
}
