package xds

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// The intermediate form: what the Envoy builders need to know about the
// cluster, with Kubernetes' optional fields, defaults and inconsistencies
// already resolved.

// protocol is how the traffic of one Service port is handled.
type protocol int

const (
	// protoTCP is opaque: proxied as a byte stream.
	protoTCP protocol = iota
	// protoHTTP is HTTP/1.1 or h2c; the upstream speaks what the client spoke.
	protoHTTP
	// protoHTTP2 is gRPC or h2c: HTTP/2 on both sides.
	protoHTTP2
	// protoSniff is undeclared: HTTP when http_inspector recognises it, else TCP.
	protoSniff
)

func (p protocol) String() string {
	return [...]string{"tcp", "http", "http2", "sniffed"}[p]
}

type objectKey struct{ namespace, name string }

func (k objectKey) String() string { return k.namespace + "/" + k.name }

type model struct {
	services []*service // sorted by namespace, then name
	routes   []*routeState
}

// ports lists every translated Service port, in service order.
func (m *model) ports() []*servicePort {
	var out []*servicePort
	for _, s := range m.services {
		out = append(out, s.ports...)
	}
	return out
}

type service struct {
	key      objectKey
	headless bool
	// clusterIPs are the Service's virtual addresses (none when headless).
	clusterIPs []netip.Addr
	// primaryIPv6 is set when IPv6 is the Service's first IP family: the
	// address a dual-stack endpoint is reached on first.
	primaryIPv6 bool
	ports       []*servicePort
	// localOnly is internalTrafficPolicy Local: only endpoints on the
	// client's own node.
	localOnly bool
	// clientIPAffinity is sessionAffinity ClientIP: one client, one endpoint.
	clientIPAffinity bool
	// prefer is what trafficDistribution prefers: sameNode, sameZone, or
	// elsewhere for no preference.
	prefer nearness
}

// nearness is how close an endpoint is to the client; lower is nearer.
type nearness uint8

const (
	sameNode nearness = iota
	sameZone
	elsewhere
)

type servicePort struct {
	svc      *service
	name     string
	port     int32
	protocol protocol
	// policy is how the port's cluster balances: the TrafficPolicy's, or
	// the Service's own affinity, or the default.
	policy policy
	// endpoints are the usable ones, deduplicated, sorted by priority,
	// then address.
	endpoints []endpoint
	// routes are the HTTPRoutes or GRPCRoutes that apply to the port for
	// this client; nil when none is attached.
	routes *portRoutes

	cluster, host string // names, once made
	dropped       bool   // a resource of the port failed validation
}

// clusterName and hostPort are asked for by every builder; made once.
func (p *servicePort) clusterName() string {
	if p.cluster == "" {
		p.cluster = ClusterName(p.svc.key.namespace, p.svc.key.name, p.port)
	}
	return p.cluster
}

func (p *servicePort) hostPort() string {
	if p.host == "" {
		p.host = ServiceHost(p.svc.key.namespace, p.svc.key.name, p.port)
	}
	return p.host
}

// endpoint is one backend: a pod, reached on addr, and for a dual-stack
// pod also on its address of the other family. Its priority orders the
// failover: endpoints of priority n are used only while none of a lower
// number is available (0: near ready ones, then far ready ones, then
// serving but terminating ones).
type endpoint struct {
	addr     netip.AddrPort
	extra    []netip.AddrPort
	priority uint32
}

