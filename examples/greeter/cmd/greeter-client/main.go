// Command greeter-client calls the Greeter N times and prints each answer
// and how many requests each backend served. Targets may be plain
// ("greeter:50051", balanced by a sidecar) or xds:/// (proxyless gRPC,
// with GRPC_XDS_BOOTSTRAP_CONFIG or GRPC_XDS_BOOTSTRAP set).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/xds" // registers the xds:/// resolver and balancers

	"github.com/tandem-mesh/tandem/examples/greeter"
)

func main() {
	target := flag.String("target", "greeter:50051", "gRPC target, e.g. greeter:50051 or xds:///greeter.demo.svc.cluster.local:50051")
	n := flag.Int("n", 10, "requests per batch")
	name := flag.String("name", "world", "name sent in each request")
	every := flag.Duration("every", 0, "repeat the batch at this interval until stopped (0: once)")
	timeout := flag.Duration("timeout", 30*time.Second, "deadline of one batch")
	flag.Parse()
	if flag.NArg() > 0 || *n < 1 || *every < 0 || *timeout <= 0 {
		fmt.Fprintf(os.Stderr, "greeter-client: want -n >= 1, -every >= 0, -timeout > 0 and no arguments; got -n %d -every %v -timeout %v %q\n",
			*n, *every, *timeout, flag.Args())
		os.Exit(2)
	}
	conn, err := grpc.NewClient(*target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(os.Stderr, "greeter-client: --target %q: %v\n", *target, err)
		os.Exit(2)
	}
	defer conn.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	for {
		batch, cancel := context.WithTimeout(ctx, *timeout)
		counts, err := greeter.Call(batch, conn, *n, *name, os.Stdout)
		cancel()
		greeter.PrintCounts(os.Stdout, counts)
		if err != nil {
			fmt.Fprintf(os.Stderr, "greeter-client: %v\n", err)
			if *every == 0 {
				os.Exit(1)
			}
		}
		if *every == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(*every):
		}
	}
}
