package xds

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func ptr[T any](v T) *T { return &v }

func TestPortProtocol(t *testing.T) {
	cases := []struct {
		name, appProtocol string
		want              protocol
	}{
		{"grpc", "", protoHTTP2},
		{"grpc-web", "", protoHTTP2},
		{"GRPC", "", protoHTTP2},
		{"http2", "", protoHTTP2},
		{"h2c-internal", "", protoHTTP2},
		{"http", "", protoHTTP},
		{"http-metrics", "", protoHTTP},
		{"https", "", protoTCP},
		{"httpx", "", protoSniff},
		{"grpcx", "", protoSniff},
		{"tcp-postgres", "", protoTCP},
		{"tls", "", protoTCP},
		{"mysql", "", protoTCP},
		{"redis-cache", "", protoTCP},
		{"", "", protoSniff},
		{"web", "", protoSniff},
		{"api", "grpc", protoHTTP2},
		{"web", "kubernetes.io/h2c", protoHTTP2},
		{"web", "http2", protoHTTP2},
		{"web", "h2c", protoHTTP2},
		{"web", "HTTP", protoHTTP},
		{"grpc", "postgresql", protoTCP},
		{"http", "kubernetes.io/ws", protoTCP},
	}
	for _, c := range cases {
		sp := corev1.ServicePort{Name: c.name}
		if c.appProtocol != "" {
			sp.AppProtocol = ptr(c.appProtocol)
		}
		if got := portProtocol(sp); got != c.want {
			t.Errorf("port name %q appProtocol %q: %v, want %v", c.name, c.appProtocol, got, c.want)
		}
	}
}

// slice builds an EndpointSlice of service "svc" in namespace "ns".
func slice(name string, family discoveryv1.AddressType, port int32, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns",
			Labels: map[string]string{discoveryv1.LabelServiceName: "svc"}},
		AddressType: family,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("grpc"), Port: ptr(port)}},
		Endpoints:   eps,
	}
}

func ep(addr string, ready, terminating *bool, pod string) discoveryv1.Endpoint {
	e := discoveryv1.Endpoint{Addresses: []string{addr},
		Conditions: discoveryv1.EndpointConditions{Ready: ready, Terminating: terminating}}
	if pod != "" {
		e.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: "ns", Name: pod}
	}
	return e
}