// buildModel builds the intermediate form of the inputs. Invalid objects are
// left out and reported; the rest is still built.
func buildModel(in Inputs, mode Mode) (*model, []error) {
	var errs []error
	slicesBySvc := map[objectKey][]*discoveryv1.EndpointSlice{}
	for _, sl := range in.EndpointSlices {
		if sl == nil {
			continue
		}
		owner := sliceOwner(sl)
		if owner.name == "" {
			continue // not a Service's slice
		}
		slicesBySvc[owner] = append(slicesBySvc[owner], sl)
	}
	for _, list := range slicesBySvc {
		sortByName(list)
	}

	svcs := make([]*corev1.Service, 0, len(in.Services))
	for _, s := range in.Services {
		if s != nil {
			svcs = append(svcs, s)
		}
	}
	slices.SortStableFunc(svcs, func(a, b *corev1.Service) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})

	policies, perrs := indexPolicies(in.Policies)
	errs = append(errs, perrs...)

	m := &model{}
	exists := map[objectKey]bool{}
	for _, svc := range svcs {
		key := objectKey{svc.Namespace, svc.Name}
		if err := firstDefinition(exists, "Service", key); err != nil {
			errs = append(errs, err)
			continue
		}
		s, err := buildService(svc, mode)
		if err != nil {
			errs = append(errs, err)
		}
		if s == nil {
			continue
		}
		if s.localOnly && in.Local.Node == "" && len(s.ports) > 0 && !(mode == Sidecar && s.headless) {
			errs = append(errs, &ObjectError{Kind: "Service", Namespace: key.namespace, Name: key.name,
				Err: errors.New("spec.internalTrafficPolicy is Local, but the node this client runs on is unknown: no endpoint is used (the agent reads its node from $NODE_NAME or --node)")})
		}
		for _, p := range s.ports {
			p.endpoints = portEndpoints(s, p, slicesBySvc[key], in.Local, mode)
			p.policy = policies.forPort(key, p.port)
			if s.clientIPAffinity && !p.policy.setsLB {
				p.policy = p.policy.withClientIPAffinity()
			}
		}
		m.services = append(m.services, s)
	}
	errs = append(errs, policies.unused(exists, m.services)...)
	routes, rerrs := parseRoutes(in, mode)
	errs = append(errs, rerrs...)
	m.routes = attachRoutes(m, routes, in.Local, exists)
	errs = append(errs, routeErrors(m.routes, in.Local.Namespace, mode)...)
	return m, errs
}

// firstDefinition marks key as defined, or reports that it already was:
// inputs from a file can hold two objects of one name, and the first is used.
func firstDefinition(defined map[objectKey]bool, kind string, key objectKey) error {
	if defined[key] {
		return &ObjectError{Kind: kind, Namespace: key.namespace, Name: key.name,
			Err: errors.New("defined twice; the first definition is used")}
	}
	defined[key] = true
	return nil
}

// sliceOwner is the Service an EndpointSlice belongs to, by the
// kubernetes.io/service-name label.
func sliceOwner(sl *discoveryv1.EndpointSlice) objectKey {
	return objectKey{sl.Namespace, sl.Labels[discoveryv1.LabelServiceName]}
}

// sortByName orders a Service's slices, so that which of two slices listing
// one address wins does not depend on the order objects arrived in.
func sortByName(list []*discoveryv1.EndpointSlice) {
	slices.SortFunc(list, func(a, b *discoveryv1.EndpointSlice) int { return cmp.Compare(a.Name, b.Name) })
}

