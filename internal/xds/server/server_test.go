package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tandem-mesh/tandem/internal/agentstatus"
	"github.com/tandem-mesh/tandem/internal/testutil/poll"
	"github.com/tandem-mesh/tandem/internal/testutil/xdstest"
	"github.com/tandem-mesh/tandem/internal/xds"
)

// Fixtures built by hand so the expectations do not depend on the translator.

func cluster(name string, timeout time.Duration) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ConnectTimeout:       durationpb.New(timeout),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{
			ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		}},
	}
}

func cla(name string, ips ...string) *endpointv3.ClusterLoadAssignment {
	c := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	if len(ips) == 0 {
		return c
	}
	l := &endpointv3.LocalityLbEndpoints{}
	for _, ip := range ips {
		l.LbEndpoints = append(l.LbEndpoints, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
			Endpoint: &endpointv3.Endpoint{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
				SocketAddress: &corev3.SocketAddress{Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 50051}},
			}}},
		}})
	}
	c.Endpoints = []*endpointv3.LocalityLbEndpoints{l}
	return c
}

func listener(name string, port uint32) *listenerv3.Listener {
	return &listenerv3.Listener{Name: name, Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
		SocketAddress: &corev3.SocketAddress{Address: "0.0.0.0", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}},
	}}}
}

func world(clusters []*clusterv3.Cluster, clas []*endpointv3.ClusterLoadAssignment, listeners ...*listenerv3.Listener) *xds.Resources {
	r := &xds.Resources{}
	for _, c := range clusters {
		r.Clusters = append(r.Clusters, c)
	}
	for _, c := range clas {
		r.Endpoints = append(r.Endpoints, c)
	}
	for _, l := range listeners {
		r.Listeners = append(r.Listeners, l)
	}
	return r
}

// start serves s on a fresh socket and returns a connection to it.
func start(t *testing.T, s *Server) *grpc.ClientConn {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "xds.sock")
	lis, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, lis) }()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return conn
}

func newServer() *Server {
	return New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

func TestSotwACKReadinessAndNACK(t *testing.T) {
	s := newServer()
	s.Publish(world(
		[]*clusterv3.Cluster{cluster("a", time.Second), cluster("b", time.Second)},
		[]*endpointv3.ClusterLoadAssignment{cla("a", "198.51.100.1"), cla("b", "198.51.100.2")},
		listener("outbound", 15001)))
	c := xdstest.NewSotW(t, start(t, s))

	c.Subscribe(resource.ClusterType)
	cds := c.Recv(resource.ClusterType)
	if got := xdstest.Names(t, cds); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("CDS resources = %v, want [a b]", got)
	}
	c.ACK(cds)
	c.Subscribe(resource.ListenerType)
	lds := c.Recv(resource.ListenerType)
	if got := xdstest.Names(t, lds); !slices.Equal(got, []string{"outbound"}) {
		t.Fatalf("LDS resources = %v, want [outbound]", got)
	}
	poll.Until(t, 5*time.Second, "the CDS ACK to be counted", func() bool { return s.Stats().ACKs[Cluster] == 1 })
	if s.Ready() {
		t.Fatal("ready before listeners were ACKed")
	}
	c.ACK(lds)
	poll.Until(t, 5*time.Second, "readiness after the LDS ACK", s.Ready)

	// A changed cluster arrives in a full CDS response; the client rejects it.
	s.Publish(world(
		[]*clusterv3.Cluster{cluster("a", 2*time.Second), cluster("b", time.Second)},
		[]*endpointv3.ClusterLoadAssignment{cla("a", "198.51.100.1"), cla("b", "198.51.100.2")},
		listener("outbound", 15001)))
	bad := c.Recv(resource.ClusterType)
	if bad.VersionInfo == cds.VersionInfo {
		t.Fatalf("changed clusters reuse version %q", bad.VersionInfo)
	}
	c.NACK(bad, "cluster a: connect timeout refused by the test")
	poll.Until(t, 5*time.Second, "the NACK to be counted", func() bool { return s.Stats().NACKs[Cluster] == 1 })
	st := s.Stats()
	if !strings.Contains(st.LastNACK, "refused by the test") {
		t.Errorf("LastNACK = %q, want the client's message", st.LastNACK)
	}
	if st.ACKs[Cluster] != 1 {
		t.Errorf("ACKs[cluster] = %d after a NACK, want 1", st.ACKs[Cluster])
	}
	// The rejected response is not pushed again, and readiness stays: the
	// client still runs its last accepted configuration.
	c.Quiet(300 * time.Millisecond)
	if !s.Ready() {
		t.Error("not ready after a NACK of a later version")
	}
	// The next change is delivered and accepted normally.
	s.Publish(world(
		[]*clusterv3.Cluster{cluster("a", 3*time.Second), cluster("b", time.Second)},
		[]*endpointv3.ClusterLoadAssignment{cla("a", "198.51.100.1"), cla("b", "198.51.100.2")},
		listener("outbound", 15001)))
	next := c.Recv(resource.ClusterType)
	for _, a := range next.Resources {
		if cl := xdstest.Decode[*clusterv3.Cluster](t, a); cl.Name == "a" && cl.ConnectTimeout.AsDuration() != 3*time.Second {
			t.Errorf("cluster a connect timeout = %v, want 3s", cl.ConnectTimeout.AsDuration())
		}
	}
	c.ACK(next)
	poll.Until(t, 5*time.Second, "the second CDS ACK", func() bool { return s.Stats().ACKs[Cluster] == 2 })
}

