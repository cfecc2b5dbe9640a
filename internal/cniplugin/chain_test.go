//go:build linux

package cniplugin_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/google/nftables"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/tandem-mesh/tandem/internal/capture"
	"github.com/tandem-mesh/tandem/internal/netns"
	"github.com/tandem-mesh/tandem/internal/testutil/netnstest"
	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// The chain under test: the reference ptp plugin with host-local IPAM, as
// a node's primary network, then tandem-cni. Every binary is built from Go
// modules, and tandem-cni reads pods from a real API server with the
// credentials of a user bound to config/cni's ClusterRole only.
const conflistTemplate = `{
  "cniVersion": "1.1.0",
  "name": "podnet",
  "plugins": [
    {"type": "ptp", "ipam": {"type": "host-local", "subnet": "10.244.1.0/24", "dataDir": %q, "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "tandem-cni", "kubeconfig": %q}
  ]
}`

const (
	serviceAddr = "10.96.0.10:80" // a ClusterIP: only capture makes it answer
	podNS       = "shop"
)

type chain struct {
	t        *testing.T
	cni      *libcni.CNIConfig
	list     *libcni.NetworkConfigList
	binDir   string
	cs       kubernetes.Interface
	confText string
}

func TestChain(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipped: the chain creates network interfaces and namespaces, which needs root")
	}
	// Built before entering the namespace, where the module proxy is out
	// of reach.
	var binDir string
	if !netns.InChild() {
		binDir = buildChainPlugins(t)
	}
	if !netnstest.RunTest(t, chainBinEnv+"="+binDir) {
		return
	}
	c := newChain(t, os.Getenv(chainBinEnv))

	tandem := c.pod("tandem", true, "--exclude-outbound-ports=8080")
	plain := c.pod("plain", false)

	t.Run("ADD installs the pod's capture", func(t *testing.T) {
		res := c.add(t, tandem)
		ip := podIP(t, res)
		rs := buildRuleset(t, "--exclude-outbound-ports=8080")
		c.in(t, tandem, func() error { return rs.Check() })
		expectArrivals(t, tandem.path,
			arrival{dst: serviceAddr, proxied: true},
			arrival{dst: netip.AddrPortFrom(ip, 9090).String(), proxied: true},
			arrival{dst: netip.AddrPortFrom(ip, 8080).String()},                // excluded port
			arrival{dst: netip.AddrPortFrom(ip, 9090).String(), asProxy: true}, // the proxy's own
		)
		// What tandem-validate checks in the pod passes.
		c.in(t, tandem, func() error {
			cfg, err := capture.ConfigFromArgs([]string{"--exclude-outbound-ports=8080"})
			if err != nil {
				return err
			}
			_, err = capture.VerifyRedirect(cfg, 3*time.Second)
			return err
		})
		// ADD again (a runtime retrying) replaces the table: one copy.
		c.addDirect(t, tandem, res)
		c.in(t, tandem, func() error { return rs.Check() })
	})
	t.Run("CHECK notices a removed rule", func(t *testing.T) {
		if err := c.cni.CheckNetworkList(context.Background(), c.list, tandem.rt); err != nil {
			t.Fatalf("CHECK of an intact pod: %v", err)
		}
		c.in(t, tandem, func() error { return deleteRule(5) })
		err := c.cni.CheckNetworkList(context.Background(), c.list, tandem.rt)
		if err == nil || !strings.Contains(err.Error(), "the capture rules of pod shop/tandem are not as installed") {
			t.Fatalf("CHECK after a rule was removed: %v, want the difference named", err)
		}
	})
	t.Run("DEL removes the table", func(t *testing.T) {
		if err := c.cni.DelNetworkList(context.Background(), c.list, tandem.rt); err != nil {
			t.Fatal(err)
		}
		c.in(t, tandem, func() error {
			if n, found, err := capture.Installed(); found || err != nil {
				return fmt.Errorf("after DEL: %d rules, table found %v, error %v; want no table", n, found, err)
			}
			return nil
		})
		// DEL is repeated by runtimes; the second finds nothing to do.
		if err := c.cni.DelNetworkList(context.Background(), c.list, tandem.rt); err != nil {
			t.Fatalf("a second DEL: %v", err)
		}
	})
	t.Run("a pod that is not Tandem's passes through", func(t *testing.T) {
		res := c.add(t, plain)
		ip := podIP(t, res)
		c.in(t, plain, func() error {
			if _, found, err := capture.Installed(); found || err != nil {
				return fmt.Errorf("a plain pod got a capture table (error %v)", err)
			}
			return nil
		})
		expectArrivals(t, plain.path, arrival{dst: netip.AddrPortFrom(ip, 9090).String()})
		c.in(t, plain, func() error {
			if _, err := capture.VerifyRedirect(capture.DefaultConfig(), 3*time.Second); !errors.Is(err, capture.ErrNotRedirected) {
				return fmt.Errorf("tandem-validate's check in a plain pod: %v, want ErrNotRedirected", err)
			}
			return nil
		})
		// tandem-cni's own answer is the previous result, unchanged.
		prev, _ := json.Marshal(res)
		out := c.addDirect(t, plain, res)
		if !jsonEqual(t, prev, out) {
			t.Errorf("tandem-cni changed the previous result of a plain pod:\n%s\nwant\n%s", out, prev)
		}
		if err := c.cni.CheckNetworkList(context.Background(), c.list, plain.rt); err != nil {
			t.Errorf("CHECK of a plain pod: %v", err)
		}
	})
	t.Run("errors name the problem", func(t *testing.T) {
		missing := c.sandbox("gone", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "gone", Namespace: podNS, UID: "0000"}})
		_, err := c.cni.AddNetworkList(context.Background(), c.list, missing.rt)
		if err == nil || !strings.Contains(err.Error(), "reading pod shop/gone from the API server") {
			t.Errorf("ADD of a pod the API server does not have: %v", err)
		}
		noKubeconfig := strings.Replace(c.confText, `"kubeconfig"`, `"kubeconfig-path"`, 1)
		list, err := libcni.ConfListFromBytes([]byte(noKubeconfig))
		if err != nil {
			t.Fatal(err)
		}
		other := c.sandbox("other", plain.pod)
		_, err = c.cni.AddNetworkList(context.Background(), list, other.rt)
		if err == nil || !strings.Contains(err.Error(), `the plugin configuration has no "kubeconfig"`) {
			t.Errorf("ADD with a configuration without kubeconfig: %v", err)
		}
		if err := c.cni.GetStatusNetworkList(context.Background(), c.list); err != nil {
			t.Errorf("STATUS with a good configuration: %v", err)
		}
		if err := c.cni.GetStatusNetworkList(context.Background(), list); err == nil {
			t.Error("STATUS without a kubeconfig succeeded")
		}
	})
}

