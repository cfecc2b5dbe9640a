package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/tandem-mesh/tandem/internal/agentstatus"
	"github.com/tandem-mesh/tandem/internal/testutil/kubeobj"
	"github.com/tandem-mesh/tandem/internal/testutil/poll"
	"github.com/tandem-mesh/tandem/internal/testutil/testenv"
	"github.com/tandem-mesh/tandem/internal/testutil/xdstest"
	"github.com/tandem-mesh/tandem/internal/xds"
)

func TestRunFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string // all in the message
	}{
		{[]string{"--log-level", "loud"}, []string{"--log-level", "loud", "debug, info, warn or error"}},
		{[]string{"--drain-duration", "-1s"}, []string{"--drain-duration", "-1s", "positive"}},
		{[]string{"--drain-duration", "soon"}, []string{"drain-duration", "soon"}},
		{[]string{"--watch-namespaces", "shop,Bad_NS"}, []string{"--watch-namespaces", "Bad_NS", "namespace names"}},
		{[]string{"--watch-namespaces", "shop,,pay"}, []string{"--watch-namespaces", `namespace ""`}},
		{[]string{"--health-addr", "15021"}, []string{"--health-addr", "15021", "[host]:port"}},
		{[]string{"--metrics-addr", ":99999"}, []string{"--metrics-addr", "99999", "0 to 65535"}},
		{[]string{"--xds-socket", "xds.sock"}, []string{"--xds-socket", "xds.sock", "absolute path"}},
		{[]string{"--envoy-admin", "127.0.0.1:15000"}, []string{"--envoy-admin", "127.0.0.1:15000", "http://"}},
		{[]string{"extra"}, []string{`"extra"`, "flags only"}},
		{[]string{"--discovery-address", "tandem-discovery"}, []string{"--discovery-address", "tandem-discovery", "host:port"}},
		{[]string{"--discovery-fallback-after", "0s"}, []string{"--discovery-fallback-after", "positive"}},
		{[]string{"--debug-addr", ":15004"}, []string{"--debug-addr", ":15004", "loopback"}},
		{[]string{"--debug-addr", "10.0.0.1:15004"}, []string{"--debug-addr", "10.0.0.1:15004", "loopback", "127.0.0.1:15004"}},
	} {
		var stderr bytes.Buffer
		if code := runMain(append([]string{"run"}, tc.args...), io.Discard, &stderr); code != 2 {
			t.Errorf("agent run %v: exit %d, want 2", tc.args, code)
		}
		for _, w := range tc.want {
			if !strings.Contains(stderr.String(), w) {
				t.Errorf("agent run %v: message %q lacks %q", tc.args, stderr.String(), w)
			}
		}
	}
}

func TestRunDefaultNodeID(t *testing.T) {
	t.Setenv("POD_NAME", "greeter-client-7d9")
	t.Setenv("POD_NAMESPACE", "demo")
	c, err := parseRunFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.nodeID != "greeter-client-7d9.demo" || c.socket != "/var/run/tandem/xds.sock" || c.healthAddr != ":15021" ||
		c.metricsAddr != ":15020" || c.debugAddr != "127.0.0.1:15004" || c.drain != 5*time.Second || c.proxyless || len(c.namespaces) != 0 {
		t.Fatalf("defaults = %+v", c)
	}
	if c.locality != (xds.Locality{Namespace: "demo"}) {
		t.Errorf("locality %+v without NODE_NAME and TANDEM_ZONE, want only the namespace, demo", c.locality)
	}
	// The injection sets them from the downward API.
	t.Setenv("NODE_NAME", "node-a")
	t.Setenv("TANDEM_ZONE", "zone-a")
	if c, err = parseRunFlags(nil, io.Discard); err != nil || c.locality != (xds.Locality{Node: "node-a", Zone: "zone-a", Namespace: "demo"}) {
		t.Errorf("locality %+v (%v), want node-a in zone-a, namespace demo, from the environment", c.locality, err)
	}
	if c, err = parseRunFlags([]string{"--node=node-b", "--zone=", "--namespace=shop"}, io.Discard); err != nil || c.locality != (xds.Locality{Node: "node-b", Namespace: "shop"}) {
		t.Errorf("flags: locality %+v (%v), want node-b, no zone, namespace shop", c.locality, err)
	}
}

