package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"strconv"
	"strings"

	"github.com/go-logr/logr"
	"go.uber.org/zap/zapcore"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/discovery"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	tandemv1alpha1 "github.com/tandem-mesh/tandem/api/v1alpha1"
	"github.com/tandem-mesh/tandem/internal/controller/agentrbac"
	"github.com/tandem-mesh/tandem/internal/controller/policyparams"
	"github.com/tandem-mesh/tandem/internal/controller/webhookca"
	tdiscovery "github.com/tandem-mesh/tandem/internal/discovery"
	"github.com/tandem-mesh/tandem/internal/memory"
	"github.com/tandem-mesh/tandem/internal/statusapi"
	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// serveOptions are the flags of `injector serve`.
type serveOptions struct {
	injectionFlags
	nativeSidecar  string
	webhook        bool
	webhookHost    string
	webhookPort    int
	certDir        string
	metricsAddr    string
	probeAddr      string
	leaderElect    bool
	kubeconfig     string
	logLevel       string
	nativeResolved bool // nativeSidecar with "auto" decided
	discovery      bool
	discoveryAddr  string
	certSecret     string
	policyParams   string
	// webhookConfiguration names the MutatingWebhookConfiguration whose
	// caBundle the injector writes.
	webhookConfiguration string
	statusAddr           string
}

func (o *serveOptions) bind(fs *flag.FlagSet) {
	o.injectionFlags.Bind(fs)
	fs.StringVar(&o.nativeSidecar, "native-sidecar", "auto", "default sidecar layout: true (native sidecars), false (classic), auto (native when the API server is 1.29 or newer)")
	fs.BoolVar(&o.webhook, "webhook", true, "serve the admission webhook; false where admission policies inject (config/policy): the controllers and discovery run")
	fs.StringVar(&o.webhookHost, "webhook-host", "", "address the webhook server listens on (empty: all)")
	fs.IntVar(&o.webhookPort, "webhook-port", 9443, "port of the webhook server")
	fs.StringVar(&o.certDir, "cert-dir", "/tmp/k8s-webhook-server/serving-certs", "directory with the serving certificate (tls.crt, tls.key, and ca.crt for agents), reloaded when it changes; not read with --cert-secret")
	fs.StringVar(&o.certSecret, "cert-secret", "", "Secret of the injector's namespace holding the serving certificate of the webhook and discovery instead of --cert-dir: used as it is when cert-manager (or you) wrote it, else issued and renewed by the injector with a CA of its own")
	fs.StringVar(&o.policyParams, "policy-params", "", "ConfigMap of the injector's namespace that the admission policies read (config/policy): the injector writes discovery's address and CA into it, so the agents of policy-injected pods follow discovery")
	fs.StringVar(&o.webhookConfiguration, "webhook-configuration", "", "MutatingWebhookConfiguration whose webhooks' caBundle the injector keeps equal to the CA of its --cert-secret certificate, where nothing else writes it (no cert-manager); only its caBundle fields are changed")
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus /metrics endpoint (\"0\" turns it off)")
	fs.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	fs.BoolVar(&o.leaderElect, "leader-elect", false, "elect a leader among replicas for the controllers (the webhook is served by all)")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster configuration, then $KUBECONFIG)")
	fs.StringVar(&o.logLevel, "log-level", "info", "the injector's own log level: debug, info, warn or error")
	fs.BoolVar(&o.discovery, "discovery", true, "serve discovery to the agents (every replica, TLS with the certificate of --cert-dir)")
	fs.StringVar(&o.discoveryAddr, "discovery-addr", ":"+strconv.Itoa(tdiscovery.Port), "address discovery listens on")
	fs.StringVar(&o.statusAddr, "status-addr", "127.0.0.1:"+strconv.Itoa(wellknown.InjectorStatusPort), "loopback address of the status endpoint (discovery's agents, pods' sidecars), reached through the API server's port-forward by kubectl tandem; empty turns it off")
}

func runServe(args []string, _ io.Reader, _, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o serveOptions
	o.bind(fs)
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if err := o.check(fs); err != nil {
		fmt.Fprintf(stderr, "injector serve: %v\n", err)
		return 2
	}
	level, err := zapLevel(o.logLevel)
	if err != nil {
		fmt.Fprintf(stderr, "injector serve: %v\n", err)
		return 2
	}
	ctrl.SetLogger(zap.New(zap.Level(level), zap.WriteTo(stderr)))
	memory.LimitToContainer(slog.New(logr.ToSlogHandler(ctrl.Log.WithName("memory"))))
	cfg, err := restConfig(o.kubeconfig)
	if err != nil {
		fmt.Fprintf(stderr, "injector serve: %v\n", err)
		return 1
	}
	if err := serve(ctrl.SetupSignalHandler(), cfg, &o); err != nil {
		fmt.Fprintf(stderr, "injector serve: %v\n", err)
		return 1
	}
	return 0
}

