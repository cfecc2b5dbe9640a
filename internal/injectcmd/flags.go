// Package injectcmd holds the injector's command-line settings of the
// sidecars, shared by every command that renders them, and the offline
// commands inject and uninject, which `injector` and `kubectl tandem` both
// run.
package injectcmd

import (
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"

	"github.com/tandem-mesh/tandem/internal/wellknown"
	"github.com/tandem-mesh/tandem/templates"
	"github.com/tandem-mesh/tandem/webhook"
)

// Flags are the settings `serve`, `policy` and `inject` share: what the
// sidecars look like, before annotations override it.
type Flags struct {
	Defaults          webhook.Defaults
	TemplatesDir      string
	InjectorNamespace string
}

// Bind defines the flags on fs.
func (f *Flags) Bind(fs *flag.FlagSet) {
	f.Defaults = webhook.RecommendedDefaults()
	fs.StringVar(&f.TemplatesDir, "templates", "", "directory of sidecar templates (<name>.yaml, _<helpers>.tpl) replacing the built-in ones")
	for _, v := range []struct {
		dst         *string
		name, usage string
	}{
		{&f.Defaults.Template, "template", "template for pods without the tandem.dev/template annotation"},
		{&f.Defaults.Capture, "capture", "capture mode for pods without the tandem.dev/capture annotation: init (tandem-init with NET_ADMIN) or cni (the nodes' tandem-cni plugin; pods pass Pod Security restricted)"},
		{&f.Defaults.ProxyImage, "proxy-image", "Envoy image of tandem-proxy"},
		{&f.Defaults.AgentImage, "agent-image", "agent image of tandem-agent and tandem-init"},
		{&f.Defaults.LogLevel, "sidecar-log-level", "log level of Envoy and the agent: debug, info, warn or error"},
		{&f.Defaults.ProxyCPU, "proxy-cpu", "CPU request of tandem-proxy (empty: none)"},
		{&f.Defaults.ProxyMemory, "proxy-memory", "memory request of tandem-proxy (empty: none)"},
		{&f.Defaults.ProxyCPULimit, "proxy-cpu-limit", "CPU limit of tandem-proxy (empty: none)"},
		{&f.Defaults.ProxyMemoryLimit, "proxy-memory-limit", "memory limit of tandem-proxy (empty: none)"},
		{&f.Defaults.AgentCPU, "agent-cpu", "CPU request of tandem-agent and tandem-init (empty: none)"},
		{&f.Defaults.AgentMemory, "agent-memory", "memory request of tandem-agent and tandem-init (empty: none)"},
		{&f.Defaults.AgentCPULimit, "agent-cpu-limit", "CPU limit of tandem-agent and tandem-init (empty: none)"},
		{&f.Defaults.AgentMemoryLimit, "agent-memory-limit", "memory limit of tandem-agent and tandem-init (empty: none)"},
	} {
		fs.StringVar(v.dst, v.name, *v.dst, v.usage)
	}
	ns := os.Getenv("POD_NAMESPACE")
	if ns == "" {
		ns = webhook.DefaultInjectorNamespace
	}
	fs.StringVar(&f.InjectorNamespace, "injector-namespace", ns, "namespace of the injector, never injected ($POD_NAMESPACE when set)")
	fs.StringVar(&f.Defaults.DiscoveryAddress, "agent-discovery-address",
		fmt.Sprintf("%s.%s.svc:%d", wellknown.DiscoveryService, ns, wellknown.DiscoveryPort),
		"discovery's host:port that injected agents dial (empty: agents watch the API server); passed to agents only with discovery's CA (serve: ca.crt in --cert-dir; inject: --discovery-ca)")
}

// Injector builds the injector; nativeSidecar is decided by the caller.
func (f *Flags) Injector(nativeSidecar bool) (*webhook.Injector, error) {
	var set *templates.Set
	if f.TemplatesDir != "" {
		st, err := os.Stat(f.TemplatesDir)
		if err != nil || !st.IsDir() {
			return nil, fmt.Errorf("flag --templates=%q: not a directory", f.TemplatesDir)
		}
		if set, err = templates.Load(os.DirFS(f.TemplatesDir)); err != nil {
			return nil, fmt.Errorf("flag --templates=%q: %w", f.TemplatesDir, err)
		}
	}
	d := f.Defaults
	d.NativeSidecar = nativeSidecar
	return webhook.New(webhook.Config{Templates: set, Defaults: d, InjectorNamespace: f.InjectorNamespace})
}

// ParseFlags parses args, printing usage on -h; it returns the exit code
// to stop with, or -1 to go on.
func ParseFlags(fs *flag.FlagSet, args []string) int {
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

// FromParams sets f's defaults from the admission policies' parameters:
// the ConfigMap `injector policy` writes holds the injection's flags by
// name, and the injector publishes discovery's address and CA into it.
// TemplatesDir and InjectorNamespace stay. It returns the native-sidecar
// setting, which is no flag of f.
func (f *Flags) FromParams(data map[string]string) (nativeSidecar bool, err error) {
	fs := flag.NewFlagSet("params", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	// What the parameters do not hold is the caller's.
	dir, ns := f.TemplatesDir, f.InjectorNamespace
	f.Bind(fs)
	f.TemplatesDir, f.InjectorNamespace = dir, ns
	native := fs.Bool("native-sidecar", true, "")
	f.Defaults.DiscoveryAddress = ""
	for _, k := range slices.Sorted(maps.Keys(data)) {
		v := data[k]
		switch k {
		case wellknown.ParamDiscoveryAddress:
			f.Defaults.DiscoveryAddress = v
		case wellknown.ParamDiscoveryCA:
			f.Defaults.DiscoveryCA = v
		case "agent-discovery-address", "injector-namespace", "templates":
			return false, fmt.Errorf("key %q: not a setting of the admission policies", k)
		default:
			if fs.Lookup(k) == nil {
				return false, fmt.Errorf("key %q: no such setting (the keys are the flags of injector policy)", k)
			}
			if err := fs.Set(k, v); err != nil {
				return false, fmt.Errorf("key %s=%q: %w", k, v, err)
			}
		}
	}
	return *native, nil
}
