package templates

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"

	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// Values are the data a template renders. The injector fills them from its
// flags, then the namespace's annotations, then the pod's, and validates every
// field before rendering: a template can use them as they are.
type Values struct {
	// NativeSidecar selects Kubernetes native sidecars (init containers with
	// restartPolicy Always) over the classic layout.
	NativeSidecar bool
	ProxyImage    string
	AgentImage    string
	// LogLevel is one of debug, info, warn, error; Envoy and the agent both accept it.
	LogLevel string
	// ProxyResources apply to tandem-proxy, AgentResources to tandem-agent and tandem-init.
	ProxyResources Resources
	AgentResources Resources
	// WatchNamespaces limits what the agent watches (comma-separated); empty means all.
	WatchNamespaces string
	// The capture flags of `agent init`, comma-separated, already validated;
	// empty means the flag is not passed.
	ExcludeOutboundPorts string
	ExcludeOutboundCIDRs string
	IncludeOutboundCIDRs string
	// Capture is who installs the capture rules: "init" (tandem-init) or
	// "cni" (the node's tandem-cni plugin, checked by tandem-validate).
	Capture string
	// EnvoyBootstrap is Envoy's bootstrap JSON for --config-yaml.
	EnvoyBootstrap string
	// GRPCBootstrap is the JSON of GRPC_XDS_BOOTSTRAP_CONFIG for proxyless apps.
	GRPCBootstrap string
	// DiscoveryAddress is discovery's host:port and DiscoveryCA the PEM of
	// the CA that signed its certificate; both empty when agents watch the
	// API server.
	DiscoveryAddress, DiscoveryCA string

	// Const holds the names and numbers every part of Tandem agrees on; the
	// templates read them from here rather than spelling them out. Render
	// sets it, whatever the caller put there.
	Const Constants
}

// Resources are Kubernetes quantities in canonical form; empty means unset.
type Resources struct {
	CPU, Memory, CPULimit, MemoryLimit string
}

// Constants mirror internal/wellknown for use inside templates.
type Constants struct {
	InitContainer, AgentContainer, ProxyContainer string
	ValidateContainer                             string
	ValidateUID, ValidateGID                      int
	RunVolume, TokenVolume                        string
	RunDir, XDSSocket                             string
	DiscoveryAudience, DiscoveryTokenPath         string
	DiscoveryCAEnv                                string
	NodeNameEnv, ZoneEnv                          string
	AgentBinary                                   string
	ProxyOutboundPort, ProxyAdminPort             int
	AgentHealthPort, AgentMetricsPort             int
	ProxyUID, ProxyGID                            int
}

// AgentBinary is where the agent image holds the agent.
const AgentBinary = "/usr/local/bin/agent"

var constants = Constants{
	InitContainer:      wellknown.InitContainerName,
	ValidateContainer:  wellknown.ValidateContainerName,
	ValidateUID:        wellknown.ValidateUID,
	ValidateGID:        wellknown.ValidateGID,
	AgentContainer:     wellknown.AgentContainerName,
	ProxyContainer:     wellknown.ProxyContainerName,
	RunVolume:          wellknown.RunVolumeName,
	TokenVolume:        wellknown.TokenVolumeName,
	RunDir:             wellknown.RunDir,
	XDSSocket:          wellknown.XDSSocket,
	DiscoveryAudience:  wellknown.DiscoveryAudience,
	DiscoveryTokenPath: wellknown.DiscoveryTokenPath,
	DiscoveryCAEnv:     wellknown.DiscoveryCAEnv,
	NodeNameEnv:        wellknown.NodeNameEnv,
	ZoneEnv:            wellknown.ZoneEnv,
	AgentBinary:        AgentBinary,
	ProxyOutboundPort:  wellknown.ProxyOutboundPort,
	ProxyAdminPort:     wellknown.ProxyAdminPort,
	AgentHealthPort:    wellknown.AgentHealthPort,
	AgentMetricsPort:   wellknown.AgentMetricsPort,
	ProxyUID:           wellknown.ProxyUID,
	ProxyGID:           wellknown.ProxyGID,
}

// Sidecars is what a template renders to: the objects to add to a pod and
// where they go. The placement is the template's choice, so a custom template
// can change the layout without a new injector.
type Sidecars struct {
	// InitContainersFirst go before the pod's own init containers.
	InitContainersFirst []corev1.Container `json:"initContainersFirst,omitempty"`
	// InitContainersLast go after the pod's own init containers.
	InitContainersLast []corev1.Container `json:"initContainersLast,omitempty"`
	// ContainersFirst go before the pod's own containers.
	ContainersFirst []corev1.Container `json:"containersFirst,omitempty"`
	// Volumes are added to the pod.
	Volumes []corev1.Volume `json:"volumes,omitempty"`
	// AppEnv is appended, in order, to the env of each of the pod's own containers.
	AppEnv []corev1.EnvVar `json:"appEnv,omitempty"`
	// AppVolumeMounts are added to each of the pod's own containers.
	AppVolumeMounts []corev1.VolumeMount `json:"appVolumeMounts,omitempty"`
}

// Rendered is one template rendered with one set of values. It is shared
// between callers through the render cache and must not be modified.
type Rendered struct {
	Template string
	Sidecars Sidecars
	// Hash identifies the rendered text (hex of the first 8 bytes of its SHA-256).
	Hash string
	// ContainerJSON and VolumeJSON are the JSON encodings of the sidecars'
	// containers and volumes by name, made once per rendering for callers
	// that write them out for every pod.
	ContainerJSON map[string][]byte
	VolumeJSON    map[string][]byte
}

// ExampleValues are complete values used to check a template when it is
// loaded; they also document what a typical rendering receives.
func ExampleValues(native bool) Values {
	return Values{
		NativeSidecar:        native,
		ProxyImage:           "envoyproxy/envoy:example",
		AgentImage:           "ghcr.io/tandem-mesh/agent:example",
		LogLevel:             "info",
		ProxyResources:       Resources{CPU: "100m", Memory: "128Mi", MemoryLimit: "1Gi"},
		AgentResources:       Resources{CPU: "50m", Memory: "64Mi", MemoryLimit: "256Mi"},
		WatchNamespaces:      "default",
		ExcludeOutboundPorts: strconv.Itoa(9090),
		ExcludeOutboundCIDRs: "10.0.0.0/8",
		IncludeOutboundCIDRs: "*",
		Capture:              wellknown.CaptureInit,
		EnvoyBootstrap:       `{"node":{"id":"$(POD_NAME).$(POD_NAMESPACE)"}}`,
		GRPCBootstrap:        `{"xds_servers":[]}`,
		DiscoveryAddress:     "tandem-discovery.tandem-system.svc:15012",
		DiscoveryCA:          "-----BEGIN CERTIFICATE-----\nexample\n-----END CERTIFICATE-----\n",
	}
}
