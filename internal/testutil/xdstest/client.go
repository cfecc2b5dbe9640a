// Package xdstest is an ADS client for tests that speaks to the agent as
// Envoy does: state of the world or delta, with explicit ACKs and NACKs.
package xdstest

import (
	"context"
	"sort"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// NodeID is the node every test client announces.
const NodeID = "test-pod.test-ns"

// Wait bounds how long Recv waits for a response.
const Wait = 5 * time.Second

// stream is what the two client kinds share: a response pump and the
// node-on-first-request rule.
type stream[Resp any] struct {
	t      testing.TB
	cancel context.CancelFunc
	resps  chan Resp
	first  bool
}

func newStream[Resp any](t testing.TB, recv func() (Resp, error), cancel context.CancelFunc) *stream[Resp] {
	s := &stream[Resp]{t: t, cancel: cancel, resps: make(chan Resp, 16), first: true}
	go func() {
		defer close(s.resps)
		for {
			r, err := recv()
			if err != nil {
				return
			}
			s.resps <- r
		}
	}()
	return s
}

// node returns the node for the first request only, as Envoy's
// set_node_on_first_message_only does.
func (s *stream[Resp]) node() *corev3.Node {
	if !s.first {
		return nil
	}
	s.first = false
	return &corev3.Node{Id: NodeID}
}

// Close ends the stream.
func (s *stream[Resp]) Close() { s.cancel() }

func (s *stream[Resp]) recv() Resp {
	s.t.Helper()
	select {
	case r, ok := <-s.resps:
		if !ok {
			s.t.Fatal("xDS stream closed")
		}
		return r
	case <-time.After(Wait):
		s.t.Fatalf("no xDS response within %v", Wait)
	}
	var zero Resp
	return zero
}

// recvType returns the next response, which must be of typeURL.
func (s *stream[Resp]) recvType(typeURL string, typeOf func(Resp) string) Resp {
	s.t.Helper()
	r := s.recv()
	if got := typeOf(r); got != typeURL {
		s.t.Fatalf("got a %s response, want %s", got, typeURL)
	}
	return r
}

// Quiet fails the test if a response arrives within d.
func (s *stream[Resp]) Quiet(d time.Duration) {
	s.t.Helper()
	select {
	case r := <-s.resps:
		s.t.Fatalf("unexpected xDS response: %v", r)
	case <-time.After(d):
	}
}

// SotW is a state-of-the-world ADS client.
type SotW struct {
	*stream[*discoveryv3.DiscoveryResponse]
	st       discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	accepted map[string]string   // version accepted per type, sent back in later requests
	names    map[string][]string // subscribed names per type; none means wildcard
}

// NewSotW opens an ADS stream on conn; it ends with the test.
func NewSotW(t testing.TB, conn *grpc.ClientConn) *SotW {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &SotW{stream: newStream(t, st.Recv, cancel), st: st, accepted: map[string]string{}, names: map[string][]string{}}
}

func (c *SotW) send(typeURL, nonce string, detail *status.Status) {
	c.t.Helper()
	err := c.st.Send(&discoveryv3.DiscoveryRequest{
		Node:          c.node(),
		TypeUrl:       typeURL,
		ResourceNames: c.names[typeURL],
		VersionInfo:   c.accepted[typeURL],
		ResponseNonce: nonce,
		ErrorDetail:   detail,
	})
	if err != nil {
		c.t.Fatal(err)
	}
}

// Subscribe asks for resources of typeURL by name, or all of them (no names).
func (c *SotW) Subscribe(typeURL string, names ...string) {
	c.t.Helper()
	c.names[typeURL] = names
	c.send(typeURL, "", nil)
}

// ACK accepts r.
func (c *SotW) ACK(r *discoveryv3.DiscoveryResponse) {
	c.t.Helper()
	c.accepted[r.TypeUrl] = r.VersionInfo
	c.send(r.TypeUrl, r.Nonce, nil)
}

// NACK rejects r with msg, keeping the last accepted version.
func (c *SotW) NACK(r *discoveryv3.DiscoveryResponse, msg string) {
	c.t.Helper()
	c.send(r.TypeUrl, r.Nonce, &status.Status{Code: int32(codes.InvalidArgument), Message: msg})
}

// Recv returns the next response, which must be of typeURL.
func (c *SotW) Recv(typeURL string) *discoveryv3.DiscoveryResponse {
	c.t.Helper()
	return c.recvType(typeURL, (*discoveryv3.DiscoveryResponse).GetTypeUrl)
}

// RecvAny returns the next response of any type.
func (c *SotW) RecvAny() *discoveryv3.DiscoveryResponse {
	c.t.Helper()
	return c.recv()
}

// Delta is an incremental ADS client.
type Delta struct {
	*stream[*discoveryv3.DeltaDiscoveryResponse]
	st discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
}

// NewDelta opens a delta ADS stream on conn; it ends with the test.
func NewDelta(t testing.TB, conn *grpc.ClientConn) *Delta {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &Delta{stream: newStream(t, st.Recv, cancel), st: st}
}

// Send sends req, adding the node on the first request.
func (c *Delta) Send(req *discoveryv3.DeltaDiscoveryRequest) {
	c.t.Helper()
	req.Node = c.node()
	if err := c.st.Send(req); err != nil {
		c.t.Fatal(err)
	}
}

// Subscribe adds names ("*" for all) to the subscription of typeURL.
func (c *Delta) Subscribe(typeURL string, names ...string) {
	c.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typeURL, ResourceNamesSubscribe: names})
}

