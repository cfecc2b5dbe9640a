package policy

import (
	"github.com/tandem-mesh/tandem/internal/wellknown"
	"github.com/tandem-mesh/tandem/templates"
)

// kind is how a setting's value is checked and written into the sidecars.
type kind int

const (
	kindImage kind = iota
	kindCPU
	kindMemory
	kindLogLevel
	kindNamespaces
	kindPorts
	kindCIDRs
	kindIncludeCIDRs
	kindBool
	kindTemplate
	kindCapture
	// kindPublished is any text the injector writes into the params
	// ConfigMap while it runs: absent from the generated ConfigMap, so a
	// re-apply of the install does not take it back, and read as optional.
	kindPublished
)

// setting is one text value of templates.Values that the policy computes
// per pod: from the pod's annotation, else the namespace's, else the params
// ConfigMap (key). Settings without an annotation come from params only;
// settings without a flag default to empty. Optional settings may be empty,
// and templates may leave out what depends on them.
type setting struct {
	key        string // params key and CEL variable suffix
	annotation string
	kind       kind
	optional   bool
	field      func(*templates.Values) *string
}

// settings cover every text field of templates.Values except the
// bootstraps, which are the same for every pod (TestSettingsCoverValues).
var settings = []setting{
	{"proxy-image", wellknown.AnnotationProxyImage, kindImage, false, func(v *templates.Values) *string { return &v.ProxyImage }},
	{"agent-image", wellknown.AnnotationAgentImage, kindImage, false, func(v *templates.Values) *string { return &v.AgentImage }},
	{"sidecar-log-level", wellknown.AnnotationLogLevel, kindLogLevel, false, func(v *templates.Values) *string { return &v.LogLevel }},
	{"proxy-cpu", wellknown.AnnotationProxyCPU, kindCPU, true, func(v *templates.Values) *string { return &v.ProxyResources.CPU }},
	{"proxy-memory", wellknown.AnnotationProxyMemory, kindMemory, true, func(v *templates.Values) *string { return &v.ProxyResources.Memory }},
	{"proxy-cpu-limit", wellknown.AnnotationProxyCPULimit, kindCPU, true, func(v *templates.Values) *string { return &v.ProxyResources.CPULimit }},
	{"proxy-memory-limit", wellknown.AnnotationProxyMemoryLimit, kindMemory, true, func(v *templates.Values) *string { return &v.ProxyResources.MemoryLimit }},
	{"agent-cpu", "", kindCPU, true, func(v *templates.Values) *string { return &v.AgentResources.CPU }},
	{"agent-memory", "", kindMemory, true, func(v *templates.Values) *string { return &v.AgentResources.Memory }},
	{"agent-cpu-limit", "", kindCPU, true, func(v *templates.Values) *string { return &v.AgentResources.CPULimit }},
	{"agent-memory-limit", "", kindMemory, true, func(v *templates.Values) *string { return &v.AgentResources.MemoryLimit }},
	{"watch-namespaces", wellknown.AnnotationWatchNamespaces, kindNamespaces, true, func(v *templates.Values) *string { return &v.WatchNamespaces }},
	{"exclude-outbound-ports", wellknown.AnnotationExcludeOutboundPorts, kindPorts, true, func(v *templates.Values) *string { return &v.ExcludeOutboundPorts }},
	{"exclude-outbound-cidrs", wellknown.AnnotationExcludeOutboundCIDRs, kindCIDRs, true, func(v *templates.Values) *string { return &v.ExcludeOutboundCIDRs }},
	{"include-outbound-cidrs", wellknown.AnnotationIncludeOutboundCIDRs, kindIncludeCIDRs, true, func(v *templates.Values) *string { return &v.IncludeOutboundCIDRs }},
	// Discovery's address and CA are the cluster's, never a pod's: the
	// injector writes them into the params ConfigMap at run time
	// (published), and without both agents watch the API server.
	{wellknown.ParamDiscoveryAddress, "", kindPublished, true, func(v *templates.Values) *string { return &v.DiscoveryAddress }},
	{wellknown.ParamDiscoveryCA, "", kindPublished, true, func(v *templates.Values) *string { return &v.DiscoveryCA }},
}

// The settings that pick a variant rather than a value.
const (
	keyTemplate = "template"
	keyNative   = "native-sidecar"
	keyCapture  = "capture"
)