func endpointStrings(eps []endpoint) string {
	var out []string
	for _, e := range eps {
		s := e.addr.String()
		if e.priority > 0 {
			s = fmt.Sprintf("p%d:%s", e.priority, s)
		}
		for _, x := range e.extra {
			s += "+" + x.String()
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

func TestPortEndpoints(t *testing.T) {
	yes, no := ptr(true), ptr(false)
	v4, v6 := discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6
	cases := []struct {
		name        string
		primaryIPv6 bool
		slices      []*discoveryv1.EndpointSlice
		want        string
	}{
		{
			name: "ready unset counts; serving terminating ones come last, not serving ones never",
			slices: []*discoveryv1.EndpointSlice{slice("a", v4, 9000,
				ep("10.0.0.1", nil, nil, ""),
				ep("10.0.0.2", yes, nil, ""),
				ep("10.0.0.3", no, nil, ""),
				ep("10.0.0.4", yes, yes, ""),
				ep("10.0.0.5", no, yes, ""),
				ep("10.0.0.6", yes, no, ""))},
			// 10.0.0.4 is ready while terminating (publishNotReadyAddresses):
			// ready, as for kube-proxy; 10.0.0.5 has serving unset (true).
			want: "10.0.0.1:9000 10.0.0.2:9000 10.0.0.4:9000 10.0.0.6:9000 p1:10.0.0.5:9000",
		},
		{
			name: "duplicates across slices once, sorted by address",
			slices: []*discoveryv1.EndpointSlice{
				slice("b", v4, 9000, ep("10.0.0.9", nil, nil, ""), ep("10.0.0.1", nil, nil, "")),
				slice("a", v4, 9000, ep("10.0.0.1", nil, nil, ""), ep("10.0.0.10", nil, nil, "")),
			},
			want: "10.0.0.1:9000 10.0.0.9:9000 10.0.0.10:9000",
		},
		{
			name: "the same address on another port is another endpoint",
			slices: []*discoveryv1.EndpointSlice{
				slice("a", v4, 9000, ep("10.0.0.1", nil, nil, "")),
				slice("b", v4, 9001, ep("10.0.0.1", nil, nil, "")),
			},
			want: "10.0.0.1:9000 10.0.0.1:9001",
		},
		{
			name: "addresses of the wrong family, malformed or mapped are skipped",
			slices: []*discoveryv1.EndpointSlice{
				slice("a", v4, 9000, ep("2001:db8::1", nil, nil, ""), ep("bogus", nil, nil, ""), ep("::ffff:10.0.0.7", nil, nil, ""), ep("10.0.0.8", nil, nil, "")),
				slice("b", v6, 9000, ep("10.0.0.9", nil, nil, ""), ep("fe80::1%eth0", nil, nil, ""), ep("2001:db8::2", nil, nil, "")),
				slice("c", discoveryv1.AddressTypeFQDN, 9000, ep("db.example.com", nil, nil, "")),
			},
			want: "10.0.0.8:9000 [2001:db8::2]:9000",
		},
		{
			name: "dual stack, IPv4 first: one endpoint per pod",
			slices: []*discoveryv1.EndpointSlice{
				slice("v4", v4, 9000, ep("10.0.0.2", nil, nil, "p2"), ep("10.0.0.1", nil, nil, "p1"), ep("10.0.0.3", nil, nil, "")),
				slice("v6", v6, 9000, ep("2001:db8::1", nil, nil, "p1"), ep("2001:db8::2", nil, nil, "p2"), ep("2001:db8::4", nil, nil, "p4")),
			},
			want: "10.0.0.1:9000+[2001:db8::1]:9000 10.0.0.2:9000+[2001:db8::2]:9000 10.0.0.3:9000 [2001:db8::4]:9000",
		},
		{
			name:        "dual stack, IPv6 first",
			primaryIPv6: true,
			slices: []*discoveryv1.EndpointSlice{
				slice("v4", v4, 9000, ep("10.0.0.1", nil, nil, "p1")),
				slice("v6", v6, 9000, ep("2001:db8::1", nil, nil, "p1")),
			},
			want: "[2001:db8::1]:9000+10.0.0.1:9000",
		},
		{
			name: "a not ready address of a dual-stack pod is not attached",
			slices: []*discoveryv1.EndpointSlice{
				slice("v4", v4, 9000, ep("10.0.0.1", nil, nil, "p1")),
				slice("v6", v6, 9000, ep("2001:db8::1", no, nil, "p1")),
			},
			want: "10.0.0.1:9000",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := &service{key: objectKey{"ns", "svc"}, primaryIPv6: c.primaryIPv6}
			p := &servicePort{svc: s, name: "grpc", port: 80}
			sortByName(c.slices)
			if got := endpointStrings(portEndpoints(s, p, c.slices, Locality{}, Proxyless)); got != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}

func TestPortEndpointsMatchPortsByName(t *testing.T) {
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "a", Namespace: "ns"},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{
			{Name: ptr("http"), Port: ptr(int32(8080))},
			{Name: ptr("grpc"), Port: ptr(int32(9090))},
			{Name: ptr("dns"), Port: ptr(int32(53)), Protocol: ptr(corev1.ProtocolUDP)},
			{Name: ptr("any")}, // no port: not usable
		},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}}},
	}
	unnamed := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "b", Namespace: "ns"},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Port: ptr(int32(7000))}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.2"}}},
	}
	s := &service{key: objectKey{"ns", "svc"}}
	for name, want := range map[string]string{
		"grpc": "10.0.0.1:9090",
		"http": "10.0.0.1:8080",
		"dns":  "",
		"any":  "",
		"":     "10.0.0.2:7000",
	} {
		p := &servicePort{svc: s, name: name, port: 1}
		if got := endpointStrings(portEndpoints(s, p, []*discoveryv1.EndpointSlice{sl, unnamed}, Locality{}, Proxyless)); got != want {
			t.Errorf("port %q: %q, want %q", name, got, want)
		}
	}
}