// ACK accepts r.
func (c *Delta) ACK(r *discoveryv3.DeltaDiscoveryResponse) {
	c.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: r.TypeUrl, ResponseNonce: r.Nonce})
}

// NACK rejects r with msg.
func (c *Delta) NACK(r *discoveryv3.DeltaDiscoveryResponse, msg string) {
	c.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: r.TypeUrl, ResponseNonce: r.Nonce,
		ErrorDetail: &status.Status{Code: int32(codes.InvalidArgument), Message: msg}})
}

// Recv returns the next response, which must be of typeURL.
func (c *Delta) Recv(typeURL string) *discoveryv3.DeltaDiscoveryResponse {
	c.t.Helper()
	return c.recvType(typeURL, (*discoveryv3.DeltaDiscoveryResponse).GetTypeUrl)
}

// RecvAny returns the next response of any type.
func (c *Delta) RecvAny() *discoveryv3.DeltaDiscoveryResponse {
	c.t.Helper()
	return c.recv()
}

// Names decodes the resource names of a state-of-the-world response, sorted.
func Names(t testing.TB, r *discoveryv3.DiscoveryResponse) []string {
	t.Helper()
	var out []string
	for _, a := range r.Resources {
		out = append(out, name(Decode[proto.Message](t, a)))
	}
	sort.Strings(out)
	return out
}

// DeltaNames returns the names of the resources in a delta response, sorted.
func DeltaNames(r *discoveryv3.DeltaDiscoveryResponse) []string {
	var out []string
	for _, res := range r.Resources {
		out = append(out, res.Name)
	}
	sort.Strings(out)
	return out
}

func name(m proto.Message) string {
	switch v := m.(type) {
	case *endpointv3.ClusterLoadAssignment:
		return v.ClusterName
	case interface{ GetName() string }:
		return v.GetName()
	}
	return ""
}

// Decode unpacks one resource.
func Decode[T proto.Message](t testing.TB, a *anypb.Any) T {
	t.Helper()
	m, err := a.UnmarshalNew()
	if err != nil {
		t.Fatal(err)
	}
	v, ok := m.(T)
	if !ok {
		t.Fatalf("resource is a %T", m)
	}
	return v
}