// writeKubeconfig saves cfg as a kubeconfig file for --kubeconfig.
func writeKubeconfig(t *testing.T, cfg *rest.Config) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["test"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "test"}
	kc.CurrentContext = "test"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func get(addr, path string) (int, string) {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// fakeEnvoyAdmin records drain requests and serves statistics.
type fakeEnvoyAdmin struct {
	*httptest.Server
	mu     sync.Mutex
	drains []time.Time
}

func newFakeEnvoyAdmin(t *testing.T) *fakeEnvoyAdmin {
	f := &fakeEnvoyAdmin{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/stats/prometheus":
			io.WriteString(w, "# TYPE envoy_server_uptime gauge\nenvoy_server_uptime 42\n")
		case r.Method == http.MethodPost && r.URL.Path == "/drain_listeners" && r.URL.RawQuery == "graceful":
			f.mu.Lock()
			f.drains = append(f.drains, time.Now())
			f.mu.Unlock()
		default:
			http.Error(w, "unexpected admin call "+r.Method+" "+r.URL.String(), http.StatusNotFound)
		}
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeEnvoyAdmin) drainTimes() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.drains...)
}

type running struct {
	health, metrics, debug, socket string
	cancel                         context.CancelFunc
	done                           chan int
	stopped                        time.Time
}

