package greeter

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	pb "google.golang.org/grpc/examples/helloworld/helloworld"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"
)

func serve(t *testing.T, hostname string) string {
	t.Helper()
	return serveGreeter(t, &Server{Hostname: hostname})
}

func serveGreeter(t *testing.T, s *Server) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	Register(g, s)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return lis.Addr().String()
}

func TestServerAnswersWithHostname(t *testing.T) {
	addr := serve(t, "greeter-server-0")
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	reply, err := pb.NewGreeterClient(conn).SayHello(context.Background(), &pb.HelloRequest{Name: "tandem"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "Greeting: hostname:greeter-server-0, in:tandem"; reply.GetMessage() != want {
		t.Fatalf("reply = %q, want %q", reply.GetMessage(), want)
	}
	h, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: "helloworld.Greeter"})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v; want SERVING", h.GetStatus(), err)
	}
}

func TestDelayComesBeforeEveryAnswer(t *testing.T) {
	const delay = 30 * time.Millisecond
	conn, err := grpc.NewClient(serveGreeter(t, &Server{Hostname: "slow", Delay: delay}), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pb.NewGreeterClient(conn)
	for range 3 {
		start := time.Now()
		reply, err := client.SayHello(context.Background(), &pb.HelloRequest{Name: "x"})
		if err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took < delay {
			t.Fatalf("answer %q came after %v, before the delay of %v", reply.GetMessage(), took, delay)
		}
	}
}

func TestDelayEndsWithTheCall(t *testing.T) {
	s := &Server{Hostname: "slow", Delay: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.SayHello(ctx, &pb.HelloRequest{Name: "x"}); status.Code(err) != codes.Canceled {
		t.Fatalf("SayHello of a cancelled call = %v, want code Canceled", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if _, err := s.SayHello(ctx, &pb.HelloRequest{Name: "x"}); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("SayHello past its deadline = %v, want code DeadlineExceeded", err)
	}
}

func TestBackend(t *testing.T) {
	for in, want := range map[string]string{
		"Greeting: hostname:pod-a, in:world":   "pod-a",
		"Greeting: hostname:pod-b, in:a, in:b": "pod-b",
	} {
		if got, err := Backend(in); err != nil || got != want {
			t.Errorf("Backend(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "hello", "Greeting: hostname:, in:x", "Greeting: hostname:pod-a"} {
		if _, err := Backend(bad); err == nil || !strings.Contains(err.Error(), "<host>") {
			t.Errorf("Backend(%q) error = %v, want one showing the expected form", bad, err)
		}
	}
}

func TestCallCountsPerBackend(t *testing.T) {
	// Three servers behind one round-robin channel: 30 calls, 10 each.
	r := manual.NewBuilderWithScheme("test")
	var addrs []resolver.Address
	for i := range 3 {
		addrs = append(addrs, resolver.Address{Addr: serve(t, fmt.Sprintf("pod-%d", i))})
	}
	r.InitialState(resolver.State{Addresses: addrs})
	conn, err := grpc.NewClient("test:///greeter", grpc.WithResolvers(r),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Round robin spreads over the connections that are up; warm up until
	// all three answered so the count below is exact.
	seen := map[string]int{}
	for len(seen) < 3 {
		c, err := Call(context.Background(), conn, 1, "warm-up", nil)
		if err != nil {
			t.Fatal(err)
		}
		for h := range c {
			seen[h]++
		}
	}
	var out bytes.Buffer
	counts, err := Call(context.Background(), conn, 30, "x", &out)
	if err != nil {
		t.Fatal(err)
	}
	if len(counts) != 3 || counts["pod-0"] != 10 || counts["pod-1"] != 10 || counts["pod-2"] != 10 {
		t.Fatalf("counts = %v, want 10 per pod", counts)
	}
	if lines := strings.Count(out.String(), "Greeting: hostname:pod-"); lines != 30 {
		t.Fatalf("%d answers printed, want 30", lines)
	}
	var summary bytes.Buffer
	PrintCounts(&summary, counts)
	if want := "pod-0: 10 (33.3%)\npod-1: 10 (33.3%)\npod-2: 10 (33.3%)\n"; summary.String() != want {
		t.Fatalf("summary =\n%s\nwant\n%s", summary.String(), want)
	}
}

func TestCallReportsFailures(t *testing.T) {
	conn, err := grpc.NewClient("127.0.0.1:1", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Call(ctx, conn, 3, "x", nil); err == nil || !strings.Contains(err.Error(), "request 1 of 3") {
		t.Fatalf("Call on a dead target = %v, want an error naming the request", err)
	}
}
