package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tandem-mesh/tandem/examples/greeter"
	"github.com/tandem-mesh/tandem/internal/xds"
)

func TestPercentileIsNearestRank(t *testing.T) {
	var sorted []time.Duration
	for i := 1; i <= 10000; i++ {
		sorted = append(sorted, time.Duration(i))
	}
	for q, want := range map[float64]time.Duration{0.5: 5000, 0.99: 9900, 0.999: 9990, 1: 10000, 0: 1} {
		if got := percentile(sorted, q); got != want {
			t.Errorf("percentile(1..10000, %v) = %d, want %d", q, got, want)
		}
	}
	if got := percentile([]time.Duration{7}, 0.99); got != 7 {
		t.Errorf("percentile of one value = %d, want it", got)
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("percentile of nothing = %d, want 0", got)
	}
}

// The rows of the table are named after policies: cluster.yaml must give
// each mode's Service exactly that policy, over the pods the table's
// columns name.
func TestClusterYAMLGivesEachModeItsPolicy(t *testing.T) {
	c, err := readCluster()
	if err != nil {
		t.Fatal(err)
	}
	res, errs := xds.Translate(c.in, xds.Proxyless)
	if len(errs) > 0 {
		t.Fatalf("translating cluster.yaml: %v", errs)
	}
	if _, errs := xds.Translate(c.in, xds.Sidecar); len(errs) > 0 {
		t.Fatalf("translating cluster.yaml for the sidecar: %v", errs)
	}
	clusters := map[string]*clusterv3.Cluster{}
	for _, r := range res.Clusters {
		cl := r.(*clusterv3.Cluster)
		clusters[cl.GetName()] = cl
	}
	type want struct {
		lb     clusterv3.Cluster_LbPolicy
		choice uint32 // 0: the client's default
		pods   []string
		eject  bool
	}
	slow := []string{slowPod, "greeter-fast-1", "greeter-fast-2"}
	wants := map[string]want{
		"floor":                     {lb: clusterv3.Cluster_LEAST_REQUEST, pods: []string{twinPod, "greeter-fast-1", "greeter-fast-2"}},
		"clusterip":                 {lb: clusterv3.Cluster_LEAST_REQUEST, pods: slow},
		"round-robin":               {lb: clusterv3.Cluster_ROUND_ROBIN, pods: slow},
		"default":                   {lb: clusterv3.Cluster_LEAST_REQUEST, pods: slow},
		"envoy":                     {lb: clusterv3.Cluster_LEAST_REQUEST, pods: slow},
		"choice-count-3":            {lb: clusterv3.Cluster_LEAST_REQUEST, choice: 3, pods: slow},
		"choice-count-5":            {lb: clusterv3.Cluster_LEAST_REQUEST, choice: 5, pods: slow},
		"choice-count-10":           {lb: clusterv3.Cluster_LEAST_REQUEST, choice: 10, pods: slow},
		"outlier-detection":         {lb: clusterv3.Cluster_LEAST_REQUEST, pods: slow, eject: true},
		"outlier-detection-timeout": {lb: clusterv3.Cluster_LEAST_REQUEST, pods: slow, eject: true},
	}
	all := slices.Concat(modes, []mode{envoyMode}, experiments)
	if len(all) != len(wants) {
		t.Fatalf("%d modes, %d expected: update this test with the new mode", len(all), len(wants))
	}
	for _, m := range all {
		w := wants[m.key]
		svc := c.services[m.service]
		if !slices.Equal(svc.pods, w.pods) {
			t.Errorf("%s: Service %s has pods %v, want %v", m.key, m.service, svc.pods, w.pods)
		}
		cl := clusters[xds.ClusterName(namespace, m.service, int32(svc.clusterIP.Port()))]
		if cl == nil {
			t.Errorf("%s: no cluster for Service %s", m.key, m.service)
			continue
		}
		if cl.GetLbPolicy() != w.lb || cl.GetLeastRequestLbConfig().GetChoiceCount().GetValue() != w.choice {
			t.Errorf("%s: Service %s is balanced by %v, choice count %d; want %v, %d", m.key, m.service,
				cl.GetLbPolicy(), cl.GetLeastRequestLbConfig().GetChoiceCount().GetValue(), w.lb, w.choice)
		}
		if (cl.GetOutlierDetection() != nil) != w.eject {
			t.Errorf("%s: Service %s has outlier detection %v, want it: %v", m.key, m.service, cl.GetOutlierDetection(), w.eject)
		}
	}
}

func TestLoadCountsAnswersAndFailures(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	greeter.Register(g, &greeter.Server{Hostname: "pod-a"})
	go g.Serve(lis)
	defer g.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	lat, counts, err := load(context.Background(), conn, 50, 4)
	if err != nil {
		t.Fatal(err)
	}
	if len(lat) != 50 || slices.Contains(lat, 0) {
		t.Fatalf("%d latencies, some zero: %v; want 50 measured", len(lat), lat)
	}
	if len(counts) != 1 || counts["pod-a"] != 50 {
		t.Fatalf("counts = %v, want 50 for pod-a", counts)
	}

	g.Stop()
	_, counts, err = load(context.Background(), conn, 20, 4)
	if err == nil || !strings.Contains(err.Error(), "of 20") {
		t.Fatalf("load on a stopped server: error %v, want the first failed call named", err)
	}
	if counts[failedCall] != 20 {
		t.Fatalf("counts = %v, want 20 failed calls", counts)
	}
}

func TestWriteJSONKeysModesSlowFirst(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bin", "balance.json")
	r := &result{pods: []string{slowPod, "greeter-fast-1", "greeter-fast-2"}, counts: map[string]int{}}
	r.add([]time.Duration{time.Millisecond, 2 * time.Millisecond, 21 * time.Millisecond},
		map[string]int{slowPod: 1, "greeter-fast-1": 2, failedCall: 1})
	if err := writeJSON(path, []mode{{key: "default"}}, map[string]*result{"default": r}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]map[string]any
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"shares": []any{1.0, 2.0, 0.0}, "p50_ms": 2.0, "p99_ms": 21.0, "p999_ms": 21.0, "failed": 1.0}
	if len(got) != 1 || !equalJSON(got["default"], want) {
		t.Fatalf("balance.json = %s, want {\"default\": %v}", data, want)
	}
}

func equalJSON(a, b map[string]any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}