func TestBuildService(t *testing.T) {
	svc := func(name, clusterIP string, ports ...corev1.ServicePort) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"},
			Spec: corev1.ServiceSpec{ClusterIP: clusterIP, Ports: ports}}
	}
	tcp := func(name string, port int32) corev1.ServicePort { return corev1.ServicePort{Name: name, Port: port} }

	s, err := buildService(svc("a", "10.96.0.1", tcp("http", 80), tcp("grpc", 50051),
		corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}, tcp("sctp", 0)), Sidecar)
	if s == nil || err == nil || !strings.Contains(err.Error(), `port 0 ("sctp") is not in 1-65535`) {
		t.Fatalf("bad port: service %v, error %v", s, err)
	}
	var got []string
	for _, p := range s.ports {
		got = append(got, fmt.Sprintf("%d/%s/%v", p.port, p.name, p.protocol))
	}
	if strings.Join(got, " ") != "80/http/http 50051/grpc/http2" {
		t.Errorf("ports %v: want the TCP ones, sorted, with their protocols", got)
	}

	for _, c := range []struct {
		svc  *corev1.Service
		mode Mode
		want string // error substring; "" for none
	}{
		{svc("a", "", tcp("grpc", 1)), Sidecar, "spec.clusterIP is empty"},
		{svc("a", "", tcp("grpc", 1)), Proxyless, ""},
		{svc("a", "10.96.0.256", tcp("grpc", 1)), Proxyless, `spec.clusterIPs: "10.96.0.256" is not an IPv4 or IPv6 address`},
		{svc("a", "None", tcp("grpc", 1)), Sidecar, ""},
		{svc("A", "10.96.0.1", tcp("grpc", 1)), Sidecar, `metadata.name "A" is not a Service name`},
		{svc("a", "10.96.0.1", tcp("grpc", 1), tcp("grpc2", 1)), Sidecar, "port 1 is listed twice"},
	} {
		_, err := buildService(c.svc, c.mode)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s %q in %v: %v", c.svc.Name, c.svc.Spec.ClusterIP, c.mode, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s %q in %v: error %v, want %q", c.svc.Name, c.svc.Spec.ClusterIP, c.mode, err, c.want)
		}
	}

	ext := svc("ext", "")
	ext.Spec.Type = corev1.ServiceTypeExternalName
	if s, err := buildService(ext, Sidecar); s != nil || err != nil {
		t.Errorf("ExternalName Service: %v, %v; want it skipped silently", s, err)
	}

	dual := svc("d", "10.96.0.1")
	dual.Spec.ClusterIPs = []string{"fd00::1", "10.96.0.1"}
	if s, err := buildService(dual, Sidecar); err != nil || !s.primaryIPv6 || len(s.clusterIPs) != 2 {
		t.Errorf("dual-stack Service listing IPv6 first: %+v, %v", s, err)
	}
	dual.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
	if s, _ := buildService(dual, Sidecar); s.primaryIPv6 {
		t.Errorf("spec.ipFamilies says IPv4 first, but IPv6 was taken as primary")
	}
}

// at places an endpoint on a node and in a zone, with hints.
func at(e discoveryv1.Endpoint, node, zone string, hintZones, hintNodes []string) discoveryv1.Endpoint {
	if node != "" {
		e.NodeName = ptr(node)
	}
	if zone != "" {
		e.Zone = ptr(zone)
	}
	if hintZones != nil || hintNodes != nil {
		e.Hints = &discoveryv1.EndpointHints{}
		for _, z := range hintZones {
			e.Hints.ForZones = append(e.Hints.ForZones, discoveryv1.ForZone{Name: z})
		}
		for _, n := range hintNodes {
			e.Hints.ForNodes = append(e.Hints.ForNodes, discoveryv1.ForNode{Name: n})
		}
	}
	return e
}

