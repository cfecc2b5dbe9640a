package main

import (
	"flag"
	"fmt"
	"os"

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
	d := webhook.RecommendedDefaults()
	f.defaults = d
	fs.StringVar(&f.templatesDir, "templates", "", "directory of sidecar templates (<name>.yaml, _<helpers>.tpl) replacing the built-in ones")
	fs.StringVar(&f.defaults.Template, "template", d.Template, "template for pods without the tandem.dev/template annotation")
	fs.StringVar(&f.defaults.ProxyImage, "proxy-image", d.ProxyImage, "Envoy image of tandem-proxy")
	fs.StringVar(&f.defaults.AgentImage, "agent-image", d.AgentImage, "agent image of tandem-agent and tandem-init")
	fs.StringVar(&f.defaults.LogLevel, "sidecar-log-level", d.LogLevel, "log level of Envoy and the agent: debug, info, warn or error")
	fs.StringVar(&f.defaults.ProxyCPU, "proxy-cpu", d.ProxyCPU, "CPU request of tandem-proxy (empty: none)")
	fs.StringVar(&f.defaults.ProxyMemory, "proxy-memory", d.ProxyMemory, "memory request of tandem-proxy (empty: none)")
	fs.StringVar(&f.defaults.ProxyCPULimit, "proxy-cpu-limit", d.ProxyCPULimit, "CPU limit of tandem-proxy (empty: none)")
	fs.StringVar(&f.defaults.ProxyMemoryLimit, "proxy-memory-limit", d.ProxyMemoryLimit, "memory limit of tandem-proxy (empty: none)")
	fs.StringVar(&f.defaults.AgentCPU, "agent-cpu", d.AgentCPU, "CPU request of tandem-agent and tandem-init (empty: none)")
	fs.StringVar(&f.defaults.AgentMemory, "agent-memory", d.AgentMemory, "memory request of tandem-agent and tandem-init (empty: none)")
	fs.StringVar(&f.defaults.AgentCPULimit, "agent-cpu-limit", d.AgentCPULimit, "CPU limit of tandem-agent and tandem-init (empty: none)")
	fs.StringVar(&f.defaults.AgentMemoryLimit, "agent-memory-limit", d.AgentMemoryLimit, "memory limit of tandem-agent and tandem-init (empty: none)")
	ns := os.Getenv("POD_NAMESPACE")
	if ns == "" {
		ns = webhook.DefaultInjectorNamespace
	}
	fs.StringVar(&f.injectorNamespace, "injector-namespace", ns, "namespace of the injector, never injected (default: $POD_NAMESPACE, else "+webhook.DefaultInjectorNamespace+")")
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
