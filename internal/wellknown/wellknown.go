// Package wellknown holds the names, labels, annotations, ports and IDs that
// the injector, the agent and the deployment manifests must agree on.
package wellknown

// Labels and annotations.
const (
	// InjectLabel on a namespace ("enabled") turns injection on; on a pod,
	// "false" opts out and "true" opts in inside an unlabeled namespace.
	InjectLabel        = "tandem.dev/inject"
	InjectLabelEnabled = "enabled"

	// StatusAnnotation records what the injector added to a pod (JSON).
	StatusAnnotation = "tandem.dev/status"

	AnnotationProxyImage       = "tandem.dev/proxy-image"
	AnnotationAgentImage       = "tandem.dev/agent-image"
	AnnotationProxyCPU         = "tandem.dev/proxy-cpu"
	AnnotationProxyMemory      = "tandem.dev/proxy-memory"
	AnnotationProxyCPULimit    = "tandem.dev/proxy-cpu-limit"
	AnnotationProxyMemoryLimit = "tandem.dev/proxy-memory-limit"
	AnnotationLogLevel         = "tandem.dev/log-level"
	AnnotationNativeSidecar    = "tandem.dev/native-sidecar"
	AnnotationTemplate         = "tandem.dev/template"
	AnnotationWatchNamespaces  = "tandem.dev/watch-namespaces"

	AnnotationExcludeOutboundPorts = "traffic.tandem.dev/exclude-outbound-ports"
	AnnotationExcludeOutboundCIDRs = "traffic.tandem.dev/exclude-outbound-cidrs"
	AnnotationIncludeOutboundCIDRs = "traffic.tandem.dev/include-outbound-cidrs"
)

// Injected containers and volumes.
const (
	InitContainerName  = "tandem-init"
	AgentContainerName = "tandem-agent"
	ProxyContainerName = "tandem-proxy"
	RunVolumeName      = "tandem-run"
	TokenVolumeName    = "tandem-token"

	// RunDir is where the tandem-run volume is mounted; it holds XDSSocket.
	RunDir    = "/var/run/tandem"
	XDSSocket = RunDir + "/xds.sock"
)

// Ports.
const (
	ProxyOutboundPort = 15001 // Envoy's capture listener
	ProxyAdminPort    = 15000 // Envoy admin, bound to 127.0.0.1 only
	AgentHealthPort   = 15021 // /healthz, /ready
	AgentMetricsPort  = 15020 // /metrics
	// AgentDebugPort serves the agent's report and the configuration it
	// serves, on 127.0.0.1 only: reached through the API server's
	// port-forward, never from another host.
	AgentDebugPort = 15004
)

// ProxyUID and ProxyGID run the agent and Envoy; capture exempts their traffic.
const (
	ProxyUID = 1337
	ProxyGID = 1337
)

// Names of Envoy resources shared by the bootstrap and the agent.
const (
	// XDSClusterName is the static bootstrap cluster that reaches the agent.
	XDSClusterName = "tandem-xds"
	// OutboundListenerName is the listener on ProxyOutboundPort.
	OutboundListenerName = "outbound"
	// PassthroughClusterName forwards to the original destination.
	PassthroughClusterName = "passthrough"
)

// Agent permissions, kept by the injector for each labeled namespace.
const (
	// AgentClusterRole may read Services, EndpointSlices and TrafficPolicies.
	AgentClusterRole = "tandem-agent"
	// AgentBindingPrefix + namespace names the ClusterRoleBinding that grants
	// AgentClusterRole to that namespace's service accounts.
	AgentBindingPrefix = "tandem-agent:"
	// ManagedByLabel marks objects the injector owns and may delete.
	ManagedByLabel    = "app.kubernetes.io/managed-by"
	ManagedByInjector = "tandem-injector"
	// AgentNamespaceLabel on a binding names the namespace it serves.
	AgentNamespaceLabel = "tandem.dev/agent-namespace"
)

