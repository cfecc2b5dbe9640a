package discovery

import (
	"fmt"
	"testing"
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
