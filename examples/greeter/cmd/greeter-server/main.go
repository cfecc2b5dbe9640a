// Command greeter-server serves the Greeter, answering with its hostname.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"

	"github.com/tandem-mesh/tandem/examples/greeter"
)

func main() {
	listen := flag.String("listen", ":50051", "address to serve gRPC on")
	hostname := flag.String("hostname", greeter.DefaultHostname(), "name to answer with (default $POD_NAME or the host name)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "greeter-server: unexpected argument %q; it takes flags only\n", flag.Arg(0))
		os.Exit(2)
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("greeter-server: --listen %q: %v", *listen, err)
	}
	g := grpc.NewServer()
	greeter.Register(g, *hostname)
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
		<-sig
		g.GracefulStop()
	}()
	log.Printf("greeter-server %s listening on %s", *hostname, lis.Addr())
	if err := g.Serve(lis); err != nil {
		log.Fatalf("greeter-server: %v", err)
	}
}