func TestSotwIncrementalEDS(t *testing.T) {
	s := newServer()
	clusters := []*clusterv3.Cluster{cluster("a", time.Second), cluster("b", time.Second), cluster("c", time.Second)}
	s.Publish(world(clusters, []*endpointv3.ClusterLoadAssignment{
		cla("a", "198.51.100.1"), cla("b", "198.51.100.2"), cla("c", "198.51.100.3")}))
	c := xdstest.NewSotW(t, start(t, s))
	c.Subscribe(resource.ClusterType)
	c.ACK(c.Recv(resource.ClusterType))
	c.Subscribe(resource.EndpointType, "a", "b", "c")
	eds := c.Recv(resource.EndpointType)
	if got := xdstest.Names(t, eds); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("EDS resources = %v, want [a b c]", got)
	}
	c.ACK(eds)

	// An endpoint change of one service: only its assignment is sent.
	s.PublishEndpoints([]*endpointv3.ClusterLoadAssignment{cla("b", "198.51.100.2", "198.51.100.22")})
	upd := c.Recv(resource.EndpointType)
	if got := xdstest.Names(t, upd); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("incremental EDS sent %v, want only [b]", got)
	}
	if n := len(xdstest.Decode[*endpointv3.ClusterLoadAssignment](t, upd.Resources[0]).Endpoints[0].LbEndpoints); n != 2 {
		t.Fatalf("b has %d endpoints, want 2", n)
	}
	c.ACK(upd)
	// Publishing an unchanged assignment sends nothing.
	s.PublishEndpoints([]*endpointv3.ClusterLoadAssignment{cla("a", "198.51.100.1")})
	c.Quiet(200 * time.Millisecond)

	// A full rebuild that changes only c's endpoints sends only c: no CDS
	// response, no other assignment.
	s.Publish(world(clusters, []*endpointv3.ClusterLoadAssignment{
		cla("a", "198.51.100.1"), cla("b", "198.51.100.2", "198.51.100.22"), cla("c")}))
	upd = c.Recv(resource.EndpointType)
	if got := xdstest.Names(t, upd); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("full rebuild sent EDS %v, want only [c]", got)
	}
	c.ACK(upd)
	c.Quiet(200 * time.Millisecond)
	if got := s.Stats().Endpoints; got["a"] != 1 || got["b"] != 2 || got["c"] != 0 {
		t.Errorf("endpoint counts = %v, want a:1 b:2 c:0", got)
	}
}

func TestChangedClusterResendsItsEndpoints(t *testing.T) {
	s := newServer()
	clas := []*endpointv3.ClusterLoadAssignment{cla("a", "198.51.100.1"), cla("b", "198.51.100.2")}
	s.Publish(world([]*clusterv3.Cluster{cluster("a", time.Second), cluster("b", time.Second)}, clas))
	c := xdstest.NewSotW(t, start(t, s))
	c.Subscribe(resource.ClusterType)
	c.ACK(c.Recv(resource.ClusterType))
	c.Subscribe(resource.EndpointType, "a", "b")
	c.ACK(c.Recv(resource.EndpointType))

	s.Publish(world([]*clusterv3.Cluster{cluster("a", 2*time.Second), cluster("b", time.Second)}, clas))
	c.ACK(c.Recv(resource.ClusterType))
	eds := c.Recv(resource.EndpointType)
	if got := xdstest.Names(t, eds); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("after cluster a changed, EDS sent %v, want [a]", got)
	}
}

