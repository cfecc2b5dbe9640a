// Command demo runs the seed experiment on this machine (make demo): a real
// control plane, the real injector and agent, the greeter example, and the
// same gRPC client without and with Tandem.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/tandem-mesh/tandem/internal/demo"
	"github.com/tandem-mesh/tandem/internal/netns"
)

func main() {
	self, _ := os.Executable()
	binDir := flag.String("bin-dir", filepath.Dir(self), "directory holding the injector, agent and greeter-client binaries")
	requests := flag.Int("requests", 12, "requests per run")
	injection := flag.String("injection", demo.InjectionWebhook, "how pods are injected: webhook (the injector's admission webhook) or policy (admission policies, no webhook)")
	flag.Parse()
	if *injection != demo.InjectionWebhook && *injection != demo.InjectionPolicy {
		fmt.Fprintf(os.Stderr, "demo: flag --injection=%q: accepted: webhook or policy\n", *injection)
		os.Exit(2)
	}

	if !netns.InChild() {
		if err := netns.Available(); err != nil {
			fmt.Printf("Note: %v.\nRunning the control-plane part only: injection is shown, traffic is not.\n", err)
			os.Exit(run(*binDir, *requests, *injection, false))
		}
		// The data plane gets a network namespace of its own: pod addresses,
		// cluster-IP rules and capture never touch this machine's network,
		// and they vanish with the namespace when the demo ends.
		code, err := netns.Rerun(nil, os.Args[1:]...)
		if err != nil {
			fmt.Fprintln(os.Stderr, "demo:", err)
			os.Exit(1)
		}
		os.Exit(code)
	}
	os.Exit(run(*binDir, *requests, *injection, true))
}

func run(binDir string, requests int, injection string, dataPlane bool) int {
	// The narration is the output; the control plane's library logs are not.
	ctrllog.SetLogger(logr.Discard())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	envoy, _ := exec.LookPath("envoy")
	_, err := demo.Run(ctx, demo.Options{
		Out:              os.Stdout,
		BinDir:           binDir,
		DirectRequests:   requests,
		BalancedRequests: requests,
		DataPlane:        dataPlane,
		Envoy:            envoy,
		Injection:        injection,
	})
	if ctx.Err() != nil {
		fmt.Println("\nInterrupted: every process the demo started has been stopped and its files removed.")
		return 130
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "\ndemo failed:", err)
		return 1
	}
	return 0
}
