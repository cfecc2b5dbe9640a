package webhook

import (
	"fmt"
	"slices"
	"strings"
	"unicode"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/tandem-mesh/tandem/internal/capture"
	"github.com/tandem-mesh/tandem/internal/wellknown"
	"github.com/tandem-mesh/tandem/templates"
)

// Default values of the injector's settings.
const (
	DefaultTemplate          = "envoy"
	DefaultProxyImage        = "envoyproxy/envoy:v1.40.0"
	DefaultAgentImage        = "ghcr.io/tandem-mesh/agent:latest"
	DefaultLogLevel          = "info"
	DefaultInjectorNamespace = wellknown.DefaultNamespace
)

// Defaults are the injector-wide settings, from its flags. Namespace
// annotations override them, pod annotations override both. Quantities
// empty means unset (no request or no limit).
type Defaults struct {
	Template      string
	NativeSidecar bool
	ProxyImage    string
	AgentImage    string
	LogLevel      string
	// Capture is "init" or "cni" (wellknown.CaptureInit, CaptureCNI).
	Capture string

	ProxyCPU, ProxyMemory, ProxyCPULimit, ProxyMemoryLimit string
	AgentCPU, AgentMemory, AgentCPULimit, AgentMemoryLimit string

	// DiscoveryAddress (host:port) and DiscoveryCA (PEM) tell agents where
	// discovery is and how to verify it; without both, agents watch the
	// API server.
	DiscoveryAddress, DiscoveryCA string
}

// RecommendedDefaults are the defaults of the injector's flags.
func RecommendedDefaults() Defaults {
	return Defaults{
		Template:         DefaultTemplate,
		NativeSidecar:    true,
		ProxyImage:       DefaultProxyImage,
		AgentImage:       DefaultAgentImage,
		LogLevel:         DefaultLogLevel,
		Capture:          wellknown.CaptureInit,
		ProxyCPU:         "100m",
		ProxyMemory:      "128Mi",
		ProxyMemoryLimit: "1Gi",
		AgentCPU:         "50m",
		AgentMemory:      "64Mi",
		AgentMemoryLimit: "256Mi",
	}
}

// settings is everything a rendering depends on: the template and its values.
type settings struct {
	template string
	values   templates.Values
}

// option is one setting that annotations (and flags) can carry.
type option struct {
	annotation string
	flag       string // the injector flag of the same setting, if any
	accepted   string
	set        func(in *Injector, s *settings, value string) error
}

var (
	logLevels   = []string{"debug", "info", "warn", "error"}
	booleans    = []string{"true", "false"}
	captures    = []string{wellknown.CaptureInit, wellknown.CaptureCNI}
	cpuForm     = "a CPU quantity such as 100m, 0.5 or 2"
	memoryForm  = "a memory quantity such as 128Mi, 1Gi or 500M"
	portsForm   = "comma-separated port numbers from 1 to 65535, such as 8080,9090 (empty for none)"
	cidrsForm   = "comma-separated CIDRs such as 10.0.0.0/8,fd00::/8 (empty for none)"
	includeForm = `"*" for all destinations, or comma-separated CIDRs such as 10.96.0.0/12`
)

