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
}

type servicePort struct {
	svc       *service
	name      string
	port      int32
	protocol  protocol
	policy    policy
	endpoints []endpoint // ready, deduplicated, sorted by address

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
// pod also on its address of the other family.
type endpoint struct {
	addr  netip.AddrPort
	extra []netip.AddrPort
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
		for _, p := range s.ports {
			p.endpoints = readyEndpoints(s, p, slicesBySvc[key])
			p.policy = policies.forPort(key, p.port)
		}
		m.services = append(m.services, s)
	}
	errs = append(errs, policies.unused(exists, m.services)...)
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

// readyEndpoints collects the backends of one Service port from the
// Service's EndpointSlices: ready endpoints only (ready unset counts as
// ready, terminating ones never do), the slice port matched by name, each
// address once however many slices list it. A pod listed in an IPv4 and an
// IPv6 slice (dual stack, recognised by its targetRef) becomes one endpoint
// with an extra address.
func readyEndpoints(s *service, p *servicePort, own []*discoveryv1.EndpointSlice) []endpoint {
	type owner struct{ kind, namespace, name string } // a targetRef; zero when unknown
	type candidate struct {
		ap    netip.AddrPort
		owner owner
	}
	n := 0
	for _, sl := range own {
		n += len(sl.Endpoints)
	}
	cands := make([]candidate, 0, n)
	var has4, has6 bool
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
			if (c.Ready != nil && !*c.Ready) || (c.Terminating != nil && *c.Terminating) || len(ep.Addresses) == 0 {
				continue
			}
			// Like kube-proxy, only the first address is used.
			a, err := netip.ParseAddr(ep.Addresses[0])
			if err != nil || a.Zone() != "" || a.Is4In6() || a.Is6() != want6 {
				continue
			}
			var o owner
			if r := ep.TargetRef; r != nil && r.Name != "" {
				o = owner{r.Kind, r.Namespace, r.Name}
			}
			cands = append(cands, candidate{netip.AddrPortFrom(a, port), o})
			has4, has6 = has4 || !want6, has6 || want6
		}
	}
	// Sorted by address; of an address listed twice, the first listed stays.
	slices.SortStableFunc(cands, func(a, b candidate) int { return a.ap.Compare(b.ap) })
	cands = slices.CompactFunc(cands, func(a, b candidate) bool { return a.ap == b.ap })

	out := make([]endpoint, 0, len(cands))
	if !has4 || !has6 {
		for _, c := range cands {
			out = append(out, endpoint{addr: c.ap})
		}
		return out
	}
	// Dual stack: pair each primary-family address with the other-family
	// address of the same pod; whatever stays unpaired is an endpoint of its own.
	other := map[owner]int{} // pod -> index in cands of its first other-family address
	for i, c := range cands {
		if _, dup := other[c.owner]; c.owner != (owner{}) && c.ap.Addr().Is6() != s.primaryIPv6 && !dup {
			other[c.owner] = i
		}
	}
	paired := make([]bool, len(cands))
	for i, c := range cands {
		if c.ap.Addr().Is6() != s.primaryIPv6 {
			continue
		}
		e := endpoint{addr: c.ap}
		if j, ok := other[c.owner]; ok && c.owner != (owner{}) {
			e.extra = []netip.AddrPort{cands[j].ap}
			paired[j] = true
			delete(other, c.owner)
		}
		out = append(out, e)
		paired[i] = true
	}
	for i, c := range cands {
		if !paired[i] {
			out = append(out, endpoint{addr: c.ap})
		}
	}
	slices.SortFunc(out, func(a, b endpoint) int { return a.addr.Compare(b.addr) })
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