// Discovery: served by the injector's pods behind Service DiscoveryService
// in the injector's namespace. Agents present a projected token of
// audience DiscoveryAudience, at DiscoveryTokenFile in their tandem-token
// volume, and trust the CA the injection passes in DiscoveryCAEnv.
const (
	// WebhookService fronts the injector's admission webhook (config/webhook).
	WebhookService     = "tandem-webhook"
	DiscoveryService   = "tandem-discovery"
	DiscoveryPort      = 15012
	DiscoveryAudience  = "tandem-discovery"
	DiscoveryTokenPath = "discovery-token"
	DiscoveryTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/" + DiscoveryTokenPath
	DiscoveryCAEnv     = "TANDEM_DISCOVERY_CA"
	// ParamDiscoveryAddress and ParamDiscoveryCA are the keys of the
	// admission policies' params ConfigMap that the injector writes at run
	// time (internal/controller/policyparams); the policies read them as
	// optional, and without both agents watch the API server.
	// InjectorStatusPort serves, on 127.0.0.1 of each injector pod, the
	// agents connected to it and whether pods' sidecars are current:
	// reached through the API server's port-forward.
	InjectorStatusPort    = 15014
	ParamDiscoveryAddress = "discovery-address"
	ParamDiscoveryCA      = "discovery-ca"
)

// Where the agent's pod runs, from the downward API: NodeNameEnv is its
// spec.nodeName, ZoneEnv its topology.kubernetes.io/zone label, which
// Kubernetes copies from the Node when the pod is bound (empty where the
// cluster does not).
const (
	NodeNameEnv = "NODE_NAME"
	ZoneEnv     = "TANDEM_ZONE"
)

// Objects of an install, named alike by config/ (kustomize) and the Helm
// charts: kubectl tandem finds an install by these names.
const (
	// InjectorDeployment runs the injector, in the install's namespace
	// (DefaultNamespace unless the install chose another).
	InjectorDeployment = "tandem-injector"
	DefaultNamespace   = "tandem-system"
	// InjectorContainer is its container; its ports named WebhookPortName
	// and DiscoveryPortName serve the webhook and discovery.
	InjectorContainer = "injector"
	WebhookPortName   = "webhook"
	DiscoveryPortName = "discovery"
	// WebhookConfiguration is the MutatingWebhookConfiguration (webhook
	// mode); the admission policies and their parameters replace it in
	// policy mode.
	WebhookConfiguration = "tandem-injector"
	MutatingPolicy       = "tandem-injector"
	ValidatingPolicy     = "tandem-injector-annotations"
	PolicyParams         = "tandem-injection-defaults"
	// CNIDaemonSet installs tandem-cni on every node, in CNINamespace.
	CNIDaemonSet = "tandem-cni"
	CNINamespace = "kube-system"
)

// Capture modes: who installs the capture rules of a pod.
const (
	// AnnotationCapture on a pod or namespace chooses the mode.
	AnnotationCapture = "tandem.dev/capture"
	// CaptureInit: the tandem-init container, root with NET_ADMIN.
	CaptureInit = "init"
	// CaptureCNI: the node's tandem-cni plugin when the pod's sandbox is
	// created; tandem-validate, unprivileged, checks the result.
	CaptureCNI = "cni"

	ValidateContainerName = "tandem-validate"
	// ValidateUID and ValidateGID run tandem-validate: not the proxy's, so
	// its test connection is captured like the app's.
	ValidateUID = 1338
	ValidateGID = 1338
)

// Gateway API mesh routing: the controller name the injector writes into
// the status.parents entries of the routes whose parents are Services, and
// the condition of its own that says whether proxyless gRPC clients apply
// all of a route.
const (
	RouteControllerName          = "tandem.dev/mesh"
	ConditionProxylessCompatible = "tandem.dev/ProxylessCompatible"
)
