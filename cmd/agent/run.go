package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/tandem-mesh/tandem/internal/agent"
	"github.com/tandem-mesh/tandem/internal/agenthttp"
	"github.com/tandem-mesh/tandem/internal/envoyadmin"
	"github.com/tandem-mesh/tandem/internal/kubewatch"
	"github.com/tandem-mesh/tandem/internal/memory"
	"github.com/tandem-mesh/tandem/internal/statusapi"
	"github.com/tandem-mesh/tandem/internal/wellknown"
	"github.com/tandem-mesh/tandem/internal/xds"
	"github.com/tandem-mesh/tandem/internal/xds/server"
)

type runConfig struct {
	nodeID      string
	socket      string
	healthAddr  string
	metricsAddr string
	debugAddr   string
	envoyAdmin  *envoyadmin.Client
	namespaces  []string
	proxyless   bool
	drain       time.Duration
	level       slog.Level
	kubeconfig  string
	discovery   discoveryFlags
	locality    xds.Locality
}

// discoveryFlags say where discovery is and how to trust it.
type discoveryFlags struct {
	address       string // host:port; empty: the API server only
	caFile        string
	tokenFile     string
	fallbackAfter time.Duration
}

// parseRunFlags parses and checks the flags of `agent run`.
func parseRunFlags(args []string, stderr io.Writer) (*runConfig, error) {
	fs := flag.NewFlagSet("agent run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	defaultNode := ""
	if pod, ns := os.Getenv("POD_NAME"), os.Getenv("POD_NAMESPACE"); pod != "" && ns != "" {
		defaultNode = pod + "." + ns
	}
	var (
		c          runConfig
		admin      string
		namespaces string
		level      string
	)
	fs.StringVar(&c.nodeID, "node-id", defaultNode, "identity of the proxy in logs (default $POD_NAME.$POD_NAMESPACE)")
	fs.StringVar(&c.socket, "xds-socket", wellknown.XDSSocket, "Unix socket the xDS server listens on")
	fs.StringVar(&c.healthAddr, "health-addr", ":"+strconv.Itoa(wellknown.AgentHealthPort), "address of /healthz and /ready")
	fs.StringVar(&c.metricsAddr, "metrics-addr", ":"+strconv.Itoa(wellknown.AgentMetricsPort), "address of /metrics")
	fs.StringVar(&c.debugAddr, "debug-addr", "127.0.0.1:"+strconv.Itoa(wellknown.AgentDebugPort), "loopback address of the agent's report and served configuration, reached through the API server's port-forward (kubectl tandem status and config); empty turns it off")
	fs.StringVar(&admin, "envoy-admin", "http://127.0.0.1:"+strconv.Itoa(wellknown.ProxyAdminPort), "Envoy's admin interface (stats and draining)")
	fs.StringVar(&namespaces, "watch-namespaces", "", "comma-separated namespaces to watch (default: all)")
	fs.BoolVar(&c.proxyless, "proxyless", false, "serve proxyless gRPC, no Envoy: ready once the informers have synced")
	fs.DurationVar(&c.drain, "drain-duration", 5*time.Second, "how long to keep serving after SIGTERM while Envoy drains")
	fs.StringVar(&level, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.locality.Node, "node", os.Getenv(wellknown.NodeNameEnv), "name of the Node the pod runs on, for internalTrafficPolicy Local and topology (default $"+wellknown.NodeNameEnv+")")
	fs.StringVar(&c.locality.Zone, "zone", os.Getenv(wellknown.ZoneEnv), "zone the pod runs in, for topology (default $"+wellknown.ZoneEnv+"; when empty, discovery reads the Node's)")
	fs.StringVar(&c.locality.Namespace, "namespace", os.Getenv("POD_NAMESPACE"), "namespace the pod runs in, whose consumer routes (Gateway API) apply to it (default $POD_NAMESPACE)")
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig file (default: the in-cluster configuration)")
	fs.StringVar(&c.discovery.address, "discovery-address", "", "discovery's host:port, like tandem-discovery.tandem-system.svc:15012 (default: watch the API server directly)")
	fs.StringVar(&c.discovery.caFile, "discovery-ca", "", "file of the CA certificate that signed discovery's serving certificate (default: the PEM in $"+wellknown.DiscoveryCAEnv+")")
	fs.StringVar(&c.discovery.tokenFile, "discovery-token", wellknown.DiscoveryTokenFile, "service-account token of audience "+wellknown.DiscoveryAudience)
	fs.DurationVar(&c.discovery.fallbackAfter, "discovery-fallback-after", 5*time.Second, "how long discovery may be unreachable before the agent watches the API server itself")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q: agent run takes flags only", fs.Arg(0))
	}
	if c.nodeID == "" {
		host, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("--node-id is empty, POD_NAME and POD_NAMESPACE are unset and the hostname is unknown: %w", err)
		}
		c.nodeID = host
	}
	if !filepath.IsAbs(c.socket) {
		return nil, fmt.Errorf("--xds-socket %q: want an absolute path, like %s", c.socket, wellknown.XDSSocket)
	}
	for flagName, addr := range map[string]string{"--health-addr": c.healthAddr, "--metrics-addr": c.metricsAddr} {
		if err := checkListenAddr(addr); err != nil {
			return nil, fmt.Errorf("%s %q: %v; want [host]:port, like :15021", flagName, addr, err)
		}
	}
	if err := statusapi.CheckLoopback(c.debugAddr); err != nil {
		return nil, fmt.Errorf("--debug-addr %q: %v; want a loopback address, like 127.0.0.1:%d, or empty for none", c.debugAddr, err, wellknown.AgentDebugPort)
	}
	var err error
	if c.envoyAdmin, err = envoyadmin.New(admin); err != nil {
		return nil, fmt.Errorf("--envoy-admin: %w", err)
	}
	if c.namespaces, err = wellknown.ParseWatchNamespaces(namespaces); err != nil {
		return nil, fmt.Errorf("--watch-namespaces %q: %v; want %s", namespaces, err, wellknown.WatchNamespacesForm)
	}
	if c.drain < 0 {
		return nil, fmt.Errorf("--drain-duration %v: want zero or a positive duration, like 5s", c.drain)
	}
	if a := c.discovery.address; a != "" {
		if host, port, err := net.SplitHostPort(a); err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("--discovery-address %q: want host:port, like tandem-discovery.tandem-system.svc:15012", a)
		}
	}
	if c.discovery.fallbackAfter <= 0 {
		return nil, fmt.Errorf("--discovery-fallback-after %v: want a positive duration, like 5s", c.discovery.fallbackAfter)
	}
	if err := c.level.UnmarshalText([]byte(level)); err != nil || !validLevel(level) {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return &c, nil
}