// check refuses flags that contradict each other.
func (o *serveOptions) check(fs *flag.FlagSet) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.certSecret != "" && set["cert-dir"] {
		return errors.New("flags --cert-dir and --cert-secret: give one, the certificate comes from files or from the Secret")
	}
	if o.webhookConfiguration != "" && (o.certSecret == "" || !o.webhook) {
		return errors.New("flag --webhook-configuration: needs --cert-secret and the webhook (--webhook=true): the caBundle written is the CA of the certificate the webhook serves from that Secret")
	}
	if err := statusapi.CheckLoopback(o.statusAddr); err != nil {
		return fmt.Errorf("flag --status-addr=%q: %v; want a loopback address, like 127.0.0.1:%d, or empty for none", o.statusAddr, err, wellknown.InjectorStatusPort)
	}
	return nil
}

func zapLevel(s string) (zapcore.Level, error) {
	switch s {
	case "debug", "info", "warn", "error":
		return zapcore.ParseLevel(s)
	}
	return 0, fmt.Errorf("flag --log-level=%q: accepted: debug, info, warn or error", s)
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	return ctrl.GetConfig()
}

// serve runs the manager until ctx ends.
func serve(ctx context.Context, cfg *rest.Config, o *serveOptions) error {
	log := ctrl.Log.WithName("injector")
	native, why, err := resolveNativeSidecar(o.nativeSidecar, cfg)
	if err != nil {
		return err
	}
	o.nativeResolved = native
	log.Info("sidecar layout", "native", native, "because", why)
	if !o.webhook && !o.discovery {
		log.Info("running the controllers only (--webhook=false --discovery=false): agent RBAC and TrafficPolicy status")
	}
	var certs *servingCerts
	if o.webhook || o.discovery {
		if certs, err = loadServingCerts(ctx, cfg, o, log); err != nil {
			return err
		}
		// Injected agents verify discovery with the CA of the certificate it serves.
		if o.discovery && o.Defaults.DiscoveryAddress != "" {
			if o.Defaults.DiscoveryCA = certs.ca(); o.Defaults.DiscoveryCA == "" {
				log.Info("no CA for discovery's certificate: injected agents will watch the API server, not discovery")
			}
		}
	}

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := tandemv1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	if err := gatewayv1.Install(scheme); err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: scheme,
		// The agent-RBAC controller owns a few ClusterRoleBindings; caching
		// only those keeps a big cluster's other bindings out of memory.
		Cache:                   cache.Options{ByObject: cacheByObject(o)},
		Metrics:                 metricsserver.Options{BindAddress: o.metricsAddr},
		HealthProbeBindAddress:  o.probeAddr,
		WebhookServer:           webhookServer(o, certs),
		LeaderElection:          o.leaderElect,
		LeaderElectionID:        "injector.tandem.dev",
		LeaderElectionNamespace: o.InjectorNamespace,
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	if err := setupManager(mgr, o, certs); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	// Ready once the webhook server accepts TLS connections.
	if o.webhook {
		if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
			return err
		}
	}
	return mgr.Start(ctx)
}

// cacheByObject limits the manager's caches to the objects its controllers own.
func cacheByObject(o *serveOptions) map[client.Object]cache.ByObject {
	by := agentrbac.CacheByObject()
	if o.policyParams != "" {
		maps.Copy(by, policyparams.CacheByObject(o.InjectorNamespace, o.policyParams))
	}
	if o.webhookConfiguration != "" {
		maps.Copy(by, webhookca.CacheByObject(o.webhookConfiguration))
	}
	return by
}

// webhookServer serves the certificate of --cert-dir, as controller-runtime
// does by default, or the one the injector keeps in --cert-secret.
func webhookServer(o *serveOptions, certs *servingCerts) ctrlwebhook.Server {
	opts := ctrlwebhook.Options{Host: o.webhookHost, Port: o.webhookPort, CertDir: o.certDir}
	if o.certSecret != "" && certs != nil {
		opts.TLSOpts = []func(*tls.Config){func(c *tls.Config) { c.GetCertificate = certs.get }}
	}
	return ctrlwebhook.NewServer(opts)
}

// resolveNativeSidecar turns --native-sidecar into a decision, asking the
// API server its version for "auto": sidecar containers are on by default
// from Kubernetes 1.29.
func resolveNativeSidecar(flagValue string, cfg *rest.Config) (bool, string, error) {
	switch flagValue {
	case "true":
		return true, "--native-sidecar=true", nil
	case "false":
		return false, "--native-sidecar=false", nil
	case "auto":
	default:
		return false, "", fmt.Errorf("flag --native-sidecar=%q: accepted: auto, true or false", flagValue)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return false, "", err
	}
	info, err := dc.ServerVersion()
	if err != nil {
		return false, "", fmt.Errorf("reading the API server's version for --native-sidecar=auto: %w", err)
	}
	return nativeSidecarsFor(info.GitVersion)
}

func nativeSidecarsFor(gitVersion string) (bool, string, error) {
	v, err := version.ParseGeneric(strings.TrimSpace(gitVersion))
	if err != nil {
		return false, "", errors.New("the API server reports version " + gitVersion + ", which does not parse: set --native-sidecar to true or false")
	}
	native := v.AtLeast(version.MajorMinor(1, 29))
	return native, fmt.Sprintf("the API server is %s (native sidecars from 1.29)", gitVersion), nil
}
