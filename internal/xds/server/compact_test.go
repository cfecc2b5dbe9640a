package server

import (
	"bytes"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func testCLA(addrs ...string) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: "outbound|50051||greeter.demo.svc.cluster.local"}
	var eps []*endpointv3.LbEndpoint
	for _, a := range addrs {
		eps = append(eps, &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: &corev3.Address{
				Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Address: a, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 50051}}}}}},
			LoadBalancingWeight: wrapperspb.UInt32(1),
		})
	}
	cla.Endpoints = []*endpointv3.LocalityLbEndpoints{{LbEndpoints: eps}}
	return cla
}

// What go-control-plane sends for a compact resource is the resource's own
// encoding, and reading it back gives the resource.
func TestCompactIsSentAsTheResource(t *testing.T) {
	cla := testCLA("198.51.100.11", "198.51.100.12")
	want, err := proto.MarshalOptions{Deterministic: true}.Marshal(cla)
	if err != nil {
		t.Fatal(err)
	}
	c, err := newCompact(cla.ClusterName, cla)
	if err != nil {
		t.Fatal(err)
	}
	got, err := cachev3.MarshalResource(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("marshaled compact resource differs from the resource:\n got %x\nwant %x", got, want)
	}
	if n := proto.Size(c); n != len(want) {
		t.Fatalf("proto.Size = %d, want %d", n, len(want))
	}
	if name := cachev3.GetResourceName(c); name != cla.ClusterName {
		t.Fatalf("resource name %q, want %q", name, cla.ClusterName)
	}
	back, err := c.decode(resource.EndpointType)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(back, cla) {
		t.Fatalf("decoded %v, want %v", back, cla)
	}
	// No copy is made, and what was returned has no spare capacity, so
	// two callers appending to it cannot write into one shared array.
	if &got[0] != &c.wire()[0] {
		t.Error("marshaling copied the held bytes")
	}
	if cap(got) != len(got) {
		t.Errorf("marshaled bytes have capacity %d beyond their length %d", cap(got), len(got))
	}
	// Appending to a buffer writes the bytes after its contents.
	withPrefix, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend([]byte{1, 2}, c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(withPrefix, append([]byte{1, 2}, want...)) {
		t.Fatalf("MarshalAppend = %x", withPrefix)
	}
}

func TestCompactEqualFollowsContent(t *testing.T) {
	a, _ := newCompact("a", testCLA("198.51.100.11", "198.51.100.12"))
	b, _ := newCompact("a", testCLA("198.51.100.11", "198.51.100.12"))
	c, _ := newCompact("a", testCLA("198.51.100.11"))
	if !a.equal(b) {
		t.Error("equal resources compare unequal")
	}
	if a.equal(c) {
		t.Error("different resources compare equal")
	}
}
