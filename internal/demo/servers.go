package demo

import (
	"fmt"
	"net"
	"net/netip"

	"google.golang.org/grpc"

	"github.com/tandem-mesh/tandem/examples/greeter"
)

// greeterServers are the three server pods' app containers, run in process
// on the pods' addresses, each answering with its pod's name.
type greeterServers struct{ servers []*grpc.Server }

func startServers(net_ *network) (*greeterServers, error) {
	gs := &greeterServers{}
	for _, s := range net_.servers {
		addr := netip.AddrPortFrom(s.ip, net_.targetPort).String()
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			gs.stop()
			return nil, fmt.Errorf("greeter server of pod %s on %s: %w", s.name, addr, err)
		}
		srv := grpc.NewServer()
		greeter.Register(srv, &greeter.Server{Hostname: s.name})
		go srv.Serve(lis)
		gs.servers = append(gs.servers, srv)
	}
	return gs, nil
}

func (g *greeterServers) stop() {
	for _, s := range g.servers {
		s.Stop()
	}
}
