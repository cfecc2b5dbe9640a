package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/tandem-mesh/tandem/internal/bootstrap"
	"github.com/tandem-mesh/tandem/internal/capture"
	"github.com/tandem-mesh/tandem/internal/childproc"
	"github.com/tandem-mesh/tandem/internal/netns"
	"github.com/tandem-mesh/tandem/internal/wellknown"
	"github.com/tandem-mesh/tandem/internal/xds"
	"github.com/tandem-mesh/tandem/internal/xds/server"
)

// measureEnvoy runs the default Service through an Envoy sidecar as an
// injected pod does: the pod's capture rules send the client's connection
// to the cluster IP into Envoy, Envoy runs as the proxy user with the
// sidecar's bootstrap and gets the sidecar translation of the cluster over
// ADS, and balances every call. It reports whether Envoy was measured.
func measureEnvoy(ctx context.Context, o options, c *cluster, procs *childproc.Group, work string, results map[string]*result) (bool, error) {
	if !netns.CanSwitchUser() {
		fmt.Fprintf(os.Stderr, "  envoy is on PATH, but Envoy must run as user %d, which a user namespace of one user cannot: run as root to measure it\n", wellknown.ProxyUID)
		return false, nil
	}
	// Envoy, as the proxy user, reaches the socket through the work directory.
	runDir := filepath.Join(work, "run")
	if err := os.Chmod(work, 0o755); err != nil {
		return false, err
	}
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return false, err
	}
	socket := filepath.Join(runDir, "xds.sock")
	res, errs := xds.Translate(c.in, xds.Sidecar)
	if len(errs) > 0 {
		return false, fmt.Errorf("translating cluster.yaml for the sidecar: %v", errors.Join(errs...))
	}
	srv := server.New(server.Options{Logger: discardLogger()})
	srv.Publish(res)
	lis, err := server.Listen(socket)
	if err != nil {
		return false, err
	}
	serveCtx, stopServing := context.WithCancel(ctx)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(serveCtx, lis)
	}()
	defer func() { stopServing(); <-served }()

	rules, err := capture.Build(capture.DefaultConfig())
	if err != nil {
		return false, err
	}
	if err := rules.Apply(); err != nil {
		return false, fmt.Errorf("capture rules: %w", err)
	}
	defer capture.Remove()

	boot, err := bootstrap.EnvoyJSON(bootstrap.EnvoyOptions{NodeID: clientNode, Cluster: namespace, XDSSocket: socket})
	if err != nil {
		return false, err
	}
	cmd := exec.CommandContext(ctx, o.envoy, "--config-yaml", boot, "--disable-hot-restart", "--log-level", "warn")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: wellknown.ProxyUID, Gid: wellknown.ProxyGID}}
	envoy, err := procs.Start("envoy", work, cmd)
	if err != nil {
		return false, err
	}
	// Ready once Envoy has ACKed its listeners and clusters, as the agent's
	// readiness is.
	for deadline := time.Now().Add(60 * time.Second); !srv.Ready(); time.Sleep(50 * time.Millisecond) {
		if done, err := envoy.Exited(); done {
			return false, fmt.Errorf("envoy exited (%v):\n%s", err, envoy.Tail(20))
		}
		if time.Now().After(deadline) {
			return false, fmt.Errorf("envoy has not ACKed its listeners and clusters after 60s:\n%s", envoy.Tail(20))
		}
	}
	start := time.Now()
	for range o.runs {
		if err := measure(ctx, o, envoyMode, c.services[envoyMode.service], results); err != nil {
			return false, err
		}
	}
	fmt.Fprintf(os.Stderr, "  Envoy sidecar: %d runs done in %.0fs\n", o.runs, time.Since(start).Seconds())
	return true, nil
}