// options lists the settings in a fixed order, so that when several values
// are wrong the message is always about the same one.
var options = []option{
	{wellknown.AnnotationTemplate, "template", "", func(in *Injector, s *settings, v string) error {
		if !in.templates.Has(v) {
			return fmt.Errorf("no such template")
		}
		s.template = v
		return nil
	}},
	{wellknown.AnnotationNativeSidecar, "native-sidecar", quoteAll(booleans), func(_ *Injector, s *settings, v string) error {
		if !slices.Contains(booleans, v) {
			return fmt.Errorf("not a boolean")
		}
		s.values.NativeSidecar = v == "true"
		return nil
	}},
	{wellknown.AnnotationCapture, "capture", quoteAll(captures), func(_ *Injector, s *settings, v string) error {
		if !slices.Contains(captures, v) {
			return fmt.Errorf("unknown capture mode")
		}
		s.values.Capture = v
		return nil
	}},
	{wellknown.AnnotationProxyImage, "proxy-image", "an image reference such as " + DefaultProxyImage, func(_ *Injector, s *settings, v string) error {
		return setImage(&s.values.ProxyImage, v)
	}},
	{wellknown.AnnotationAgentImage, "agent-image", "an image reference such as " + DefaultAgentImage, func(_ *Injector, s *settings, v string) error {
		return setImage(&s.values.AgentImage, v)
	}},
	{wellknown.AnnotationLogLevel, "sidecar-log-level", quoteAll(logLevels), func(_ *Injector, s *settings, v string) error {
		if !slices.Contains(logLevels, v) {
			return fmt.Errorf("unknown log level")
		}
		s.values.LogLevel = v
		return nil
	}},
	{wellknown.AnnotationProxyCPU, "proxy-cpu", cpuForm, func(_ *Injector, s *settings, v string) error {
		return setQuantity(&s.values.ProxyResources.CPU, v)
	}},
	{wellknown.AnnotationProxyMemory, "proxy-memory", memoryForm, func(_ *Injector, s *settings, v string) error {
		return setQuantity(&s.values.ProxyResources.Memory, v)
	}},
	{wellknown.AnnotationProxyCPULimit, "proxy-cpu-limit", cpuForm, func(_ *Injector, s *settings, v string) error {
		return setQuantity(&s.values.ProxyResources.CPULimit, v)
	}},
	{wellknown.AnnotationProxyMemoryLimit, "proxy-memory-limit", memoryForm, func(_ *Injector, s *settings, v string) error {
		return setQuantity(&s.values.ProxyResources.MemoryLimit, v)
	}},
	{wellknown.AnnotationWatchNamespaces, "", wellknown.WatchNamespacesForm, func(_ *Injector, s *settings, v string) error {
		names, err := wellknown.ParseWatchNamespaces(v)
		s.values.WatchNamespaces = strings.Join(names, ",")
		return err
	}},
	{wellknown.AnnotationExcludeOutboundPorts, "", portsForm, func(_ *Injector, s *settings, v string) error {
		ports, err := capture.ParsePorts(v)
		s.values.ExcludeOutboundPorts = capture.JoinPorts(ports)
		return err
	}},
	{wellknown.AnnotationExcludeOutboundCIDRs, "", cidrsForm, func(_ *Injector, s *settings, v string) error {
		prefixes, err := capture.ParseCIDRs(v)
		s.values.ExcludeOutboundCIDRs = capture.JoinCIDRs(prefixes)
		return err
	}},
	{wellknown.AnnotationIncludeOutboundCIDRs, "", includeForm, func(_ *Injector, s *settings, v string) error {
		if strings.TrimSpace(v) == "*" {
			s.values.IncludeOutboundCIDRs = "*"
			return nil
		}
		prefixes, err := capture.ParseCIDRs(v)
		if err == nil && len(prefixes) == 0 {
			err = fmt.Errorf("empty")
		}
		s.values.IncludeOutboundCIDRs = capture.JoinCIDRs(prefixes)
		return err
	}},
}

func setImage(dst *string, v string) error {
	if v == "" {
		return fmt.Errorf("empty")
	}
	if i := strings.IndexFunc(v, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }); i >= 0 {
		return fmt.Errorf("contains a space or control character")
	}
	*dst = v
	return nil
}

func setQuantity(dst *string, v string) error {
	if v == "" {
		*dst = ""
		return nil
	}
	q, err := resource.ParseQuantity(v)
	if err != nil {
		return fmt.Errorf("not a quantity")
	}
	if q.Sign() < 0 {
		return fmt.Errorf("negative")
	}
	*dst = q.String()
	return nil
}

func quoteAll(values []string) string {
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = fmt.Sprintf("%q", v)
	}
	return strings.Join(q, " or ")
}

// limitPair is one request and its limit, with the names the user set them by.
type limitPair struct {
	what, request, limit, requestName, limitName string
}

func proxyLimits(r templates.Resources, cpuName, cpuLimitName, memName, memLimitName string) []limitPair {
	return []limitPair{
		{"proxy CPU", r.CPU, r.CPULimit, cpuName, cpuLimitName},
		{"proxy memory", r.Memory, r.MemoryLimit, memName, memLimitName},
	}
}

// checkLimits refuses a request above its limit, which the API server would
// otherwise reject with a message about a container the user never wrote.
func checkLimits(pairs []limitPair) error {
	for _, p := range pairs {
		if p.request == "" || p.limit == "" {
			continue
		}
		req, limit := resource.MustParse(p.request), resource.MustParse(p.limit)
		if req.Cmp(limit) > 0 {
			return fmt.Errorf("the %s request %s (%s) is more than its limit %s (%s); accepted: a request at most its limit",
				p.what, p.request, p.requestName, p.limit, p.limitName)
		}
	}
	return nil
}