func validLevel(s string) bool {
	switch strings.ToLower(s) {
	case "debug", "info", "warn", "error":
		return true
	}
	return false
}

func checkListenAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || (p == 0 && port != "0") {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return nil
}

// agentGCPercent lets the heap grow by half its live size between
// collections instead of Go's default of all of it: an agent runs in every
// pod, and between full rebuilds it allocates little, so the extra
// collections cost next to nothing while every pod saves a quarter of the
// agent's memory. GOGC, when set, wins.
const agentGCPercent = 50

func runCommand(args []string, _, stderr io.Writer) int {
	c, err := parseRunFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "agent run: %v\n", err)
		return 2
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(agentGCPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	go func() {
		<-ctx.Done()
		// A second signal during the drain ends the process at once.
		stop()
	}()
	return runAgent(ctx, c, stderr)
}

// runAgent serves until ctx ends (SIGTERM), then drains and returns the
// exit code.
func runAgent(ctx context.Context, c *runConfig, stderr io.Writer) int {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: c.level})).With("node", c.nodeID)
	memory.LimitToContainer(log)
	klog.SetSlogLogger(log.With("component", "client-go"))
	fail := func(msg string, err error) int {
		log.Error(msg, "error", err)
		return 1
	}
	reg := prometheus.NewRegistry()
	ag, srv, err := newAgent(c, log, reg)
	if err != nil {
		return fail("agent", err)
	}
	// Bind everything before serving, so a taken port or a bad socket path
	// ends the process at once with its reason.
	xdsLis, err := server.Listen(c.socket)
	if err != nil {
		return fail("xDS socket", err)
	}
	defer xdsLis.Close()
	var draining, serving atomic.Bool
	httpServers, httpLis, err := listenHTTP(c, healthChecks(c, ag, srv, &serving, &draining), reg, log)
	if err != nil {
		return fail("HTTP listener", err)
	}

	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 2+len(httpServers))
	serving.Store(true)
	go func() {
		err := srv.Serve(runCtx, xdsLis)
		serving.Store(false)
		if err != nil {
			errc <- fmt.Errorf("xDS server: %w", err)
		}
	}()
	go func() {
		if err := ag.Run(runCtx); err != nil && runCtx.Err() == nil {
			errc <- err
		}
	}()
	for i, hs := range httpServers {
		go func() {
			if err := hs.Serve(httpLis[i]); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("HTTP server on %s: %w", httpLis[i].Addr(), err)
			}
		}()
	}
	if c.debugAddr != "" {
		if hs, lis, err := listenDebug(c.debugAddr, ag, srv); err != nil {
			// The app may use the port: the pod runs on without the endpoint.
			log.Warn("debug endpoint not served: kubectl tandem status and config will not reach this agent", "address", c.debugAddr, "error", err)
		} else {
			httpServers = append(httpServers, hs)
			go func() {
				if err := hs.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
					log.Warn("debug endpoint stopped", "error", err)
				}
			}()
		}
	}
	log.Info("agent running", "xdsSocket", c.socket, "health", c.healthAddr, "metrics", c.metricsAddr, "debug", c.debugAddr,
		"proxyless", c.proxyless, "nodeName", c.locality.Node, "zone", c.locality.Zone, "namespace", c.locality.Namespace, "namespaces", strings.Join(c.namespaces, ","), "discovery", c.discovery.address)

	code := 0
	select {
	case err := <-errc:
		code = fail("stopping", err)
	case <-ctx.Done():
		drain(c, log, &draining)
	}
	cancel()
	shutdownCtx, done := context.WithTimeout(context.Background(), 2*time.Second)
	defer done()
	for _, hs := range httpServers {
		hs.Shutdown(shutdownCtx)
	}
	log.Info("agent stopped")
	return code
}