func TestInvalidResourceNeverPublished(t *testing.T) {
	s := newServer()
	s.Publish(world([]*clusterv3.Cluster{cluster("a", time.Second)}, nil))
	c := xdstest.NewSotW(t, start(t, s))
	c.Subscribe(resource.ClusterType)
	c.ACK(c.Recv(resource.ClusterType))

	// A new cluster with a negative connect timeout fails validation (Envoy
	// requires it to be positive); a valid change to cluster a in the same
	// rebuild still goes out.
	s.Publish(world([]*clusterv3.Cluster{cluster("a", 2*time.Second), cluster("bad", -time.Second)}, nil))
	r := c.Recv(resource.ClusterType)
	if got := xdstest.Names(t, r); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("CDS = %v, want [a] without the invalid cluster", got)
	}
	c.ACK(r)
	if got := s.Stats().Rejected[Cluster]; got != 1 {
		t.Errorf("Rejected[cluster] = %d, want 1", got)
	}

	// An invalid version of a served cluster: the served version stays and
	// nothing is pushed.
	s.Publish(world([]*clusterv3.Cluster{cluster("a", -time.Second)}, nil))
	c.Quiet(300 * time.Millisecond)
	served := s.Resources(Cluster)["a"].(*clusterv3.Cluster)
	if served.ConnectTimeout.AsDuration() != 2*time.Second {
		t.Errorf("served cluster a connect timeout = %v, want the last good 2s", served.ConnectTimeout.AsDuration())
	}
	if got := s.Stats().Rejected[Cluster]; got != 2 {
		t.Errorf("Rejected[cluster] = %d, want 2", got)
	}

	// Invalid assignments on the incremental path are refused too.
	bad := cla("a", "198.51.100.1")
	bad.Endpoints[0].LbEndpoints[0].GetEndpoint().GetAddress().GetSocketAddress().PortSpecifier =
		&corev3.SocketAddress_PortValue{PortValue: 70000}
	s.PublishEndpoints([]*endpointv3.ClusterLoadAssignment{bad})
	if _, ok := s.Resources(Endpoint)["a"]; ok {
		t.Error("an assignment with port 70000 was published")
	}
	if got := s.Stats().Rejected[Endpoint]; got != 1 {
		t.Errorf("Rejected[endpoint] = %d, want 1", got)
	}
}

func TestRemovedResources(t *testing.T) {
	s := newServer()
	s.Publish(world([]*clusterv3.Cluster{cluster("a", time.Second), cluster("b", time.Second)},
		[]*endpointv3.ClusterLoadAssignment{cla("a", "198.51.100.1"), cla("b", "198.51.100.2")}))
	c := xdstest.NewSotW(t, start(t, s))
	c.Subscribe(resource.ClusterType)
	c.ACK(c.Recv(resource.ClusterType))

	s.Publish(world([]*clusterv3.Cluster{cluster("a", time.Second)}, []*endpointv3.ClusterLoadAssignment{cla("a", "198.51.100.1")}))
	r := c.Recv(resource.ClusterType)
	if got := xdstest.Names(t, r); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("CDS after removing b = %v, want [a]", got)
	}
	if _, ok := s.Resources(Endpoint)["b"]; ok {
		t.Error("the assignment of removed cluster b is still served")
	}
	if _, ok := s.Stats().Endpoints["b"]; ok {
		t.Error("endpoint count of removed cluster b is still reported")
	}
}

func TestReadinessFollowsConnectedClients(t *testing.T) {
	s := newServer()
	s.Publish(world([]*clusterv3.Cluster{cluster("a", time.Second)}, nil, listener("outbound", 15001)))
	c := xdstest.NewSotW(t, start(t, s))
	c.Subscribe(resource.ClusterType)
	c.ACK(c.Recv(resource.ClusterType))
	c.Subscribe(resource.ListenerType)
	c.ACK(c.Recv(resource.ListenerType))
	poll.Until(t, 5*time.Second, "readiness", s.Ready)
	if got := s.Stats().Clients; got != 1 {
		t.Errorf("Clients = %d, want 1", got)
	}
	c.Close()
	poll.Until(t, 5*time.Second, "readiness to drop when the client leaves", func() bool { return !s.Ready() })
	poll.Until(t, 5*time.Second, "the client count to drop", func() bool { return s.Stats().Clients == 0 })
}