// buildService returns the intermediate form of a Service without endpoints
// and policies. It returns nil for a Service it does not translate: an
// ExternalName Service (a DNS alias, reached through the passthrough) or an
// invalid one (with the error). Ports that cannot be translated are left out
// and reported in the error, the others kept.
func buildService(svc *corev1.Service, mode Mode) (*service, error) {
	key := objectKey{svc.Namespace, svc.Name}
	fail := func(format string, args ...any) error {
		return &ObjectError{Kind: "Service", Namespace: key.namespace, Name: key.name, Err: fmt.Errorf(format, args...)}
	}
	// Names end up in resource names, which must be well-formed.
	if msgs := validation.IsDNS1035Label(key.name); len(msgs) > 0 {
		return nil, fail("metadata.name %q is not a Service name: %s", key.name, strings.Join(msgs, "; "))
	}
	if msgs := validation.IsDNS1123Label(key.namespace); len(msgs) > 0 {
		return nil, fail("metadata.namespace %q is not a namespace name: %s", key.namespace, strings.Join(msgs, "; "))
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil, nil
	}
	s := &service{key: key, headless: svc.Spec.ClusterIP == corev1.ClusterIPNone}
	if !s.headless {
		ips := svc.Spec.ClusterIPs
		if len(ips) == 0 && svc.Spec.ClusterIP != "" {
			ips = []string{svc.Spec.ClusterIP}
		}
		for _, ip := range ips {
			a, err := netip.ParseAddr(ip)
			if err != nil || a.Zone() != "" || a.Is4In6() {
				return nil, fail("spec.clusterIPs: %q is not an IPv4 or IPv6 address", ip)
			}
			if !slices.Contains(s.clusterIPs, a) {
				s.clusterIPs = append(s.clusterIPs, a)
			}
		}
		if len(s.clusterIPs) == 0 && mode == Sidecar {
			return nil, fail("spec.clusterIP is empty: set the Service's address, or None for a headless Service")
		}
	}
	switch {
	case len(svc.Spec.IPFamilies) > 0:
		s.primaryIPv6 = svc.Spec.IPFamilies[0] == corev1.IPv6Protocol
	case len(s.clusterIPs) > 0:
		s.primaryIPv6 = s.clusterIPs[0].Is6()
	}

	var portErrs []string
	switch a := svc.Spec.SessionAffinity; a {
	case "", corev1.ServiceAffinityNone:
	case corev1.ServiceAffinityClientIP:
		s.clientIPAffinity = true
	default:
		portErrs = append(portErrs, fmt.Sprintf("spec.sessionAffinity %q is not None or ClientIP; None is used", a))
	}
	if p := svc.Spec.InternalTrafficPolicy; p != nil {
		switch *p {
		case corev1.ServiceInternalTrafficPolicyCluster:
		case corev1.ServiceInternalTrafficPolicyLocal:
			s.localOnly = true
		default:
			portErrs = append(portErrs, fmt.Sprintf("spec.internalTrafficPolicy %q is not Cluster or Local; Cluster is used", *p))
		}
	}
	s.prefer = elsewhere
	if d := svc.Spec.TrafficDistribution; d != nil {
		switch *d {
		case corev1.ServiceTrafficDistributionPreferSameZone, corev1.ServiceTrafficDistributionPreferClose:
			s.prefer = sameZone
		case corev1.ServiceTrafficDistributionPreferSameNode:
			s.prefer = sameNode
		default:
			portErrs = append(portErrs, fmt.Sprintf("spec.trafficDistribution %q is not PreferSameZone, PreferClose or PreferSameNode; ignored", *d))
		}
	}
	seen := map[int32]bool{}
	for _, sp := range svc.Spec.Ports {
		if sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP {
			continue // only TCP is captured and proxied
		}
		if sp.Port < 1 || sp.Port > 65535 {
			portErrs = append(portErrs, fmt.Sprintf("port %d (%q) is not in 1-65535", sp.Port, sp.Name))
			continue
		}
		if seen[sp.Port] {
			portErrs = append(portErrs, fmt.Sprintf("port %d is listed twice; the first is used", sp.Port))
			continue
		}
		seen[sp.Port] = true
		s.ports = append(s.ports, &servicePort{svc: s, name: sp.Name, port: sp.Port, protocol: portProtocol(sp), policy: defaultPolicy})
	}
	slices.SortFunc(s.ports, func(a, b *servicePort) int { return cmp.Compare(a.port, b.port) })
	if len(portErrs) > 0 {
		return s, fail("%s", strings.Join(portErrs, "; "))
	}
	return s, nil
}

// Port name prefixes (before "-" or alone) and appProtocol values that
// declare a protocol. Undeclared ports are sniffed.
var (
	http2Names   = []string{"grpc", "http2", "h2c"}
	httpNames    = []string{"http"}
	opaqueNames  = []string{"tcp", "tls", "https", "mongo", "mysql", "redis"}
	http2AppProt = []string{"grpc", "h2c", "http2", "kubernetes.io/h2c"}
)

// portProtocol applies the protocol rules: appProtocol wins (an unknown
// value means opaque TCP); then the port name's prefix; a port without a
// declared protocol is sniffed.
func portProtocol(sp corev1.ServicePort) protocol {
	if sp.AppProtocol != nil && *sp.AppProtocol != "" {
		ap := strings.ToLower(*sp.AppProtocol)
		switch {
		case slices.Contains(http2AppProt, ap):
			return protoHTTP2
		case ap == "http":
			return protoHTTP
		default:
			return protoTCP
		}
	}
	name := strings.ToLower(sp.Name)
	prefixed := func(p string) bool { return name == p || strings.HasPrefix(name, p+"-") }
	switch {
	case slices.ContainsFunc(http2Names, prefixed):
		return protoHTTP2
	case slices.ContainsFunc(httpNames, prefixed):
		return protoHTTP
	case slices.ContainsFunc(opaqueNames, prefixed):
		return protoTCP
	default:
		return protoSniff
	}
}

