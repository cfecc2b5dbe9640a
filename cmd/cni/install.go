//go:build linux

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tandem-mesh/tandem/internal/cniinstall"
)

// runInstall is the DaemonSet's command: install, keep installed, and
// uninstall on SIGTERM or SIGINT.
func runInstall(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tandem-cni install", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o cniinstall.Options
	fs.StringVar(&o.BinDir, "cni-bin-dir", "/host/opt/cni/bin", "the node's CNI binary `directory`, as mounted here")
	fs.StringVar(&o.NetDir, "cni-net-dir", "/host/etc/cni/net.d", "the node's CNI configuration `directory`, as mounted here")
	fs.StringVar(&o.HostNetDir, "host-cni-net-dir", "/etc/cni/net.d", "the same configuration `directory` as the node's container runtime sees it")
	fs.StringVar(&o.KubeconfigName, "kubeconfig-name", "tandem-cni.kubeconfig", "`file` name of the plugin's kubeconfig in the configuration directory")
	fs.StringVar(&o.TokenDir, "token-dir", "/var/run/secrets/kubernetes.io/serviceaccount", "`directory` of the service account token and ca.crt the plugin's kubeconfig carries")
	fs.StringVar(&o.APIServer, "api-server", "", "`URL` of the API server for the plugin (default: from KUBERNETES_SERVICE_HOST and _PORT)")
	fs.DurationVar(&o.Resync, "resync", 30*time.Second, "how often to recheck the installation and the token besides file events")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 || o.Resync <= 0 {
		fmt.Fprintf(stderr, "tandem-cni install: takes flags only, and --resync must be positive\n")
		return 2
	}
	if o.APIServer == "" {
		var err error
		if o.APIServer, err = cniinstall.APIServerFromEnv(); err != nil {
			fmt.Fprintf(stderr, "tandem-cni install: %v\n", err)
			return 2
		}
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "tandem-cni install: finding the plugin binary: %v\n", err)
		return 1
	}
	o.Binary = self
	o.Log = slog.New(slog.NewTextHandler(stdout, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := cniinstall.Run(ctx, o); err != nil {
		fmt.Fprintf(stderr, "tandem-cni install: %v\n", err)
		return 1
	}
	return 0
}