func TestDeltaIncrementalEDSAndNACK(t *testing.T) {
	s := newServer()
	clusters := []*clusterv3.Cluster{cluster("a", time.Second), cluster("b", time.Second)}
	s.Publish(world(clusters, []*endpointv3.ClusterLoadAssignment{cla("a", "198.51.100.1"), cla("b", "198.51.100.2")},
		listener("outbound", 15001)))
	c := xdstest.NewDelta(t, start(t, s))

	c.Subscribe(resource.ClusterType, "*")
	cds := c.Recv(resource.ClusterType)
	if got := xdstest.DeltaNames(cds); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("delta CDS = %v, want [a b]", got)
	}
	c.ACK(cds)
	c.Subscribe(resource.ListenerType, "*")
	c.ACK(c.Recv(resource.ListenerType))
	poll.Until(t, 5*time.Second, "readiness over delta", s.Ready)

	c.Subscribe(resource.EndpointType, "a", "b")
	eds := c.Recv(resource.EndpointType)
	if got := xdstest.DeltaNames(eds); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("delta EDS = %v, want [a b]", got)
	}
	c.ACK(eds)

	s.PublishEndpoints([]*endpointv3.ClusterLoadAssignment{cla("a", "198.51.100.1", "198.51.100.11")})
	upd := c.Recv(resource.EndpointType)
	if got := xdstest.DeltaNames(upd); !slices.Equal(got, []string{"a"}) || len(upd.RemovedResources) != 0 {
		t.Fatalf("delta EDS update = %v removed %v, want only [a]", got, upd.RemovedResources)
	}
	// The client rejects it.
	c.NACK(upd, "endpoint refused by the test")
	poll.Until(t, 5*time.Second, "the delta NACK to be counted", func() bool { return s.Stats().NACKs[Endpoint] == 1 })

	// Removing cluster b removes it and its assignment by name.
	s.Publish(world(clusters[:1], []*endpointv3.ClusterLoadAssignment{cla("a", "198.51.100.1", "198.51.100.11")},
		listener("outbound", 15001)))
	got := map[string][]string{}
	for range 2 {
		r := c.RecvAny()
		got[r.TypeUrl] = r.RemovedResources
		if len(r.Resources) != 0 {
			t.Errorf("%s removal also sent %v", r.TypeUrl, xdstest.DeltaNames(r))
		}
		c.ACK(r)
	}
	if !slices.Equal(got[resource.ClusterType], []string{"b"}) || !slices.Equal(got[resource.EndpointType], []string{"b"}) {
		t.Fatalf("removed resources = %v, want cluster b and endpoint b", got)
	}
}

func TestListenReplacesStaleSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "run", "xds.sock")
	// A socket file left behind by a process that died without cleaning up.
	if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
		t.Fatal(err)
	}
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("stale socket not in place: %v", err)
	}

	lis, err := Listen(sock)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer lis.Close()
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o666 {
		t.Errorf("socket mode = %o, want 666", perm)
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("dialing the new socket: %v", err)
	}
	conn.Close()
}

func TestListenRefusesRegularFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "xds.sock")
	if err := os.WriteFile(path, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Listen(path)
	if err == nil || !strings.Contains(err.Error(), "not a socket") || !strings.Contains(err.Error(), path) {
		t.Fatalf("Listen on a regular file: err = %v, want one naming the path and saying it is not a socket", err)
	}
	if data, _ := os.ReadFile(path); string(data) != "data" {
		t.Error("Listen changed the regular file")
	}
}

func TestNoAnswerBeforeFirstPublish(t *testing.T) {
	s := newServer()
	conn := start(t, s)
	c := xdstest.NewSotW(t, conn)
	c.Subscribe(resource.ClusterType)
	d := xdstest.NewDelta(t, conn)
	d.Subscribe(resource.ClusterType, "*")
	gone := xdstest.NewSotW(t, conn) // leaves before the configuration exists
	gone.Subscribe(resource.ListenerType)
	c.Quiet(300 * time.Millisecond)
	d.Quiet(0)
	gone.Close()
	poll.Until(t, 5*time.Second, "the leaving client to be gone", func() bool { return s.Stats().Clients == 2 })

	s.Publish(world([]*clusterv3.Cluster{cluster("a", time.Second)}, nil))
	if got := xdstest.Names(t, c.Recv(resource.ClusterType)); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("held state-of-the-world watch answered %v, want [a]", got)
	}
	if got := xdstest.DeltaNames(d.Recv(resource.ClusterType)); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("held delta watch answered %v, want [a]", got)
	}
}

