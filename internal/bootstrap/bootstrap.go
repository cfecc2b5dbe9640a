// Package bootstrap builds the static start-up configuration of the two xDS
// clients the agent serves: Envoy's bootstrap and gRPC's xDS bootstrap JSON.
// The injector renders both into the pod spec, so nothing has to be written
// to disk before a client starts and no start-up order can race.
package bootstrap

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tandem-mesh/tandem/internal/wellknown"
)

// EnvoyOptions describe one Envoy sidecar.
type EnvoyOptions struct {
	// NodeID identifies the proxy to the agent, conventionally
	// "<pod>.<namespace>". Envoy's --service-node flag overrides it, which
	// is how a pod template (whose pod name is not yet known) sets it.
	NodeID string
	// Cluster is the node's cluster, conventionally the pod's namespace.
	Cluster string
	// XDSSocket is the agent's Unix socket; wellknown.XDSSocket when empty.
	XDSSocket string
	// AdminPort is Envoy's admin port on 127.0.0.1; wellknown.ProxyAdminPort when 0.
	AdminPort uint32
}

// Envoy returns the bootstrap of a sidecar Envoy: admin on 127.0.0.1, and
// every listener and cluster over ADS from the agent on its Unix socket.
func Envoy(o EnvoyOptions) (*bootstrapv3.Bootstrap, error) {
	if o.NodeID == "" {
		return nil, fmt.Errorf("envoy bootstrap: node id is empty")
	}
	if o.XDSSocket == "" {
		o.XDSSocket = wellknown.XDSSocket
	}
	if !strings.HasPrefix(o.XDSSocket, "/") {
		return nil, fmt.Errorf("envoy bootstrap: xDS socket %q is not an absolute path", o.XDSSocket)
	}
	if o.AdminPort == 0 {
		o.AdminPort = wellknown.ProxyAdminPort
	}
	// The agent speaks gRPC, which needs HTTP/2 to the xDS cluster.
	h2, err := anypb.New(&httpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
					Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
				},
			},
		},
	})
	if err != nil {
		return nil, err
	}
	ads := &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
	b := &bootstrapv3.Bootstrap{
		Node: &corev3.Node{Id: o.NodeID, Cluster: o.Cluster},
		Admin: &bootstrapv3.Admin{
			Address: socketAddress("127.0.0.1", o.AdminPort),
		},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &corev3.ApiConfigSource{
				ApiType:             corev3.ApiConfigSource_GRPC,
				TransportApiVersion: corev3.ApiVersion_V3,
				GrpcServices: []*corev3.GrpcService{{
					TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
						EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: wellknown.XDSClusterName},
					},
				}},
				SetNodeOnFirstMessageOnly: true,
			},
			LdsConfig: ads,
			CdsConfig: ads,
		},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{
			Clusters: []*clusterv3.Cluster{{
				Name:                 wellknown.XDSClusterName,
				ConnectTimeout:       durationpb.New(time.Second),
				ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
				TypedExtensionProtocolOptions: map[string]*anypb.Any{
					"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": h2,
				},
				LoadAssignment: &endpointv3.ClusterLoadAssignment{
					ClusterName: wellknown.XDSClusterName,
					Endpoints: []*endpointv3.LocalityLbEndpoints{{
						LbEndpoints: []*endpointv3.LbEndpoint{{
							HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
								Endpoint: &endpointv3.Endpoint{Address: &corev3.Address{
									Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: o.XDSSocket}},
								}},
							},
						}},
					}},
				},
			}},
		},
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("envoy bootstrap: %w", err)
	}
	return b, nil
}

// EnvoyJSON is Envoy's bootstrap as compact JSON, for `envoy --config-yaml`
// (JSON is YAML) on the proxy container's command line.
func EnvoyJSON(o EnvoyOptions) (string, error) {
	b, err := Envoy(o)
	if err != nil {
		return "", err
	}
	out, err := protojson.MarshalOptions{}.Marshal(b)
	if err != nil {
		return "", err
	}
	// protojson varies its spacing between builds on purpose; compact it so
	// injected pods are byte-for-byte reproducible.
	var compact bytes.Buffer
	if err := json.Compact(&compact, out); err != nil {
		return "", err
	}
	return compact.String(), nil
}

func socketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       ip,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// GRPCOptions describe one proxyless gRPC application.
type GRPCOptions struct {
	// NodeID identifies the application to the agent ("<pod>.<namespace>").
	NodeID string
	// Cluster is the node's cluster, conventionally the pod's namespace.
	Cluster string
	// XDSSocket is the agent's Unix socket; wellknown.XDSSocket when empty.
	XDSSocket string
}

// GRPC returns the JSON for GRPC_XDS_BOOTSTRAP_CONFIG: one insecure xDS
// server, the agent, over its Unix socket.
func GRPC(o GRPCOptions) (string, error) {
	if o.NodeID == "" {
		return "", fmt.Errorf("grpc bootstrap: node id is empty")
	}
	if o.XDSSocket == "" {
		o.XDSSocket = wellknown.XDSSocket
	}
	if !strings.HasPrefix(o.XDSSocket, "/") {
		return "", fmt.Errorf("grpc bootstrap: xDS socket %q is not an absolute path", o.XDSSocket)
	}
	type creds struct {
		Type string `json:"type"`
	}
	type server struct {
		ServerURI      string   `json:"server_uri"`
		ChannelCreds   []creds  `json:"channel_creds"`
		ServerFeatures []string `json:"server_features"`
	}
	type node struct {
		ID      string `json:"id"`
		Cluster string `json:"cluster,omitempty"`
	}
	doc := struct {
		XDSServers []server `json:"xds_servers"`
		Node       node     `json:"node"`
	}{
		XDSServers: []server{{
			ServerURI:      "unix://" + o.XDSSocket,
			ChannelCreds:   []creds{{Type: "insecure"}},
			ServerFeatures: []string{"xds_v3"},
		}},
		Node: node{ID: o.NodeID, Cluster: o.Cluster},
	}
	out, err := json.Marshal(doc)
	return string(out), err
}
