package xds_test

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/tandem-mesh/tandem/internal/xds"
	"github.com/tandem-mesh/tandem/internal/xds/objects"
)

// The Services the examples of docs/routing.md route.
const docServices = `
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec: {clusterIP: 10.96.1.1, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: reviews-v1, namespace: shop}
spec: {clusterIP: 10.96.1.2, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: reviews-v2, namespace: shop}
spec: {clusterIP: 10.96.1.3, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: greeter, namespace: shop}
spec: {clusterIP: 10.96.1.4, ports: [{name: grpc, port: 50051}]}
---
apiVersion: v1
kind: Service
metadata: {name: greeter-v2, namespace: shop}
spec: {clusterIP: 10.96.1.5, ports: [{name: grpc, port: 50051}]}
`

// Every route of docs/routing.md's examples, pasted as it stands, is
// accepted on its Service, resolves its backends, and translates without a
// word of complaint in both modes.
func TestRoutingDocExamples(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "routing.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(doc, -1)
	var all bytes.Buffer
	all.WriteString(docServices)
	for _, b := range blocks {
		all.WriteString("---\n")
		all.Write(b[1])
	}
	in, skipped, err := objects.Read(&all, "docs/routing.md")
	if err != nil || len(skipped) > 0 {
		t.Fatalf("reading the examples: %v, skipped %v", err, skipped)
	}
	if n := len(in.HTTPRoutes) + len(in.GRPCRoutes); n < 4 {
		t.Fatalf("found %d routes in the examples, want the canary, header, method and timeout ones", n)
	}
	for _, mode := range modes {
		if _, errs := xds.Translate(in, mode); len(errs) > 0 {
			t.Errorf("%v: %v", mode, errs)
		}
	}
	for _, rs := range xds.EvaluateRoutes(in) {
		for _, p := range rs.Parents {
			if !p.Accepted.OK {
				t.Errorf("%s %s/%s parentRefs[%d]: not accepted: %s", rs.Kind, rs.Namespace, rs.Name, p.Index, p.Accepted.Message)
			}
		}
		if !rs.ResolvedRefs.OK || rs.DroppedRules != "" {
			t.Errorf("%s %s/%s: %s %s", rs.Kind, rs.Namespace, rs.Name, rs.ResolvedRefs.Message, rs.DroppedRules)
		}
	}
}
