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
	delay := flag.Duration("delay", 0, "extra time before each answer, like 20ms: a slow replica (default: answer at once)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "greeter-server: unexpected argument %q; it takes flags only\n", flag.Arg(0))
		os.Exit(2)
	}
	if *delay < 0 {
		fmt.Fprintf(os.Stderr, "greeter-server: --delay %v: want zero or a positive duration, like 20ms\n", *delay)
		os.Exit(2)
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("greeter-server: --listen %q: %v", *listen, err)
	}
	g := grpc.NewServer()
	greeter.Register(g, &greeter.Server{Hostname: *hostname, Delay: *delay})
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
		<-sig
		g.GracefulStop()
	}()
	log.Printf("greeter-server %s listening on %s, answering after %v", *hostname, lis.Addr(), *delay)
	if err := g.Serve(lis); err != nil {
		log.Fatalf("greeter-server: %v", err)
	}
}
