package discovery

import (
	"slices"
	"testing"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"

	pb "github.com/tandem-mesh/tandem/internal/discovery/discoverypb"
	"github.com/tandem-mesh/tandem/internal/discovery/resource"
)

func svc(ns, name, ip string) *pb.Service {
	return &pb.Service{Namespace: ns, Name: name, ClusterIp: ip, Ports: []*pb.ServicePort{{Name: "grpc", Port: 50051, Protocol: "TCP"}},
		EndpointGroups: []*pb.EndpointGroup{{AddressType: "IPv4", Endpoints: []*pb.Endpoint{{Address: "198.51.100.1"}}}}}
}

// client plays the delta server's part for one subscription: it opens
// watches and records what they answer.
type client struct {
	t      testing.TB
	c      *Cache
	sub    stream.Subscription
	out    chan cachev3.DeltaResponse
	nonce  string
	cancel func() // of the open watch
}

func newClient(t testing.TB, c *Cache, subscribe []string, initial map[string]string) *client {
	return &client{t: t, c: c, sub: stream.NewDeltaSubscription(subscribe, nil, initial, false), out: make(chan cachev3.DeltaResponse, 1)}
}

// watch opens a watch and returns its immediate answer, if any.
func (cl *client) watch() *discoverygrpc.DeltaDiscoveryResponse {
	cl.t.Helper()
	return cl.request(&cachev3.DeltaRequest{TypeUrl: resource.TypeURL, ResponseNonce: cl.nonce})
}

// change changes the subscription as a request doing so would.
func (cl *client) change(subscribe, unsubscribe []string) *discoverygrpc.DeltaDiscoveryResponse {
	cl.t.Helper()
	cl.sub.UpdateResourceSubscriptions(subscribe, unsubscribe)
	return cl.request(&cachev3.DeltaRequest{TypeUrl: resource.TypeURL, ResponseNonce: cl.nonce,
		ResourceNamesSubscribe: subscribe, ResourceNamesUnsubscribe: unsubscribe})
}

func (cl *client) request(req *cachev3.DeltaRequest) *discoverygrpc.DeltaDiscoveryResponse {
	cl.t.Helper()
	cancel, err := cl.c.CreateDeltaWatch(req, &cl.sub, cl.out)
	if err != nil {
		cl.t.Fatal(err)
	}
	r := cl.take()
	if r == nil {
		cl.cancel = cancel
	}
	return r
}

// take returns the answer waiting for the client, if any, and ACKs it.
func (cl *client) take() *discoverygrpc.DeltaDiscoveryResponse {
	cl.t.Helper()
	select {
	case r := <-cl.out:
		cl.sub.SetReturnedResources(r.GetReturnedResources())
		cl.nonce = "n"
		resp, err := r.GetDeltaDiscoveryResponse()
		if err != nil {
			cl.t.Fatal(err)
		}
		return resp
	default:
		return nil
	}
}

func names(r *discoverygrpc.DeltaDiscoveryResponse) []string {
	var out []string
	for _, x := range r.GetResources() {
		out = append(out, x.Name)
	}
	slices.Sort(out)
	return out
}

func TestCacheSubscriptions(t *testing.T) {
	c := NewCache()
	for _, s := range []*pb.Service{svc("shop", "cart", "10.0.0.1"), svc("shop", "pay", "10.0.0.2"), svc("web", "front", "10.0.0.3")} {
		if err := c.Set(s); err != nil {
			t.Fatal(err)
		}
	}
	all := newClient(t, c, []string{"*"}, nil)
	shop := newClient(t, c, []string{"shop/*"}, nil)
	one := newClient(t, c, []string{"web/front"}, nil)
	none := newClient(t, c, []string{"web/missing"}, nil)
	for _, tc := range []struct {
		cl   *client
		want []string
	}{
		{all, []string{"shop/cart", "shop/pay", "web/front"}},
		{shop, []string{"shop/cart", "shop/pay"}},
		{one, []string{"web/front"}},
		{none, nil},
	} {
		r := tc.cl.watch()
		if r == nil {
			t.Fatal("no answer to a first request")
		}
		if got := names(r); !slices.Equal(got, tc.want) {
			t.Errorf("first answer to %v = %v, want %v", tc.cl.sub.SubscribedResources(), got, tc.want)
		}
	}
	// Every client is in step now: watches wait.
	for _, cl := range []*client{all, shop, one, none} {
		if r := cl.watch(); r != nil {
			t.Fatalf("a client in step was answered: %v", names(r))
		}
	}

	// A change of shop/cart reaches the wildcard and shop watches only,
	// with that one resource.
	changed := svc("shop", "cart", "10.0.0.1")
	changed.EndpointGroups[0].Endpoints = append(changed.EndpointGroups[0].Endpoints, &pb.Endpoint{Address: "198.51.100.2"})
	if err := c.Set(changed); err != nil {
		t.Fatal(err)
	}
	for _, cl := range []*client{all, shop} {
		r := cl.take()
		if got := names(r); !slices.Equal(got, []string{"shop/cart"}) {
			t.Errorf("after a change of shop/cart, %v got %v", cl.sub.SubscribedResources(), got)
		}
	}
	for _, cl := range []*client{one, none} {
		if r := cl.take(); r != nil {
			t.Errorf("%v was told of a Service it does not follow: %v", cl.sub.SubscribedResources(), names(r))
		}
	}
	// Setting an identical resource sends nothing.
	all.watch()
	if err := c.Set(changed); err != nil {
		t.Fatal(err)
	}
	if r := all.take(); r != nil {
		t.Errorf("an unchanged resource was sent again: %v", names(r))
	}

	// A deletion is a removal for those that hold it.
	shop.watch()
	c.Delete("shop", "pay")
	for _, cl := range []*client{all, shop} {
		if r := cl.take(); r == nil || !slices.Equal(r.RemovedResources, []string{"shop/pay"}) {
			t.Errorf("%v: deletion of shop/pay answered with %v", cl.sub.SubscribedResources(), r)
		}
	}

	// Dropping a namespace subscription removes its Services; adding a
	// Service's name sends it.
	shop.watch()
	shop.cancel() // the server cancels the open watch before changing the subscription
	r := shop.change([]string{"web/front"}, []string{"shop/*"})
	if got := names(r); !slices.Equal(got, []string{"web/front"}) || !slices.Equal(r.RemovedResources, []string{"shop/cart"}) {
		t.Errorf("after changing the subscription: sent %v, removed %v; want [web/front], [shop/cart]", got, r.RemovedResources)
	}
}

