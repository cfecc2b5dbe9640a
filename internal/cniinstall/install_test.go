package cniinstall

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/tandem-mesh/tandem/internal/testutil/poll"
)

// TestRunKeepsThePluginInstalled runs the installer on directories
// standing in for the node's: it chains the entry, puts it back when the
// primary CNI rewrites its file, follows a token rotation, and on the
// end of its context leaves the conflist with its original bytes.
func TestRunKeepsThePluginInstalled(t *testing.T) {
	dir := t.TempDir()
	o := Options{
		BinDir: filepath.Join(dir, "bin"), NetDir: filepath.Join(dir, "net.d"), HostNetDir: "/etc/cni/net.d",
		Binary: filepath.Join(dir, "plugin"), KubeconfigName: "tandem-cni.kubeconfig",
		TokenDir: filepath.Join(dir, "sa"), APIServer: "https://10.96.0.1:443",
		Resync: 50 * time.Millisecond, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, d := range []string{o.BinDir, o.NetDir, o.TokenDir} {
		must(t, os.MkdirAll(d, 0o755))
	}
	must(t, os.WriteFile(o.Binary, []byte("plugin binary"), 0o755))
	must(t, os.WriteFile(filepath.Join(o.TokenDir, "token"), []byte("token-1\n"), 0o600))
	must(t, os.WriteFile(filepath.Join(o.TokenDir, "ca.crt"), []byte("ca"), 0o600))
	orig, err := os.ReadFile("testdata/conflist/flannel.conflist")
	must(t, err)
	conflist := filepath.Join(o.NetDir, "10-flannel.conflist")
	must(t, os.WriteFile(conflist, orig, 0o644))
	// A later file by name is not the one the runtime loads.
	other := []byte(`{"name":"x","plugins":[{"type":"bridge"}]}`)
	must(t, os.WriteFile(filepath.Join(o.NetDir, "99-other.conflist"), other, 0o644))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o) }()

	installed, err := os.ReadFile("testdata/conflist/flannel.installed")
	must(t, err)
	waitFile(t, conflist, installed)
	if b, _ := os.ReadFile(filepath.Join(o.BinDir, "tandem-cni")); string(b) != "plugin binary" {
		t.Errorf("the plugin binary was not copied: %q", b)
	}
	checkKubeconfig(t, filepath.Join(o.NetDir, o.KubeconfigName), "token-1")

	// The primary rewrites its file without the entry: it comes back.
	must(t, os.WriteFile(conflist, orig, 0o644))
	waitFile(t, conflist, installed)

	must(t, os.WriteFile(filepath.Join(o.TokenDir, "token"), []byte("token-2\n"), 0o600))
	poll.Until(t, 5*time.Second, "the kubeconfig follows the rotated token", func() bool {
		cfg, err := clientcmd.LoadFromFile(filepath.Join(o.NetDir, o.KubeconfigName))
		return err == nil && cfg.AuthInfos["tandem-cni"].Token == "token-2"
	})

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("uninstall: %v", err)
	}
	if b, _ := os.ReadFile(conflist); !bytes.Equal(b, orig) {
		t.Errorf("after uninstall the conflist is not the original:\n%s", b)
	}
	if b, _ := os.ReadFile(filepath.Join(o.NetDir, "99-other.conflist")); !bytes.Equal(b, other) {
		t.Errorf("the installer touched a file the runtime does not load:\n%s", b)
	}
	if _, err := os.Stat(filepath.Join(o.NetDir, o.KubeconfigName)); !os.IsNotExist(err) {
		t.Errorf("the kubeconfig is still there: %v", err)
	}
}

func TestEnsureWithoutConflist(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "token"), []byte("t"), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "ca.crt"), []byte("ca"), 0o600))
	o := Options{NetDir: dir, HostNetDir: dir, KubeconfigName: "tandem-cni.kubeconfig", TokenDir: dir,
		APIServer: "https://10.96.0.1:443", Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if err := Ensure(o); err == nil || !bytes.Contains([]byte(err.Error()), []byte("the primary CNI has not written its conflist")) {
		t.Errorf("Ensure in an empty directory: %v", err)
	}
}

func waitFile(t *testing.T, path string, want []byte) {
	t.Helper()
	poll.Until(t, 5*time.Second, path+" holds the installed conflist", func() bool {
		b, err := os.ReadFile(path)
		return err == nil && bytes.Equal(b, want)
	})
}

func checkKubeconfig(t *testing.T, path, token string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("kubeconfig %s: %v, mode %v; want 0600", path, err, fi.Mode())
	}
	cfg, err := clientcmd.LoadFromFile(path)
	must(t, err)
	rc, err := clientcmd.NewDefaultClientConfig(*cfg, nil).ClientConfig()
	must(t, err)
	if rc.Host != "https://10.96.0.1:443" || rc.BearerToken != token || string(rc.CAData) != "ca" {
		t.Errorf("kubeconfig: host %s, token %q, CA %q", rc.Host, rc.BearerToken, rc.CAData)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
