package cniinstall

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/fsnotify/fsnotify"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Options say where the installer works. The directories are the node's,
// as mounted into the installer's container; HostNetDir is the same
// configuration directory as the node's container runtime sees it, for the
// kubeconfig path written into the conflist entry.
type Options struct {
	BinDir, NetDir, HostNetDir string
	// Binary is the plugin to copy (the installer's own executable).
	Binary string
	// KubeconfigName is the file written into NetDir.
	KubeconfigName string
	// TokenDir holds the service account's token and ca.crt; APIServer is
	// the https URL the node reaches the API server at.
	TokenDir, APIServer string
	// Resync rechecks everything this often besides file events, and
	// rewrites the kubeconfig when the token has been rotated.
	Resync time.Duration
	Log    *slog.Logger
}

// Run installs the plugin and keeps it installed until ctx ends, then
// takes the conflist entry and the kubeconfig out. The binary stays:
// runtimes delete the pods created under the entry with the configuration
// they were created with, which still names tandem-cni.
func Run(ctx context.Context, o Options) error {
	if err := installBinary(o); err != nil {
		return err
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching %s: %w", o.NetDir, err)
	}
	defer w.Close()
	if err := w.Add(o.NetDir); err != nil {
		return fmt.Errorf("watching %s: %w", o.NetDir, err)
	}
	if err := Ensure(o); err != nil {
		return err
	}
	tick := time.NewTicker(o.Resync)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return Uninstall(o)
		case ev := <-w.Events:
			if filepath.Base(ev.Name) == o.KubeconfigName {
				continue
			}
		case err := <-w.Errors:
			o.Log.Warn("watching the CNI configuration directory", "error", err)
		case <-tick.C:
		}
		// A primary CNI may write its file in several steps: settle first.
		drain(w.Events, 100*time.Millisecond)
		if err := Ensure(o); err != nil {
			o.Log.Error("keeping tandem-cni installed", "error", err)
		}
	}
}

func drain(events <-chan fsnotify.Event, quiet time.Duration) {
	for {
		select {
		case <-events:
		case <-time.After(quiet):
			return
		}
	}
}

// Ensure writes the kubeconfig if it changed and puts the entry last in
// the conflist the runtime loads (the first configuration file by name).
func Ensure(o Options) error {
	kc, err := kubeconfig(o)
	if err != nil {
		return err
	}
	kcPath := filepath.Join(o.NetDir, o.KubeconfigName)
	if old, err := os.ReadFile(kcPath); err != nil || !bytes.Equal(old, kc) {
		if err := writeAtomic(kcPath, kc, 0o600); err != nil {
			return err
		}
		o.Log.Info("wrote the kubeconfig", "path", kcPath)
	}
	path, err := primaryConfig(o.NetDir)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, changed, err := Insert(data, Entry(filepath.Join(o.HostNetDir, o.KubeconfigName)))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if !changed {
		return nil
	}
	if err := writeAtomic(path, out, 0o644); err != nil {
		return err
	}
	o.Log.Info("chained tandem-cni into the CNI configuration", "path", path)
	return nil
}

// Uninstall takes the entry out of every configuration file and removes
// the kubeconfig.
func Uninstall(o Options) error {
	entries, err := os.ReadDir(o.NetDir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if e.IsDir() || !IsConfigFile(e.Name()) {
			continue
		}
		path := filepath.Join(o.NetDir, e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out, changed, err := Remove(data)
		if err != nil || !changed {
			continue // not a conflist, or not ours to touch
		}
		if err := writeAtomic(path, out, 0o644); err != nil {
			errs = append(errs, err)
			continue
		}
		o.Log.Info("removed tandem-cni from the CNI configuration", "path", path)
	}
	if err := os.Remove(filepath.Join(o.NetDir, o.KubeconfigName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// primaryConfig is the configuration file the container runtime uses: the
// first by name.
func primaryConfig(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && IsConfigFile(e.Name()) {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return "", fmt.Errorf("no CNI configuration in %s yet: the primary CNI has not written its conflist", dir)
	}
	slices.Sort(names)
	return filepath.Join(dir, names[0]), nil
}

// kubeconfig holds the service account's current token and CA, embedded:
// the plugin runs on the host, where the installer's token file is not.
func kubeconfig(o Options) ([]byte, error) {
	token, err := os.ReadFile(filepath.Join(o.TokenDir, "token"))
	if err != nil {
		return nil, fmt.Errorf("reading the service account token: %w", err)
	}
	ca, err := os.ReadFile(filepath.Join(o.TokenDir, "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("reading the cluster CA: %w", err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["cluster"] = &clientcmdapi.Cluster{Server: o.APIServer, CertificateAuthorityData: ca}
	cfg.AuthInfos["tandem-cni"] = &clientcmdapi.AuthInfo{Token: string(bytes.TrimSpace(token))}
	cfg.Contexts["tandem-cni"] = &clientcmdapi.Context{Cluster: "cluster", AuthInfo: "tandem-cni"}
	cfg.CurrentContext = "tandem-cni"
	return clientcmd.Write(*cfg)
}

// APIServerFromEnv is the in-cluster address of the API server.
func APIServerFromEnv() (string, error) {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return "", errors.New("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set: not running in a pod; pass --api-server")
	}
	return "https://" + net.JoinHostPort(host, port), nil
}

func installBinary(o Options) error {
	src, err := os.Open(o.Binary)
	if err != nil {
		return err
	}
	defer src.Close()
	data, err := io.ReadAll(src)
	if err != nil {
		return err
	}
	dst := filepath.Join(o.BinDir, PluginType)
	if old, err := os.ReadFile(dst); err == nil && bytes.Equal(old, data) {
		return nil
	}
	if err := writeAtomic(dst, data, 0o755); err != nil {
		return err
	}
	o.Log.Info("installed the plugin", "path", dst)
	return nil
}

// writeAtomic replaces path in one rename, so a runtime reading it never
// sees half a file.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
