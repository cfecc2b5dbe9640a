package agent

import (
	"github.com/tandem-mesh/tandem/internal/agentstatus"
	"github.com/tandem-mesh/tandem/internal/version"
	"github.com/tandem-mesh/tandem/internal/xds"
)

// Served tells the state of the xDS clients an agent serves;
// *server.Server is one.
type Served interface {
	// Clients reports the latest response of each type and its answer.
	Clients() []agentstatus.Proxy
	// ClientsChanged receives a value whenever Clients may have changed.
	ClientsChanged() <-chan struct{}
}

// Status is the agent's report of itself: where its configuration comes
// from, its link to discovery, and what its clients accepted or refused.
func (a *Agent) Status() agentstatus.Agent {
	st := agentstatus.Agent{Version: version.Number(), Mode: "sidecar", Source: agentstatus.SourceNone, Proxies: []agentstatus.Proxy{}}
	if a.opts.Mode == xds.Proxyless {
		st.Mode = "proxyless"
	}
	switch c := a.current(); {
	case c == nil:
	case c == source(a.disc):
		st.Source = agentstatus.SourceDiscovery
	default:
		st.Source = agentstatus.SourceAPIServer
	}
	if a.disc != nil {
		st.Discovery = a.disc.link()
	}
	if a.opts.Served != nil {
		st.Proxies = a.opts.Served.Clients()
	}
	return st
}

// signal wakes whoever waits on c, without waiting itself.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