// portEndpoints collects the backends of one Service port from the
// Service's EndpointSlices, as kube-proxy chooses them, and gives each its
// priority:
//   - ready endpoints (ready unset counts as ready), then serving and
//     terminating ones, used only while no ready one is (KEP-1669); never
//     not serving ones;
//   - internalTrafficPolicy Local: only the endpoints on the client's node,
//     none when it is unknown;
//   - topology: when every ready endpoint carries hints (kube-proxy's rule),
//     those hinted for the client's node, then its zone, come first; without
//     complete hints, a Service with trafficDistribution prefers the
//     endpoints on the client's node or zone by their own location. Unlike
//     kube-proxy, which drops the far endpoints, they stay as a lower
//     priority to fail over to.
//
// The slice port is matched by name, each address taken once however many
// slices list it. A pod listed in an IPv4 and an IPv6 slice (dual stack,
// recognised by its targetRef) becomes one endpoint with an extra address.
// A headless Service's sidecar, whose clients dial pods themselves, lists
// every ready endpoint at one priority.
func portEndpoints(s *service, p *servicePort, own []*discoveryv1.EndpointSlice, local Locality, mode Mode) []endpoint {
	dialed := mode == Sidecar && s.headless
	n := 0
	for _, sl := range own {
		n += len(sl.Endpoints)
	}
	cands := make([]candidate, 0, n)
	for _, sl := range own {
		var want6 bool
		switch sl.AddressType {
		case discoveryv1.AddressTypeIPv4:
		case discoveryv1.AddressTypeIPv6:
			want6 = true
		default:
			continue // FQDN slices name no address to connect to
		}
		port, ok := slicePort(sl, p.name)
		if !ok {
			continue
		}
		for i := range sl.Endpoints {
			ep := &sl.Endpoints[i]
			c := ep.Conditions
			ready := c.Ready == nil || *c.Ready
			servingTerminating := (c.Serving == nil || *c.Serving) && c.Terminating != nil && *c.Terminating
			if (!ready && (!servingTerminating || dialed)) || len(ep.Addresses) == 0 {
				continue
			}
			// Like kube-proxy, only the first address is used.
			a, err := netip.ParseAddr(ep.Addresses[0])
			if err != nil || a.Zone() != "" || a.Is4In6() || a.Is6() != want6 {
				continue
			}
			cands = append(cands, candidate{ap: netip.AddrPortFrom(a, port), ep: ep, ready: ready})
		}
	}
	// Sorted by address; of an address listed twice, the first listed stays.
	slices.SortStableFunc(cands, func(a, b candidate) int { return a.ap.Compare(b.ap) })
	cands = slices.CompactFunc(cands, func(a, b candidate) bool { return a.ap == b.ap })
	if !dialed {
		if s.localOnly {
			cands = slices.DeleteFunc(cands, func(c candidate) bool { return local.Node == "" || c.node() != local.Node })
		}
		prioritize(cands, s, local)
	}
	return pairFamilies(cands, s.primaryIPv6)
}

// candidate is one usable address of a Service port, before dual-stack
// pairing.
type candidate struct {
	ap       netip.AddrPort
	ep       *discoveryv1.Endpoint
	ready    bool // else serving and terminating
	priority uint32
}

func (c *candidate) node() string { return ptrValue(c.ep.NodeName) }
func (c *candidate) zone() string { return ptrValue(c.ep.Zone) }

// owner is the candidate's targetRef; zero when unknown.
func (c *candidate) owner() owner {
	if r := c.ep.TargetRef; r != nil && r.Name != "" {
		return owner{r.Kind, r.Namespace, r.Name}
	}
	return owner{}
}

