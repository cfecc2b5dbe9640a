package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/tandem-mesh/tandem/internal/wellknown"
	"github.com/tandem-mesh/tandem/templates"
	"github.com/tandem-mesh/tandem/webhook"
)

// injectionFlags are the settings `serve` and `inject` share: what the
// sidecars look like, before annotations override it.
type injectionFlags struct {
	defaults          webhook.Defaults
	templatesDir      string
	injectorNamespace string
}

func (f *injectionFlags) bind(fs *flag.FlagSet) {
	f.defaults = webhook.RecommendedDefaults()
	fs.StringVar(&f.templatesDir, "templates", "", "directory of sidecar templates (<name>.yaml, _<helpers>.tpl) replacing the built-in ones")
	for _, v := range []struct {
		dst         *string
		name, usage string
	}{
		{&f.defaults.Template, "template", "template for pods without the tandem.dev/template annotation"},
		{&f.defaults.Capture, "capture", "capture mode for pods without the tandem.dev/capture annotation: init (tandem-init with NET_ADMIN) or cni (the nodes' tandem-cni plugin; pods pass Pod Security restricted)"},
		{&f.defaults.ProxyImage, "proxy-image", "Envoy image of tandem-proxy"},
		{&f.defaults.AgentImage, "agent-image", "agent image of tandem-agent and tandem-init"},
		{&f.defaults.LogLevel, "sidecar-log-level", "log level of Envoy and the agent: debug, info, warn or error"},
		{&f.defaults.ProxyCPU, "proxy-cpu", "CPU request of tandem-proxy (empty: none)"},
		{&f.defaults.ProxyMemory, "proxy-memory", "memory request of tandem-proxy (empty: none)"},
		{&f.defaults.ProxyCPULimit, "proxy-cpu-limit", "CPU limit of tandem-proxy (empty: none)"},
		{&f.defaults.ProxyMemoryLimit, "proxy-memory-limit", "memory limit of tandem-proxy (empty: none)"},
		{&f.defaults.AgentCPU, "agent-cpu", "CPU request of tandem-agent and tandem-init (empty: none)"},
		{&f.defaults.AgentMemory, "agent-memory", "memory request of tandem-agent and tandem-init (empty: none)"},
		{&f.defaults.AgentCPULimit, "agent-cpu-limit", "CPU limit of tandem-agent and tandem-init (empty: none)"},
		{&f.defaults.AgentMemoryLimit, "agent-memory-limit", "memory limit of tandem-agent and tandem-init (empty: none)"},
	} {
		fs.StringVar(v.dst, v.name, *v.dst, v.usage)
	}
	ns := os.Getenv("POD_NAMESPACE")
	if ns == "" {
		ns = webhook.DefaultInjectorNamespace
	}
	fs.StringVar(&f.injectorNamespace, "injector-namespace", ns, "namespace of the injector, never injected ($POD_NAMESPACE when set)")
	fs.StringVar(&f.defaults.DiscoveryAddress, "agent-discovery-address",
		fmt.Sprintf("%s.%s.svc:%d", wellknown.DiscoveryService, ns, wellknown.DiscoveryPort),
		"discovery's host:port that injected agents dial (empty: agents watch the API server); passed to agents only with discovery's CA (serve: ca.crt in --cert-dir; inject: --discovery-ca)")
}

// injector builds the injector; nativeSidecar is decided by the caller.
func (f *injectionFlags) injector(nativeSidecar bool) (*webhook.Injector, error) {
	var set *templates.Set
	if f.templatesDir != "" {
		st, err := os.Stat(f.templatesDir)
		if err != nil || !st.IsDir() {
			return nil, fmt.Errorf("flag --templates=%q: not a directory", f.templatesDir)
		}
		if set, err = templates.Load(os.DirFS(f.templatesDir)); err != nil {
			return nil, fmt.Errorf("flag --templates=%q: %w", f.templatesDir, err)
		}
	}
	d := f.defaults
	d.NativeSidecar = nativeSidecar
	return webhook.New(webhook.Config{Templates: set, Defaults: d, InjectorNamespace: f.injectorNamespace})
}

// parseFlags parses args, printing usage on -h; it returns the exit code
// to stop with, or -1 to go on.
func parseFlags(fs *flag.FlagSet, args []string) int {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return 2
	}
	return -1
}

type flagSet = flag.FlagSet

func newFlagSet(name string) *flag.FlagSet { return flag.NewFlagSet(name, flag.ContinueOnError) }