// newAgent builds the xDS server and the agent that publishes into it.
func newAgent(c *runConfig, log *slog.Logger, reg *prometheus.Registry) (*agent.Agent, *server.Server, error) {
	restCfg, err := restConfig(c.kubeconfig)
	if err != nil {
		return nil, nil, fmt.Errorf("Kubernetes API configuration: %w", err)
	}
	sources, err := kubewatch.NewSources(restCfg)
	if err != nil {
		return nil, nil, fmt.Errorf("Kubernetes clients: %w", err)
	}
	mode := xds.Sidecar
	if c.proxyless {
		mode = xds.Proxyless
	}
	var ag *agent.Agent
	srvOpts := server.Options{Logger: log, Proxyless: c.proxyless}
	if c.proxyless && c.discovery.address != "" {
		// The app's gRPC client asks for the listeners of the Services it
		// dials: exactly those are subscribed to.
		srvOpts.OnListenerNames = func(names []string) { ag.SubscribeListeners(names) }
	}
	srv := server.New(srvOpts)
	reg.MustRegister(srv, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	opts := agent.Options{
		Sources:    sources,
		Namespaces: c.namespaces,
		Mode:       mode,
		Locality:   c.locality,
		Publisher:  srv,
		Logger:     log,
		Registerer: reg,
		Served:     srv,
	}
	if opts.Discovery, err = discoveryOptions(c); err != nil {
		return nil, nil, err
	}
	ag, err = agent.New(opts)
	return ag, srv, err
}

// discoveryOptions reads discovery's CA; nil without --discovery-address.
func discoveryOptions(c *runConfig) (*agent.DiscoveryOptions, error) {
	d := c.discovery
	if d.address == "" {
		return nil, nil
	}
	pem, from := []byte(os.Getenv(wellknown.DiscoveryCAEnv)), "$"+wellknown.DiscoveryCAEnv
	if d.caFile != "" {
		var err error
		if pem, err = os.ReadFile(d.caFile); err != nil {
			return nil, fmt.Errorf("--discovery-ca: %w", err)
		}
		from = d.caFile
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("discovery's CA: no PEM certificate in %s; set --discovery-ca to a CA file", from)
	}
	host, _, _ := net.SplitHostPort(d.address)
	return &agent.DiscoveryOptions{
		Address:       d.address,
		TLS:           &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12},
		TokenFile:     d.tokenFile,
		NodeID:        c.nodeID,
		OnDemand:      c.proxyless,
		FallbackAfter: d.fallbackAfter,
	}, nil
}