// A client that reconnects with the versions it holds is sent only what
// changed meanwhile, and an empty answer when nothing did.
func TestCacheResumption(t *testing.T) {
	c := NewCache()
	a, b := svc("shop", "a", "10.0.0.1"), svc("shop", "b", "10.0.0.2")
	for _, s := range []*pb.Service{a, b} {
		if err := c.Set(s); err != nil {
			t.Fatal(err)
		}
	}
	first := newClient(t, c, []string{"*"}, nil)
	r := first.watch()
	held := map[string]string{}
	for _, x := range r.Resources {
		held[x.Name] = x.Version
	}

	// Another replica (or a restarted one) holding the same objects.
	c2 := NewCache()
	for _, s := range []*pb.Service{a, b} {
		if err := c2.Set(s); err != nil {
			t.Fatal(err)
		}
	}
	resumed := newClient(t, c2, []string{"*"}, held)
	r = resumed.watch()
	if r == nil || len(r.Resources) != 0 || len(r.RemovedResources) != 0 {
		t.Fatalf("resuming in step: answer %v, want an empty one", r)
	}

	b2 := svc("shop", "b", "10.0.0.9")
	c3 := NewCache()
	for _, s := range []*pb.Service{b2, svc("shop", "c", "10.0.0.3")} {
		if err := c3.Set(s); err != nil {
			t.Fatal(err)
		}
	}
	r = newClient(t, c3, []string{"*"}, held).watch()
	if got := names(r); !slices.Equal(got, []string{"shop/b", "shop/c"}) || !slices.Equal(r.RemovedResources, []string{"shop/a"}) {
		t.Errorf("resuming after changes: sent %v, removed %v; want [shop/b shop/c], [shop/a]", got, r.RemovedResources)
	}
}

// Changes made while a client has no watch open (between a response and
// its ACK) are answered to the ACK, and only they.
func TestCacheChangesBetweenResponseAndACK(t *testing.T) {
	c := NewCache()
	for _, n := range []string{"a", "b", "c"} {
		if err := c.Set(svc("shop", n, "10.0.0.1")); err != nil {
			t.Fatal(err)
		}
	}
	cl := newClient(t, c, []string{"*"}, nil)
	if r := cl.watch(); len(r.GetResources()) != 3 {
		t.Fatalf("initial answer %v", names(r))
	}
	if r := cl.watch(); r != nil {
		t.Fatalf("in step, answered %v", names(r))
	}
	cl.cancel()
	for _, n := range []string{"a", "b"} {
		if err := c.Set(svc("shop", n, "10.0.0.2")); err != nil {
			t.Fatal(err)
		}
	}
	c.Delete("shop", "c")
	r := cl.watch()
	if got := names(r); !slices.Equal(got, []string{"shop/a", "shop/b"}) || !slices.Equal(r.RemovedResources, []string{"shop/c"}) {
		t.Fatalf("ACK after changes: sent %v, removed %v; want [shop/a shop/b], [shop/c]", got, r.GetRemovedResources())
	}
	if r := cl.watch(); r != nil {
		t.Fatalf("in step again, answered %v", names(r))
	}
}