func TestPortEndpointPriorities(t *testing.T) {
	yes, no := ptr(true), ptr(false)
	v4 := discoveryv1.AddressTypeIPv4
	ready := func(addr string) discoveryv1.Endpoint { return ep(addr, nil, nil, "") }
	terminating := func(addr string) discoveryv1.Endpoint { return ep(addr, no, yes, "") }
	z := func(names ...string) []string { return names }
	client := Locality{Node: "n1", Zone: "a"}
	cases := []struct {
		name      string
		local     bool   // internalTrafficPolicy Local
		prefer    string // trafficDistribution
		client    Locality
		headless  bool
		mode      Mode
		endpoints []discoveryv1.Endpoint
		want      string
	}{
		{
			name: "no topology: every ready endpoint first, terminating ones after",
			endpoints: []discoveryv1.Endpoint{
				at(ready("10.0.0.2"), "n2", "b", nil, nil), at(ready("10.0.0.1"), "n1", "a", nil, nil), terminating("10.0.0.3"),
			},
			want: "10.0.0.1:80 10.0.0.2:80 p1:10.0.0.3:80",
		},
		{
			name: "only terminating endpoints: they are used",
			endpoints: []discoveryv1.Endpoint{terminating("10.0.0.3"), terminating("10.0.0.1"),
				ep("10.0.0.2", no, yes, "")},
			want: "10.0.0.1:80 10.0.0.2:80 10.0.0.3:80",
		},
		{
			name:      "not serving terminating endpoints are never used",
			endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: no, Serving: no, Terminating: yes}}},
			want:      "",
		},
		{
			name:  "Local: the client's node only, its terminating ones after its ready ones",
			local: true,
			endpoints: []discoveryv1.Endpoint{
				at(ready("10.0.0.1"), "n1", "a", nil, nil), at(ready("10.0.0.2"), "n2", "a", nil, nil),
				at(terminating("10.0.0.3"), "n1", "a", nil, nil), at(terminating("10.0.0.4"), "n2", "a", nil, nil), ready("10.0.0.5"),
			},
			want: "10.0.0.1:80 p1:10.0.0.3:80",
		},
		{
			name:  "Local: no endpoint on the node, none at all",
			local: true,
			endpoints: []discoveryv1.Endpoint{
				at(ready("10.0.0.2"), "n2", "a", nil, nil), at(terminating("10.0.0.4"), "n3", "a", nil, nil),
			},
			want: "",
		},
		{
			name:      "Local and an unknown node: none",
			local:     true,
			client:    Locality{Zone: "a"},
			endpoints: []discoveryv1.Endpoint{at(ready("10.0.0.1"), "n1", "a", nil, nil), ready("10.0.0.2")},
			want:      "",
		},
		{
			name:  "Local ignores hints: all of the node's endpoints at one priority",
			local: true,
			endpoints: []discoveryv1.Endpoint{
				at(ready("10.0.0.1"), "n1", "a", z("b"), nil), at(ready("10.0.0.2"), "n1", "a", z("a"), nil),
			},
			want: "10.0.0.1:80 10.0.0.2:80",
		},
		{
			name: "zone hints on every endpoint: the client's zone first",
			endpoints: []discoveryv1.Endpoint{
				at(ready("10.0.0.1"), "n1", "a", z("b"), nil), at(ready("10.0.0.2"), "n2", "b", z("a"), nil),
				at(ready("10.0.0.3"), "n3", "c", z("c"), nil), terminating("10.0.0.4"),
			},
			want: "10.0.0.2:80 p1:10.0.0.1:80 p1:10.0.0.3:80 p2:10.0.0.4:80",
		},
		{
			name: "zone hints, none for the client's zone: one priority",
			endpoints: []discoveryv1.Endpoint{
				at(ready("10.0.0.1"), "n1", "b", z("b"), nil), at(ready("10.0.0.2"), "n2", "c", z("c"), nil),
			},
			want: "10.0.0.1:80 10.0.0.2:80",
		},
		{
			name:   "zone hints and an unknown zone: one priority",
			client: Locality{Node: "n1"},
			endpoints: []discoveryv1.Endpoint{
				at(ready("10.0.0.1"), "n1", "a", z("a"), nil), at(ready("10.0.0.2"), "n2", "b", z("b"), nil),
			},
			want: "10.0.0.1:80 10.0.0.2:80",
		},
		{
			name: "hints on some endpoints only do not count (kube-proxy's rule)",
			endpoints: []discoveryv1.Endpoint{
				at(ready("10.0.0.1"), "n1", "a", z("a"), nil), at(ready("10.0.0.2"), "n2", "b", nil, nil),
				at(terminating("10.0.0.3"), "n3", "c", nil, nil),
			},
			want: "10.0.0.1:80 10.0.0.2:80 p1:10.0.0.3:80",
		},
		{
			name:   "hints on some endpoints only, with trafficDistribution: the endpoints' own zones",
			prefer: corev1.ServiceTrafficDistributionPreferSameZone,
			endpoints: []discoveryv1.Endpoint{
				at(ready("10.0.0.1"), "n1", "b", z("b"), nil), at(ready("10.0.0.2"), "n2", "a", nil, nil),
			},
			want: "10.0.0.2:80 p1:10.0.0.1:80",
		},
		{
			name:   "PreferClose without hints: the endpoints' own zones",
			prefer: corev1.ServiceTrafficDistributionPreferClose,
			endpoints: []discoveryv1.Endpoint{
				at(ready("10.0.0.1"), "n1", "b", nil, nil), at(ready("10.0.0.2"), "n2", "a", nil, nil), ready("10.0.0.3"),
			},
			want: "10.0.0.2:80 p1:10.0.0.1:80 p1:10.0.0.3:80",
		},
		{
			name: "node hints: the client's node, then its zone, then the rest",
			endpoints: []discoveryv1.Endpoint{
				at(ready("10.0.0.1"), "n1", "a", z("a"), z("n1")), at(ready("10.0.0.2"), "n2", "a", z("a"), z("n2")),
				at(ready("10.0.0.3"), "n3", "b", z("b"), z("n3")),
			},
			want: "10.0.0.1:80 p1:10.0.0.2:80 p2:10.0.0.3:80",
		},
		{
			name:   "PreferSameNode without hints: the endpoints' own nodes and zones",
			prefer: corev1.ServiceTrafficDistributionPreferSameNode,
			endpoints: []discoveryv1.Endpoint{
				at(ready("10.0.0.3"), "n3", "b", nil, nil), at(ready("10.0.0.2"), "n2", "a", nil, nil),
				at(ready("10.0.0.1"), "n1", "a", nil, nil),
			},
			want: "10.0.0.1:80 p1:10.0.0.2:80 p2:10.0.0.3:80",
		},
		{
			name:   "PreferSameNode, nothing on the node: the zone first, numbered from 0",
			prefer: corev1.ServiceTrafficDistributionPreferSameNode,
			endpoints: []discoveryv1.Endpoint{
				at(ready("10.0.0.3"), "n3", "b", nil, nil), at(ready("10.0.0.2"), "n2", "a", nil, nil),
			},
			want: "10.0.0.2:80 p1:10.0.0.3:80",
		},
		{
			name:      "a headless Service's sidecar: ready endpoints only, one priority",
			headless:  true,
			mode:      Sidecar,
			local:     true,
			endpoints: []discoveryv1.Endpoint{at(ready("10.0.0.2"), "n2", "b", z("b"), nil), at(ready("10.0.0.1"), "n1", "a", z("a"), nil), terminating("10.0.0.3")},
			want:      "10.0.0.1:80 10.0.0.2:80",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := &service{key: objectKey{"ns", "svc"}, headless: c.headless, localOnly: c.local, prefer: elsewhere}
			switch c.prefer {
			case corev1.ServiceTrafficDistributionPreferSameNode:
				s.prefer = sameNode
			case "":
			default:
				s.prefer = sameZone
			}
			p := &servicePort{svc: s, name: "grpc", port: 80}
			cl := c.client
			if cl == (Locality{}) {
				cl = client
			}
			mode := c.mode
			if !c.headless {
				mode = Proxyless
			}
			sl := slice("a", v4, 80, c.endpoints...)
			if got := endpointStrings(portEndpoints(s, p, []*discoveryv1.EndpointSlice{sl}, cl, mode)); got != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}

// A dual-stack pod's two addresses pair only at one priority: a pod whose
// IPv6 address is terminating keeps its IPv4 one ready, alone.
func TestPortEndpointsPairWithinAPriority(t *testing.T) {
	yes, no := ptr(true), ptr(false)
	s := &service{key: objectKey{"ns", "svc"}, prefer: elsewhere}
	p := &servicePort{svc: s, name: "grpc", port: 80}
	got := endpointStrings(portEndpoints(s, p, []*discoveryv1.EndpointSlice{
		slice("v4", discoveryv1.AddressTypeIPv4, 80, ep("10.0.0.1", nil, nil, "p1"), ep("10.0.0.2", nil, nil, "p2")),
		slice("v6", discoveryv1.AddressTypeIPv6, 80, ep("2001:db8::1", no, yes, "p1"), ep("2001:db8::2", nil, nil, "p2")),
	}, Locality{}, Proxyless))
	if want := "10.0.0.1:80 10.0.0.2:80+[2001:db8::2]:80 p1:[2001:db8::1]:80"; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