func startRun(t *testing.T, kubeconfig, admin string, extra ...string) *running {
	t.Helper()
	r := &running{health: testenv.FreeAddr(t), metrics: testenv.FreeAddr(t), debug: testenv.FreeAddr(t), socket: filepath.Join(t.TempDir(), "xds.sock"), done: make(chan int, 1)}
	args := append([]string{"--kubeconfig", kubeconfig, "--xds-socket", r.socket, "--health-addr", r.health,
		"--metrics-addr", r.metrics, "--debug-addr", r.debug, "--envoy-admin", admin, "--node-id", "test-pod.test-ns", "--log-level", "debug"}, extra...)
	c, err := parseRunFlags(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	logs := &bytes.Buffer{}
	var mu sync.Mutex
	go func() {
		code := runAgent(ctx, c, writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logs.Write(p) }))
		r.stopped = time.Now()
		r.done <- code
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Error("agent run did not stop")
		}
		if t.Failed() {
			mu.Lock()
			t.Logf("agent logs:\n%s", logs.String())
			mu.Unlock()
		}
	})
	poll.Until(t, 30*time.Second, "/healthz", func() bool { code, _ := get(r.health, "/healthz"); return code == http.StatusOK })
	return r
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestRunServesEnvoyAndDrains(t *testing.T) {
	_, cfg := testenv.Start(t, testenv.Options{})
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := kube.CoreV1().Services("default").Create(ctx, kubeobj.Service("default", "greeter", "grpc", 50051, ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.DiscoveryV1().EndpointSlices("default").Create(ctx,
		kubeobj.EndpointSlice("default", "greeter-1", "greeter", "grpc", 50051, "198.51.100.1", "198.51.100.2"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	admin := newFakeEnvoyAdmin(t)
	r := startRun(t, writeKubeconfig(t, cfg), admin.URL, "--drain-duration", "1s")

	fi, err := os.Stat(r.socket)
	if err != nil || fi.Mode().Perm() != 0o666 {
		t.Fatalf("xDS socket: %v, mode %v; want mode 0666", err, fi.Mode())
	}
	// Not ready until Envoy has ACKed clusters and listeners.
	code, body := get(r.health, "/ready")
	if code != http.StatusServiceUnavailable {
		t.Fatalf("/ready before any ACK = %d %q, want 503", code, body)
	}
	conn, err := grpc.NewClient("unix://"+r.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	envoy := xdstest.NewSotW(t, conn)
	envoy.Subscribe(resource.ClusterType)
	cds := envoy.Recv(resource.ClusterType)
	cluster := xds.ClusterName("default", "greeter", 50051)
	found := false
	for _, n := range xdstest.Names(t, cds) {
		found = found || n == cluster
	}
	if !found {
		t.Fatalf("CDS %v lacks %s", xdstest.Names(t, cds), cluster)
	}
	envoy.ACK(cds)
	if code, body := get(r.health, "/ready"); code != http.StatusServiceUnavailable || !strings.Contains(body, "ACK") {
		t.Fatalf("/ready with clusters but no listeners ACKed = %d %q, want 503 naming the ACKs", code, body)
	}
	envoy.Subscribe(resource.ListenerType)
	envoy.ACK(envoy.Recv(resource.ListenerType))
	poll.Until(t, 30*time.Second, "/ready after the ACKs", func() bool { code, _ := get(r.health, "/ready"); return code == http.StatusOK })

	// The debug endpoint: the agent's report, and what it serves as
	// `agent config` prints it.
	code, body = get(r.debug, "/status")
	var st agentstatus.Agent
	if err := json.Unmarshal([]byte(body), &st); code != http.StatusOK || err != nil {
		t.Fatalf("/status = %d %q (%v)", code, body, err)
	}
	if st.Source != agentstatus.SourceAPIServer || st.Mode != "sidecar" || st.Discovery != nil || len(st.Proxies) != 1 ||
		st.Proxies[0].Node != xdstest.NodeID || len(st.Proxies[0].Exchanges) != 2 {
		t.Fatalf("/status = %+v; want the API server as source, no discovery, one proxy with clusters and listeners", st)
	}
	for _, e := range st.Proxies[0].Exchanges {
		if e.State() != agentstatus.StateSynced {
			t.Errorf("%s: %s, want synced: %+v", e.Type, e.State(), e)
		}
	}
	code, body = get(r.debug, "/config?kind=clusters")
	var doc map[string][]json.RawMessage
	if err := json.Unmarshal([]byte(body), &doc); code != http.StatusOK || err != nil || len(doc) != 1 || len(doc["clusters"]) == 0 ||
		!strings.Contains(body, `"name": "`+cluster+`"`) {
		t.Fatalf("/config?kind=clusters = %d %q (%v); want the clusters alone, %s among them", code, body, err, cluster)
	}
	if code, body := get(r.debug, "/config?kind=secrets"); code != http.StatusBadRequest || !strings.Contains(body, "listeners, routes, clusters, endpoints") {
		t.Errorf("/config?kind=secrets = %d %q, want 400 naming the kinds", code, body)
	}

	_, metrics := get(r.metrics, "/metrics")
	for _, want := range []string{
		`tandem_xds_acks_total{type="cluster"} 1`,
		`tandem_xds_acks_total{type="listener"} 1`,
		`tandem_xds_connected_clients 1`,
		`tandem_xds_cluster_endpoints{cluster="` + cluster + `"} 2`,
		`tandem_xds_pushes_total{type="cluster"} 1`,
		`tandem_agent_configuration_published 1`,
		`tandem_agent_envoy_stats_up 1`,
		`envoy_server_uptime 42`,
		`go_goroutines`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// SIGTERM: not ready at once, Envoy asked to drain, xDS served for the
	// drain period, then exit 0 with the socket removed.
	stop := time.Now()
	r.cancel()
	poll.Until(t, 30*time.Second, "/ready to report draining", func() bool {
		code, body := get(r.health, "/ready")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "draining")
	})
	// /ready flips before the drain request reaches Envoy's admin.
	poll.Until(t, 5*time.Second, "a graceful drain request to Envoy", func() bool { return len(admin.drainTimes()) > 0 })
	if d := admin.drainTimes(); len(d) != 1 {
		t.Fatalf("%d graceful drain requests to Envoy, want 1", len(d))
	}
	envoy.Quiet(200 * time.Millisecond) // the stream stays open during the drain
	select {
	case code := <-r.done:
		r.done <- code
		if code != 0 {
			t.Fatalf("exit code %d, want 0", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent run did not exit after the drain")
	}
	if took := r.stopped.Sub(stop); took < time.Second {
		t.Errorf("exited %v after SIGTERM, before the 1s drain period", took)
	}
	if _, err := os.Stat(r.socket); !os.IsNotExist(err) {
		t.Errorf("xDS socket left behind: %v", err)
	}
}

func TestRunProxylessReadyWithoutClients(t *testing.T) {
	_, cfg := testenv.Start(t, testenv.Options{})
	admin := newFakeEnvoyAdmin(t)
	r := startRun(t, writeKubeconfig(t, cfg), admin.URL, "--proxyless", "--drain-duration", "0s", "--watch-namespaces", "default,kube-system")
	poll.Until(t, 30*time.Second, "/ready once synced", func() bool { code, _ := get(r.health, "/ready"); return code == http.StatusOK })
	_, metrics := get(r.metrics, "/metrics")
	if strings.Contains(metrics, "envoy_") {
		t.Error("proxyless metrics include Envoy statistics")
	}
	r.cancel()
	if code := <-r.done; code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	r.done <- 0
	if len(admin.drainTimes()) != 0 {
		t.Error("proxyless agent asked an Envoy to drain")
	}
}

func TestRunRefusesUnusableSocketPath(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "xds.sock")
	if err := os.WriteFile(path, []byte("not a socket"), 0o644); err != nil {
		t.Fatal(err)
	}
	kc := filepath.Join(dir, "kubeconfig")
	os.WriteFile(kc, []byte("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\ncontexts: [{name: c, context: {cluster: c}}]\ncurrent-context: c\n"), 0o644)
	var stderr bytes.Buffer
	code := runMain([]string{"run", "--kubeconfig", kc, "--xds-socket", path, "--health-addr", testenv.FreeAddr(t), "--metrics-addr", testenv.FreeAddr(t)}, io.Discard, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "not a socket") {
		t.Fatalf("exit %d, stderr %q; want 1 and a message saying the path is not a socket", code, stderr.String())
	}
}
