// Command balance measures how well requests are balanced when one of three
// servers is slow (make balance): greeter-server processes in a network
// namespace of their own, one answering every call late, and a grpc-go
// client making a fixed number of calls at a fixed concurrency through a
// kube-proxy-style cluster IP, Tandem's proxyless round robin and Tandem's
// default (least request), and through Envoy where an envoy binary is on
// PATH. It prints the share of calls each server took and the latency
// percentiles, and writes them as JSON.
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	_ "google.golang.org/grpc/xds" // the xds:/// resolver and its balancers

	"github.com/tandem-mesh/tandem/internal/bootstrap"
	"github.com/tandem-mesh/tandem/internal/netns"
)

// clusterYAML is the cluster measured: Services, EndpointSlices and
// TrafficPolicies, read and translated as `agent config -f` does.
//
//go:embed cluster.yaml
var clusterYAML []byte

// workEnv passes the parent's work directory (which holds the xDS socket
// named in the gRPC bootstrap) to the run in the network namespace.
const workEnv = "TANDEM_BALANCE_WORK"

type options struct {
	binDir      string
	calls       int
	concurrency int
	runs        int
	warmup      int
	delay       time.Duration
	jsonPath    string
	experiments bool
	envoy       string // path of an envoy binary; empty: no Envoy row
}

func main() {
	self, _ := os.Executable()
	var o options
	flag.StringVar(&o.binDir, "bin-dir", filepath.Dir(self), "directory holding the greeter-server binary")
	flag.IntVar(&o.calls, "calls", 10000, "calls measured in each run of each mode")
	flag.IntVar(&o.concurrency, "concurrency", 16, "calls the client keeps in flight")
	flag.IntVar(&o.runs, "runs", 3, "runs of each mode; the table pools their calls")
	flag.IntVar(&o.warmup, "warmup", 1000, "calls made on each new client before measuring")
	flag.DurationVar(&o.delay, "delay", 20*time.Millisecond, "extra time the slow server takes for every call")
	flag.StringVar(&o.jsonPath, "json", filepath.Join("bin", "balance.json"), "file the results are written to as JSON")
	flag.BoolVar(&o.experiments, "experiments", true, "also measure the other settings a TrafficPolicy offers the proxyless client (choice count, outlier detection)")
	flag.Parse()
	if err := o.check(); err != nil {
		fmt.Fprintf(os.Stderr, "balance: %v\n", err)
		os.Exit(2)
	}
	o.envoy, _ = exec.LookPath("envoy")
	if !netns.InChild() {
		os.Exit(inNamespace())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, o, os.Getenv(workEnv))
	switch {
	case ctx.Err() != nil:
		fmt.Fprintln(os.Stderr, "balance: interrupted; every server it started has been stopped")
		os.Exit(130)
	case err != nil:
		fmt.Fprintf(os.Stderr, "balance: %v\n", err)
		os.Exit(1)
	}
}

func (o options) check() error {
	var errs []error
	if flag.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected argument %q: balance takes flags only", flag.Arg(0)))
	}
	for name, v := range map[string]int{"--calls": o.calls, "--concurrency": o.concurrency, "--runs": o.runs} {
		if v < 1 {
			errs = append(errs, fmt.Errorf("%s %d: want 1 or more", name, v))
		}
	}
	if o.warmup < 0 {
		errs = append(errs, fmt.Errorf("--warmup %d: want 0 or more", o.warmup))
	}
	if o.delay <= 0 {
		errs = append(errs, fmt.Errorf("--delay %v: want a positive duration, like 20ms", o.delay))
	}
	if _, err := os.Stat(filepath.Join(o.binDir, "greeter-server")); err != nil {
		errs = append(errs, fmt.Errorf("--bin-dir %s: no greeter-server binary (go build -o %s/greeter-server ./examples/greeter/cmd/greeter-server): %w",
			o.binDir, o.binDir, err))
	}
	return errors.Join(errs...)
}

// inNamespace runs the benchmark again in a network namespace of its own,
// so the servers' addresses and the cluster-IP rules never touch this
// machine's network. grpc-go reads its xDS bootstrap when the process
// starts, so the socket it names is chosen here.
func inNamespace() int {
	if err := netns.Available(); err != nil {
		fmt.Fprintf(os.Stderr, "balance: the servers run in a network namespace of their own, which needs root or unprivileged user namespaces: %v\n", err)
		return 1
	}
	work, err := os.MkdirTemp("", "tandem-balance-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "balance: %v\n", err)
		return 1
	}
	defer os.RemoveAll(work)
	boot, err := bootstrap.GRPC(bootstrap.GRPCOptions{NodeID: clientNode, Cluster: namespace, XDSSocket: filepath.Join(work, "xds.sock")})
	if err != nil {
		fmt.Fprintf(os.Stderr, "balance: %v\n", err)
		return 1
	}
	code, err := netns.Rerun([]string{"GRPC_XDS_BOOTSTRAP_CONFIG=" + boot, workEnv + "=" + work}, os.Args[1:]...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "balance: %v\n", err)
		return 1
	}
	return code
}
