// Package greeter is the demo workload: a gRPC Greeter that answers with
// the name of the pod serving it, and a client that calls it repeatedly
// and counts the answers per backend, which shows whether requests are
// balanced per request or stuck to one connection.
package greeter

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc"
	pb "google.golang.org/grpc/examples/helloworld/helloworld"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// Server answers SayHello with "Greeting: hostname:<Hostname>, in:<name>".
type Server struct {
	pb.UnimplementedGreeterServer
	Hostname string
	// Delay is added to every answer: a slow replica, for measuring how
	// well requests are balanced away from it. Zero answers at once.
	Delay time.Duration
}

// SayHello implements the Greeter service.
func (s *Server) SayHello(ctx context.Context, req *pb.HelloRequest) (*pb.HelloReply, error) {
	if s.Delay > 0 {
		t := time.NewTimer(s.Delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	return &pb.HelloReply{Message: fmt.Sprintf("Greeting: hostname:%s, in:%s", s.Hostname, req.GetName())}, nil
}

// Register adds s, and a gRPC health service reporting it serving (for
// Kubernetes gRPC probes), to g.
func Register(g *grpc.Server, s *Server) {
	pb.RegisterGreeterServer(g, s)
	hs := health.NewServer()
	hs.SetServingStatus(pb.Greeter_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(g, hs)
}

// DefaultHostname is $POD_NAME when set, else the host name.
func DefaultHostname() string {
	if p := os.Getenv("POD_NAME"); p != "" {
		return p
	}
	h, err := os.Hostname()
	if err != nil {
		return "unknown"
	}
	return h
}

// Backend extracts the serving host from a greeting.
func Backend(greeting string) (string, error) {
	const prefix = "Greeting: hostname:"
	rest, ok := strings.CutPrefix(greeting, prefix)
	host, _, found := strings.Cut(rest, ", in:")
	if !ok || !found || host == "" {
		return "", fmt.Errorf("greeting %q is not of the form %q", greeting, prefix+"<host>, in:<name>")
	}
	return host, nil
}

// Call sends n SayHello requests on conn, one after the other, writes each
// answer to out (when not nil) and returns how many each backend served.
// Metadata in ctx travels with every request.
func Call(ctx context.Context, conn grpc.ClientConnInterface, n int, name string, out io.Writer) (map[string]int, error) {
	client := pb.NewGreeterClient(conn)
	counts := map[string]int{}
	for i := range n {
		reply, err := client.SayHello(ctx, &pb.HelloRequest{Name: name})
		if err != nil {
			return counts, fmt.Errorf("request %d of %d: %w", i+1, n, err)
		}
		host, err := Backend(reply.GetMessage())
		if err != nil {
			return counts, err
		}
		counts[host]++
		if out != nil {
			fmt.Fprintln(out, reply.GetMessage())
		}
	}
	return counts, nil
}

// PrintCounts writes one "backend: count (percent)" line per backend, sorted.
func PrintCounts(out io.Writer, counts map[string]int) {
	total := 0
	hosts := make([]string, 0, len(counts))
	for h, c := range counts {
		hosts = append(hosts, h)
		total += c
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		fmt.Fprintf(out, "%s: %d (%.1f%%)\n", h, counts[h], 100*float64(counts[h])/float64(total))
	}
}
