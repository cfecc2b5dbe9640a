package bootstrap

import (
	"encoding/json"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/tandem-mesh/tandem/internal/wellknown"
)

func TestEnvoyBootstrapReachesAgentOverUnixSocket(t *testing.T) {
	b, err := Envoy(EnvoyOptions{NodeID: "greeter-0.demo", Cluster: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	if got := b.GetNode().GetId(); got != "greeter-0.demo" {
		t.Errorf("node id = %q", got)
	}
	admin := b.GetAdmin().GetAddress().GetSocketAddress()
	if admin.GetAddress() != "127.0.0.1" || admin.GetPortValue() != 15000 {
		t.Errorf("admin listens on %s:%d, want 127.0.0.1:15000", admin.GetAddress(), admin.GetPortValue())
	}
	ads := b.GetDynamicResources().GetAdsConfig()
	if n := len(ads.GetGrpcServices()); n != 1 {
		t.Fatalf("ADS has %d gRPC services, want 1", n)
	}
	if c := ads.GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName(); c != wellknown.XDSClusterName {
		t.Errorf("ADS cluster = %q", c)
	}
	if b.GetDynamicResources().GetLdsConfig().GetAds() == nil || b.GetDynamicResources().GetCdsConfig().GetAds() == nil {
		t.Error("listeners and clusters must come over ADS")
	}
	clusters := b.GetStaticResources().GetClusters()
	if len(clusters) != 1 || clusters[0].GetName() != wellknown.XDSClusterName {
		t.Fatalf("static clusters = %v", clusters)
	}
	pipe := clusters[0].GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetPipe()
	if pipe.GetPath() != "/var/run/tandem/xds.sock" {
		t.Errorf("xDS cluster reaches %q, want the agent's socket /var/run/tandem/xds.sock", pipe.GetPath())
	}
	if _, ok := clusters[0].GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]; !ok {
		t.Error("xDS cluster lacks HTTP/2 protocol options; gRPC needs HTTP/2")
	}
}

func TestEnvoyJSONRoundTripsAndIsStable(t *testing.T) {
	opts := EnvoyOptions{NodeID: "n.ns", Cluster: "ns", XDSSocket: "/tmp/x.sock", AdminPort: 19000}
	a, err := EnvoyJSON(opts)
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(a, "\n\t") || strings.Contains(a, ": ") {
		t.Errorf("bootstrap JSON is not compact: %s", a)
	}
	var back bootstrapv3.Bootstrap
	if err := protojson.Unmarshal([]byte(a), &back); err != nil {
		t.Fatalf("Envoy could not parse the bootstrap: %v", err)
	}
	want, _ := Envoy(opts)
	if !proto.Equal(&back, want) {
		t.Error("bootstrap JSON does not decode to the bootstrap it was made from")
	}
	b, _ := EnvoyJSON(opts)
	if a != b {
		t.Error("bootstrap JSON differs between two calls")
	}
}

func TestBootstrapRejectsBadOptions(t *testing.T) {
	for name, o := range map[string]EnvoyOptions{
		"empty node id":   {},
		"relative socket": {NodeID: "n", XDSSocket: "xds.sock"},
	} {
		if _, err := Envoy(o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := GRPC(GRPCOptions{}); err == nil {
		t.Error("gRPC bootstrap with empty node id: no error")
	}
	if _, err := GRPC(GRPCOptions{NodeID: "n", XDSSocket: "rel"}); err == nil {
		t.Error("gRPC bootstrap with a relative socket: no error")
	}
}

func TestGRPCBootstrap(t *testing.T) {
	s, err := GRPC(GRPCOptions{NodeID: "client-0.demo", Cluster: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		XDSServers []struct {
			ServerURI    string `json:"server_uri"`
			ChannelCreds []struct {
				Type string `json:"type"`
			} `json:"channel_creds"`
		} `json:"xds_servers"`
		Node struct {
			ID string `json:"id"`
		} `json:"node"`
	}
	if err := json.Unmarshal([]byte(s), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.XDSServers) != 1 || doc.XDSServers[0].ServerURI != "unix:///var/run/tandem/xds.sock" {
		t.Errorf("xds_servers = %+v", doc.XDSServers)
	}
	if len(doc.XDSServers[0].ChannelCreds) != 1 || doc.XDSServers[0].ChannelCreds[0].Type != "insecure" {
		t.Errorf("channel_creds = %+v", doc.XDSServers[0].ChannelCreds)
	}
	if doc.Node.ID != "client-0.demo" {
		t.Errorf("node id = %q", doc.Node.ID)
	}
}