// healthChecks: live while the xDS server serves; ready once configured
// (and, with Envoy, once Envoy has ACKed it) and not draining.
func healthChecks(c *runConfig, ag *agent.Agent, srv *server.Server, serving, draining *atomic.Bool) agenthttp.Checks {
	return agenthttp.Checks{
		Live: func() error {
			if !serving.Load() {
				return errors.New("the xDS server is not serving")
			}
			if _, err := os.Stat(c.socket); err != nil {
				return fmt.Errorf("xDS socket: %w", err)
			}
			return nil
		},
		Ready: func() error {
			switch {
			case draining.Load():
				return errors.New("draining")
			case !ag.Synced():
				return errors.New("no configuration yet: neither discovery nor the API server has answered")
			case !c.proxyless && !srv.Ready():
				return errors.New("Envoy has not ACKed clusters and listeners yet")
			}
			return nil
		},
	}
}

// listenHTTP binds the health and metrics servers (one when both share an
// address).
func listenHTTP(c *runConfig, checks agenthttp.Checks, reg *prometheus.Registry, log *slog.Logger) ([]*http.Server, []net.Listener, error) {
	var envoyStats agenthttp.StatsFunc
	if !c.proxyless {
		envoyStats = c.envoyAdmin.PrometheusStats
	}
	health := agenthttp.Health(checks)
	metrics := agenthttp.Metrics(reg, envoyStats, log)
	handlers := map[string]http.Handler{c.healthAddr: health, c.metricsAddr: metrics}
	if c.healthAddr == c.metricsAddr {
		mux := http.NewServeMux()
		mux.Handle("/metrics", metrics)
		mux.Handle("/", health)
		handlers = map[string]http.Handler{c.healthAddr: mux}
	}
	var httpServers []*http.Server
	var httpLis []net.Listener
	for addr, h := range handlers {
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range httpLis {
				l.Close()
			}
			return nil, nil, err
		}
		httpLis = append(httpLis, lis)
		httpServers = append(httpServers, &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second})
	}
	return httpServers, httpLis, nil
}

// listenDebug binds the debug endpoint: the agent's report and the
// configuration its xDS server serves.
func listenDebug(addr string, ag *agent.Agent, srv *server.Server) (*http.Server, net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	h := agenthttp.Debug(ag.Status, func(kinds []string) ([]byte, error) { return servedJSON(srv, kinds) })
	return &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}, lis, nil
}

// servedJSON is what srv serves now, of the given kinds (all when none),
// as `agent config` prints it.
func servedJSON(srv *server.Server, kinds []string) ([]byte, error) {
	if len(kinds) == 0 {
		kinds = xds.Kinds
	}
	for _, k := range kinds {
		if !slices.Contains(xds.Kinds, k) {
			return nil, fmt.Errorf("kind %q: accepted: %s", k, strings.Join(xds.Kinds, ", "))
		}
	}
	var res xds.Resources
	for _, g := range []struct {
		typeName string
		out      *[]types.Resource
	}{{server.Listener, &res.Listeners}, {server.Route, &res.Routes}, {server.Cluster, &res.Clusters}, {server.Endpoint, &res.Endpoints}} {
		served := srv.Resources(g.typeName)
		for _, name := range slices.Sorted(maps.Keys(served)) {
			*g.out = append(*g.out, served[name])
		}
	}
	return res.JSONOf(kinds...)
}

// drain reports not ready, asks Envoy to drain its listeners and keeps
// serving xDS for the drain period, so in-flight requests finish with a
// configured Envoy.
func drain(c *runConfig, log *slog.Logger, draining *atomic.Bool) {
	draining.Store(true)
	log.Info("terminating: draining", "duration", c.drain)
	if !c.proxyless {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := c.envoyAdmin.DrainListeners(ctx); err != nil {
			log.Warn("Envoy did not accept the drain request", "error", err)
		}
		cancel()
	}
	time.Sleep(c.drain)
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("--kubeconfig %s: %w", kubeconfig, err)
		}
		return cfg, nil
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("no --kubeconfig and not in a cluster: %w", err)
	}
	return cfg, nil
}
