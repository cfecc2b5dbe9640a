package discovery

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"github.com/tandem-mesh/tandem/internal/agentstatus"
	"github.com/tandem-mesh/tandem/internal/discovery/resource"
)

// BenchmarkFanOut is the cost of one changed Service in a cache of 1,000
// followed by 1,000 subscribers (100 of everything, 900 of its
// namespace): notifying them, and each one's ACK opening its next watch,
// which checks everything it follows.
func BenchmarkFanOut(b *testing.B) {
	c := NewCache()
	for i := range 1000 {
		if err := c.Set(svc(fmt.Sprintf("ns-%d", i%10), fmt.Sprintf("svc-%d", i), "10.0.0.1")); err != nil {
			b.Fatal(err)
		}
	}
	var clients []*client
	for i := range 1000 {
		sub := "*"
		if i >= 100 {
			sub = "ns-3/*"
		}
		cl := newClient(b, c, []string{sub}, nil)
		cl.watch() // the initial state
		if cl.watch() != nil {
			b.Fatal("a client in step was answered")
		}
		clients = append(clients, cl)
	}
	changed := svc("ns-3", "svc-3", "10.0.0.1")
	eps := changed.EndpointGroups[0].Endpoints
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		eps[0].Address = fmt.Sprintf("198.51.100.%d", i%200+2)
		if err := c.Set(changed); err != nil {
			b.Fatal(err)
		}
		for _, cl := range clients {
			if r := cl.take(); r == nil || len(r.Resources) != 1 {
				b.Fatalf("a subscriber got %v, want the one changed Service", r)
			}
			if cl.watch() != nil {
				b.Fatal("a client in step was answered")
			}
		}
	}
}

// BenchmarkAgentRecords is discovery's bookkeeping of one change reaching
// 1,000 agents: the response to each, its ACK, and one report each (an
// agent reports its proxy's ACKs once after a push), decoded from its node.
func BenchmarkAgentRecords(b *testing.B) {
	a := newAgents(slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	const streams = 1000
	report := agentstatus.Agent{Version: "v0.1.0", Mode: "sidecar", Source: agentstatus.SourceDiscovery,
		Discovery: &agentstatus.Link{Address: "tandem-discovery.tandem-system.svc:15012", Connected: true, Services: 1000},
		Proxies:   []agentstatus.Proxy{{Node: "app.shop"}}}
	for _, t := range []string{"cluster", "endpoint", "listener", "route"} {
		report.Proxies[0].Exchanges = append(report.Proxies[0].Exchanges, agentstatus.Exchange{Type: t, Sent: "abc-17", Acked: "abc-17", SentAt: time.Now(), AckedAt: time.Now()})
	}
	node, err := agentstatus.Node("app.shop", report)
	if err != nil {
		b.Fatal(err)
	}
	for i := range streams {
		a.open(withIdentity(ctx, identity{namespace: "shop", serviceAccount: "default", pod: fmt.Sprintf("app-%d", i)}, "10.0.0.1:1234"), int64(i))
		a.request(int64(i), &discoverygrpc.DeltaDiscoveryRequest{Node: node, TypeUrl: resource.TypeURL, ResourceNamesSubscribe: []string{"*"}})
	}
	b.ReportAllocs()
	for n := 0; b.Loop(); n++ {
		nonce := strconv.Itoa(n)
		for i := range int64(streams) {
			a.response(i, &discoverygrpc.DeltaDiscoveryResponse{TypeUrl: resource.TypeURL, Nonce: nonce})
			a.request(i, &discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resource.TypeURL, ResponseNonce: nonce})
			a.request(i, &discoverygrpc.DeltaDiscoveryRequest{Node: node, TypeUrl: resource.TypeURL, ResponseNonce: nonce})
		}
	}
}