// chainBinEnv passes the plugins' directory into the test's namespace.
const chainBinEnv = "TANDEM_TEST_CNI_BIN"

// buildChainPlugins builds tandem-cni and the primary plugins it chains after.
func buildChainPlugins(t *testing.T) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	binDir := filepath.Join(t.TempDir(), "bin")
	build := func(args ...string) {
		cmd := exec.Command("go", append([]string{"build"}, args...)...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %v: %v\n%s", args, err, out)
		}
	}
	build("-o", filepath.Join(binDir, "tandem-cni"), "./cmd/cni")
	build("-o", binDir+"/", "github.com/containernetworking/plugins/plugins/main/ptp", "github.com/containernetworking/plugins/plugins/ipam/host-local")
	return binDir
}

func newChain(t *testing.T, binDir string) *chain {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	// The test's namespace is the node's: its loopback carries the API server.
	if err := netns.Setup(nil, nil); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := &chain{t: t, binDir: binDir}

	kubeconfig := filepath.Join(dir, "tandem-cni.kubeconfig")
	// Only loopback here: the API server needs an address to advertise,
	// and no endpoints for the kubernetes Service, which nothing here uses.
	env, cfg := testenv.Start(t, testenv.Options{APIServerFlags: map[string]string{
		"advertise-address":        "127.0.0.1",
		"endpoint-reconciler-type": "none",
	}})
	admin, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.cs = admin
	writeNodeCredentials(t, env, admin, root, kubeconfig)
	if _, err := c.cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: podNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	c.confText = fmt.Sprintf(conflistTemplate, filepath.Join(dir, "ipam"), kubeconfig)
	if c.list, err = libcni.ConfListFromBytes([]byte(c.confText)); err != nil {
		t.Fatal(err)
	}
	c.cni = libcni.NewCNIConfigWithCacheDir([]string{c.binDir}, filepath.Join(dir, "cache"), nil)
	return c
}