func ptrValue(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// owner is an endpoint's targetRef.
type owner struct{ kind, namespace, name string }

// prioritize sets the candidates' priorities: ready ones by nearness (only
// the levels that occur, numbered from 0), then the serving and terminating
// ones. internalTrafficPolicy Local has no topology: its endpoints are all
// on the client's node.
func prioritize(cands []candidate, s *service, local Locality) {
	topo := topology{prefer: s.prefer, local: local}
	if !s.localOnly {
		topo.read(cands)
	}
	var levels [elsewhere + 1]bool
	for i := range cands {
		if cands[i].ready {
			levels[topo.near(&cands[i])] = true
		}
	}
	var number [elsewhere + 1]uint32
	next := uint32(0)
	for n, used := range levels {
		if used {
			number[n] = next
			next++
		}
	}
	for i := range cands {
		if cands[i].ready {
			cands[i].priority = number[topo.near(&cands[i])]
		} else {
			cands[i].priority = next
		}
	}
}

// topology tells how near each ready candidate is to the client. The zero
// value (or one that has read no ready candidate) finds everything
// elsewhere.
type topology struct {
	prefer                     nearness
	local                      Locality
	on                         bool // some endpoint is ready
	allNodeHints, allZoneHints bool
}

// read notes which hints count: only those every ready endpoint has, as in
// kube-proxy (during a change of the hints some endpoints lack them).
func (t *topology) read(cands []candidate) {
	t.allNodeHints, t.allZoneHints = true, true
	for i := range cands {
		c := &cands[i]
		if !c.ready {
			continue
		}
		t.on = true
		h := c.ep.Hints
		t.allNodeHints = t.allNodeHints && h != nil && len(h.ForNodes) > 0
		t.allZoneHints = t.allZoneHints && h != nil && len(h.ForZones) > 0
	}
}

func (t *topology) near(c *candidate) nearness {
	if !t.on {
		return elsewhere
	}
	switch {
	case t.local.Node == "":
	case t.allNodeHints:
		if slices.ContainsFunc(c.ep.Hints.ForNodes, func(h discoveryv1.ForNode) bool { return h.Name == t.local.Node }) {
			return sameNode
		}
	case t.prefer == sameNode && c.node() == t.local.Node:
		return sameNode
	}
	switch {
	case t.local.Zone == "":
	case t.allZoneHints:
		if slices.ContainsFunc(c.ep.Hints.ForZones, func(h discoveryv1.ForZone) bool { return h.Name == t.local.Zone }) {
			return sameZone
		}
	case t.prefer <= sameZone && c.zone() == t.local.Zone:
		return sameZone
	}
	return elsewhere
}

// pairFamilies makes the endpoints of the candidates, sorted by priority
// and address. With addresses of both families, each primary-family address
// is paired with the other-family address of the same pod and priority;
// whatever stays unpaired is an endpoint of its own.
func pairFamilies(cands []candidate, primaryIPv6 bool) []endpoint {
	var has4, has6 bool
	for i := range cands {
		is6 := cands[i].ap.Addr().Is6()
		has4, has6 = has4 || !is6, has6 || is6
	}
	out := make([]endpoint, 0, len(cands))
	sortEndpoints := func() {
		slices.SortFunc(out, func(a, b endpoint) int { return cmp.Or(cmp.Compare(a.priority, b.priority), a.addr.Compare(b.addr)) })
	}
	if !has4 || !has6 {
		prioritized := false
		for _, c := range cands {
			out = append(out, endpoint{addr: c.ap, priority: c.priority})
			prioritized = prioritized || c.priority > 0
		}
		if prioritized { // else already in address order
			sortEndpoints()
		}
		return out
	}
	type pod struct {
		owner    owner
		priority uint32
	}
	other := map[pod]int{} // pod -> index in cands of its first other-family address
	for i := range cands {
		c := &cands[i]
		k := pod{c.owner(), c.priority}
		if _, dup := other[k]; k.owner != (owner{}) && c.ap.Addr().Is6() != primaryIPv6 && !dup {
			other[k] = i
		}
	}
	paired := make([]bool, len(cands))
	for i := range cands {
		c := &cands[i]
		if c.ap.Addr().Is6() != primaryIPv6 {
			continue
		}
		e := endpoint{addr: c.ap, priority: c.priority}
		k := pod{c.owner(), c.priority}
		if j, ok := other[k]; ok && k.owner != (owner{}) {
			e.extra = []netip.AddrPort{cands[j].ap}
			paired[j] = true
			delete(other, k)
		}
		out = append(out, e)
		paired[i] = true
	}
	for i, c := range cands {
		if !paired[i] {
			out = append(out, endpoint{addr: c.ap, priority: c.priority})
		}
	}
	sortEndpoints()
	return out
}

// slicePort finds the port number a slice gives the named Service port.
func slicePort(sl *discoveryv1.EndpointSlice, name string) (uint16, bool) {
	for _, sp := range sl.Ports {
		n := ""
		if sp.Name != nil {
			n = *sp.Name
		}
		if n != name || sp.Port == nil || (sp.Protocol != nil && *sp.Protocol != corev1.ProtocolTCP) {
			continue
		}
		if *sp.Port < 1 || *sp.Port > 65535 {
			return 0, false
		}
		return uint16(*sp.Port), true
	}
	return 0, false
}
