package greeter

import (
	"context"
	"strings"
	"testing"

	pb "google.golang.org/grpc/examples/helloworld/helloworld"
)

// FuzzBackend checks that every greeting the server can produce parses
// back to its host, and that no input makes Backend panic.
func FuzzBackend(f *testing.F) {
	f.Add("greeter-server-0", "world")
	f.Add("198.51.100.11", "")
	f.Add("pod", ", in:")
	f.Fuzz(func(t *testing.T, host, name string) {
		reply, err := (&Server{Hostname: host}).SayHello(context.Background(), &pb.HelloRequest{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		got, err := Backend(reply.GetMessage())
		if host == "" || strings.Contains(host, ", in:") {
			return // not a host name a pod can have; only must not panic
		}
		if err != nil || got != host {
			t.Fatalf("Backend(%q) = %q, %v; want %q", reply.GetMessage(), got, err, host)
		}
		Backend(host) // arbitrary text
	})
}