// writeNodeCredentials makes a user bound to config/cni's ClusterRole and
// nothing else, and writes its kubeconfig, as the installer does with its
// service account.
func writeNodeCredentials(t *testing.T, env *envtest.Environment, admin *kubernetes.Clientset, root, path string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "config", "cni", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole
	if err := yaml.Unmarshal(data, &role); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := admin.RbacV1().ClusterRoles().Create(ctx, &role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const user = "tandem-cni-node"
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "tandem-cni"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	u, err := env.ControlPlane.AddUser(envtest.User{Name: user}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := u.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
}

type sandbox struct {
	pod  *corev1.Pod
	path string
	rt   *libcni.RuntimeConf
}

// pod creates a pod on the API server and a sandbox (network namespace)
// for it. A Tandem pod carries what the injector writes in CNI mode.
func (c *chain) pod(name string, tandem bool, captureArgs ...string) *sandbox {
	c.t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: podNS},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
	}
	if tandem {
		pod.Annotations = map[string]string{wellknown.StatusAnnotation: `{"template":"envoy","nativeSidecar":true,"configHash":"0","initContainers":["tandem-validate"]}`}
		pod.Spec.InitContainers = []corev1.Container{{Name: wellknown.ValidateContainerName, Image: "agent", Args: captureArgs}}
	}
	created, err := c.cs.CoreV1().Pods(podNS).Create(context.Background(), pod, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	return c.sandbox(name, created)
}

func (c *chain) sandbox(id string, pod *corev1.Pod) *sandbox {
	c.t.Helper()
	held, err := netns.Hold()
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { _ = held.Close() })
	path := held.Path
	c.in(c.t, &sandbox{path: path}, func() error { return netns.Setup(nil, nil) }) // loopback up, as runtimes do
	return &sandbox{pod: pod, path: path, rt: &libcni.RuntimeConf{
		ContainerID: "sandbox-" + id,
		NetNS:       path,
		IfName:      "eth0",
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", pod.Namespace},
			{"K8S_POD_NAME", pod.Name},
			{"K8S_POD_UID", string(pod.UID)},
		},
	}}
}