// fromDefaults validates the flags and builds the base settings.
func (in *Injector) fromDefaults(d Defaults) (settings, error) {
	s := settings{values: templates.Values{
		EnvoyBootstrap: in.envoyBootstrap,
		GRPCBootstrap:  in.grpcBootstrap,
	}}
	if d.DiscoveryAddress != "" && d.DiscoveryCA != "" {
		s.values.DiscoveryAddress, s.values.DiscoveryCA = d.DiscoveryAddress, d.DiscoveryCA
	}
	byFlag := map[string]string{
		"template":           d.Template,
		"native-sidecar":     fmt.Sprint(d.NativeSidecar),
		"capture":            d.Capture,
		"proxy-image":        d.ProxyImage,
		"agent-image":        d.AgentImage,
		"sidecar-log-level":  d.LogLevel,
		"proxy-cpu":          d.ProxyCPU,
		"proxy-memory":       d.ProxyMemory,
		"proxy-cpu-limit":    d.ProxyCPULimit,
		"proxy-memory-limit": d.ProxyMemoryLimit,
	}
	for _, o := range options {
		v, ok := byFlag[o.flag]
		if !ok {
			continue
		}
		if err := o.set(in, &s, v); err != nil {
			return s, fmt.Errorf("flag --%s=%q: %v; accepted: %s", o.flag, v, err, in.accepted(o))
		}
	}
	agent := map[string]*string{
		"agent-cpu": &s.values.AgentResources.CPU, "agent-memory": &s.values.AgentResources.Memory,
		"agent-cpu-limit": &s.values.AgentResources.CPULimit, "agent-memory-limit": &s.values.AgentResources.MemoryLimit,
	}
	for _, f := range []struct{ flag, value, form string }{
		{"agent-cpu", d.AgentCPU, cpuForm}, {"agent-memory", d.AgentMemory, memoryForm},
		{"agent-cpu-limit", d.AgentCPULimit, cpuForm}, {"agent-memory-limit", d.AgentMemoryLimit, memoryForm},
	} {
		if err := setQuantity(agent[f.flag], f.value); err != nil {
			return s, fmt.Errorf("flag --%s=%q: %v; accepted: %s", f.flag, f.value, err, f.form)
		}
	}
	a := s.values.AgentResources
	pairs := append(proxyLimits(s.values.ProxyResources, "--proxy-cpu", "--proxy-cpu-limit", "--proxy-memory", "--proxy-memory-limit"),
		limitPair{"agent CPU", a.CPU, a.CPULimit, "--agent-cpu", "--agent-cpu-limit"},
		limitPair{"agent memory", a.Memory, a.MemoryLimit, "--agent-memory", "--agent-memory-limit"})
	if err := checkLimits(pairs); err != nil {
		return s, fmt.Errorf("flags: %v", err)
	}
	return s, nil
}

func (in *Injector) accepted(o option) string {
	if o.annotation == wellknown.AnnotationTemplate {
		return quoteAll(in.templates.Names())
	}
	return o.accepted
}

// settingsFor layers the namespace's annotations, then the pod's, over the
// injector's defaults. A bad value denies the pod.
func (in *Injector) settingsFor(pod *corev1.Pod, ns Namespace) (settings, error) {
	s := in.defaults
	for i, annotations := range [2]map[string]string{ns.Annotations, pod.Annotations} {
		for _, o := range options {
			v, ok := annotations[o.annotation]
			if !ok {
				continue
			}
			if err := o.set(in, &s, v); err != nil {
				on := fmt.Sprintf("namespace %q", ns.Name)
				if i == 1 {
					on = "pod " + podName(pod)
				}
				return s, denied("annotation %s=%q on %s is invalid: %v; accepted: %s", o.annotation, v, on, err, in.accepted(o))
			}
		}
	}
	pairs := proxyLimits(s.values.ProxyResources, wellknown.AnnotationProxyCPU, wellknown.AnnotationProxyCPULimit,
		wellknown.AnnotationProxyMemory, wellknown.AnnotationProxyMemoryLimit)
	if err := checkLimits(pairs); err != nil {
		return s, denied("pod %s: %v", podName(pod), err)
	}
	return s, nil
}