// The listener names clients ask for (what a proxyless app dials) reach
// OnListenerNames as one sorted union, when it changes, and leave it when
// the client goes.
func TestListenerNamesFollowClients(t *testing.T) {
	got := make(chan []string, 16)
	s := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Proxyless: true,
		OnListenerNames: func(names []string) { got <- names }})
	conn := start(t, s)
	next := func() []string {
		t.Helper()
		select {
		case n := <-got:
			return n
		case <-time.After(5 * time.Second):
			t.Fatal("OnListenerNames not called")
			return nil
		}
	}
	a := xdstest.NewSotW(t, conn)
	a.Subscribe(resource.ListenerType, "b.ns.svc.cluster.local:80", "a.ns.svc.cluster.local:80")
	if n := next(); !slices.Equal(n, []string{"a.ns.svc.cluster.local:80", "b.ns.svc.cluster.local:80"}) {
		t.Fatalf("names %v", n)
	}
	d := xdstest.NewDelta(t, conn)
	d.Subscribe(resource.ListenerType, "c.ns.svc.cluster.local:80")
	if n := next(); !slices.Equal(n, []string{"a.ns.svc.cluster.local:80", "b.ns.svc.cluster.local:80", "c.ns.svc.cluster.local:80"}) {
		t.Fatalf("names with a delta client %v", n)
	}
	a.Subscribe(resource.ListenerType, "a.ns.svc.cluster.local:80")
	if n := next(); !slices.Equal(n, []string{"a.ns.svc.cluster.local:80", "c.ns.svc.cluster.local:80"}) {
		t.Fatalf("names after dropping b %v", n)
	}
	conn.Close()
	for n := next(); len(n) != 0; n = next() {
		// one stream may close before the other
		if len(n) > 1 {
			t.Fatalf("names after the clients left %v", n)
		}
	}
}

// TestClientsReportAnswers: Clients tells, per client and type, the
// version sent, the version accepted and the client's own error for a
// refused one, until a later version is accepted; ClientsChanged fires.
func TestClientsReportAnswers(t *testing.T) {
	s := newServer()
	s.Publish(world([]*clusterv3.Cluster{cluster("a", time.Second)}, nil, listener("outbound", 15001)))
	c := xdstest.NewSotW(t, start(t, s))
	exchange := func(typeName string) agentstatus.Exchange {
		for _, p := range s.Clients() {
			for _, e := range p.Exchanges {
				if e.Type == typeName {
					return e
				}
			}
		}
		return agentstatus.Exchange{}
	}
	c.Subscribe(resource.ClusterType)
	cds := c.Recv(resource.ClusterType)
	poll.Until(t, 5*time.Second, "the CDS response to be reported pending", func() bool {
		e := exchange(Cluster)
		return e.Sent == cds.VersionInfo && e.State() == agentstatus.StatePending
	})
	c.ACK(cds)
	poll.Until(t, 5*time.Second, "the CDS ACK to be reported", func() bool { return exchange(Cluster).State() == agentstatus.StateSynced })
	if p := s.Clients(); len(p) != 1 || p[0].Node != xdstest.NodeID {
		t.Fatalf("clients = %+v, want one, node %s", p, xdstest.NodeID)
	}
	// Drain the signals so far; a refusal signals again.
	for len(s.ClientsChanged()) > 0 {
		<-s.ClientsChanged()
	}
	s.Publish(world([]*clusterv3.Cluster{cluster("a", 2*time.Second)}, nil, listener("outbound", 15001)))
	bad := c.Recv(resource.ClusterType)
	c.NACK(bad, "cluster a: refused by the test")
	select {
	case <-s.ClientsChanged():
	case <-time.After(5 * time.Second):
		t.Fatal("no change signalled after a NACK")
	}
	poll.Until(t, 5*time.Second, "the NACK to be reported", func() bool { return exchange(Cluster).State() == agentstatus.StateRejected })
	e := exchange(Cluster)
	if e.Acked != cds.VersionInfo || e.Sent != bad.VersionInfo || e.Rejected.Version != bad.VersionInfo || e.Rejected.Error != "cluster a: refused by the test" {
		t.Fatalf("after the NACK: %+v (rejection %+v); want sent %s, acked %s, the client's error", e, e.Rejected, bad.VersionInfo, cds.VersionInfo)
	}
	s.Publish(world([]*clusterv3.Cluster{cluster("a", 3*time.Second)}, nil, listener("outbound", 15001)))
	c.ACK(c.Recv(resource.ClusterType))
	poll.Until(t, 5*time.Second, "a later ACK to clear the refusal", func() bool {
		e := exchange(Cluster)
		return e.State() == agentstatus.StateSynced && e.Rejected == nil
	})
}