func (c *chain) add(t *testing.T, s *sandbox) *types100.Result {
	t.Helper()
	res, err := c.cni.AddNetworkList(context.Background(), c.list, s.rt)
	if err != nil {
		t.Fatalf("ADD of pod %s: %v", s.pod.Name, err)
	}
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// addDirect runs tandem-cni's ADD alone with prev as its previous result,
// as the runtime does when it retries, and returns its output.
func (c *chain) addDirect(t *testing.T, s *sandbox, prev *types100.Result) []byte {
	t.Helper()
	var conf map[string]any
	if err := json.Unmarshal(c.list.Plugins[1].Bytes, &conf); err != nil {
		t.Fatal(err)
	}
	conf["name"], conf["cniVersion"], conf["prevResult"] = c.list.Name, c.list.CNIVersion, prev
	stdin, _ := json.Marshal(conf)
	args := &invoke.Args{Command: "ADD", ContainerID: s.rt.ContainerID, NetNS: s.path, IfName: "eth0", PluginArgs: s.rt.Args, Path: c.binDir}
	res, err := invoke.ExecPluginWithResult(context.Background(), filepath.Join(c.binDir, "tandem-cni"), stdin, args, nil)
	if err != nil {
		t.Fatalf("tandem-cni ADD of pod %s: %v", s.pod.Name, err)
	}
	out, _ := json.Marshal(res)
	return out
}

func (c *chain) in(t *testing.T, s *sandbox, fn func() error) {
	t.Helper()
	if err := netns.At(s.path, fn); err != nil {
		t.Fatal(err)
	}
}

func podIP(t *testing.T, r *types100.Result) netip.Addr {
	t.Helper()
	if len(r.IPs) == 0 {
		t.Fatalf("the chain's result has no IP: %+v", r)
	}
	ip, ok := netip.AddrFromSlice(r.IPs[0].Address.IP.To4())
	if !ok || !netip.MustParsePrefix("10.244.1.0/24").Contains(ip) {
		t.Fatalf("pod IP %v is not from the primary plugin's subnet", r.IPs[0].Address)
	}
	return ip
}

func buildRuleset(t *testing.T, args ...string) *capture.Ruleset {
	t.Helper()
	cfg, err := capture.ConfigFromArgs(args)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := capture.Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// arrival is one connection from inside the pod and where it must land:
// on the proxy port with its original destination, or where it was sent.
type arrival struct {
	dst              string
	proxied, asProxy bool
}

// expectArrivals dials from the pod's namespace at path: a server on the
// proxy port and on each destination port reports the port it accepted on
// and the original destination.
func expectArrivals(t *testing.T, path string, arrivals ...arrival) {
	t.Helper()
	ports := map[uint16]bool{wellknown.ProxyOutboundPort: true}
	for _, a := range arrivals {
		ports[netip.MustParseAddrPort(a.dst).Port()] = true
	}
	for port := range ports {
		var ln net.Listener
		err := netns.At(path, func() (err error) { ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port)); return err })
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				// A namespace without NAT rules tracks no original
				// destination: the connection's own address is it.
				orig, err := capture.OriginalDst(conn.(*net.TCPConn))
				if err != nil {
					local := conn.LocalAddr().(*net.TCPAddr).AddrPort()
					orig = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
				}
				fmt.Fprintf(conn, "%d %s\n", port, orig)
				conn.Close()
			}
		}()
	}
	for _, a := range arrivals {
		var line string
		dial := func() error {
			conn, err := net.DialTimeout("tcp", a.dst, 3*time.Second)
			if err != nil {
				return err
			}
			defer conn.Close()
			line, err = bufio.NewReader(conn).ReadString('\n')
			return err
		}
		err := netns.At(path, func() error {
			if a.asProxy {
				if err := netns.BecomeUser(wellknown.ProxyUID, wellknown.ProxyGID); err != nil {
					return err
				}
			}
			return dial()
		})
		want := fmt.Sprintf("%d %s\n", netip.MustParseAddrPort(a.dst).Port(), a.dst)
		if a.proxied {
			want = fmt.Sprintf("%d %s\n", wellknown.ProxyOutboundPort, a.dst)
		}
		if err != nil || line != want {
			t.Errorf("connection to %s (proxy's own: %v) got %q, %v; want %q", a.dst, a.asProxy, line, err, want)
		}
	}
}

// deleteRule removes the n-th rule of the capture chain, as an operator's
// `nft delete rule` would.
func deleteRule(n int) error {
	conn, err := nftables.New()
	if err != nil {
		return err
	}
	tbl := &nftables.Table{Name: capture.TableName, Family: nftables.TableFamilyINet}
	rules, err := conn.GetRules(tbl, &nftables.Chain{Name: capture.ChainName, Table: tbl})
	if err != nil || len(rules) < n {
		return fmt.Errorf("reading the rules: %d rules, %v", len(rules), err)
	}
	if err := conn.DelRule(rules[n-1]); err != nil {
		return err
	}
	return conn.Flush()
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}
