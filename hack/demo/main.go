// Command demo runs the seed experiment on this machine (make demo): a real
// control plane, the real injector and agent, the greeter example, and the
// same gRPC client without and with Tandem.
package main

import (
	"context"
	"errors"
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
	flag.Parse()

	if !netns.InChild() {
		if err := netns.Available(); err != nil {
			fmt.Printf("Note: %v.\nRunning the control-plane part only: injection is shown, traffic is not.\n", err)
			os.Exit(run(*binDir, *requests, false))
		}
		// The data plane gets a network namespace of its own: pod addresses,
		// cluster-IP rules and capture never touch this machine's network,
		// and they vanish with the namespace when the demo ends.
		signal.Ignore(syscall.SIGINT, syscall.SIGTERM) // the child, in our process group, handles them
		err := netns.Reexec(os.Stdout, os.Stderr, os.Args[1:]...)
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			os.Exit(exit.ExitCode())
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "demo:", err)
			os.Exit(1)
		}
		return
	}
	os.Exit(run(*binDir, *requests, true))
}

func run(binDir string, requests int, dataPlane bool) int {
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
