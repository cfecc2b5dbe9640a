package xds

import (
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestValidate(t *testing.T) {
	badNested := apiListener(testService("demo", "greeter", nil, protoHTTP2).ports[0])
	// An HTTP connection manager without stat_prefix is invalid; ValidateAll
	// on the listener alone does not look inside its Any.
	if err := badNested.ValidateAll(); err != nil {
		t.Fatalf("precondition: listener itself valid: %v", err)
	}
	badNested.ApiListener.ApiListener = typed(&hcmv3.HttpConnectionManager{})

	unknown := apiListener(testService("demo", "greeter", nil, protoHTTP2).ports[0])
	unknown.ApiListener.ApiListener = &anypb.Any{TypeUrl: "type.googleapis.com/example.Unknown"}

	wrongMap := cluster(testService("ns", "s", []string{"10.96.0.1"}, protoHTTP2).ports[0], Sidecar)
	wrongMap.TypedExtensionProtocolOptions[httpProtocolOptionsKey] = typed(&hcmv3.HttpConnectionManager{})

	cases := []struct {
		r    types.Resource
		want []string
	}{
		{&clusterv3.Cluster{Name: "", ConnectTimeout: durationpb.New(0)}, []string{"Cluster", "Name: value length must be at least 1"}},
		{&endpointv3.ClusterLoadAssignment{ClusterName: "c", Endpoints: []*endpointv3.LocalityLbEndpoints{{LoadBalancingWeight: wrapperspb.UInt32(0)}}},
			[]string{`ClusterLoadAssignment "c"`, "LoadBalancingWeight: value must be greater than or equal to 1"}},
		{badNested, []string{`Listener "greeter.demo.svc.cluster.local:8000"`, "http_connection_manager.v3.HttpConnectionManager", "StatPrefix"}},
		{unknown, []string{`Listener "greeter.demo.svc.cluster.local:8000"`, "example.Unknown"}},
		{wrongMap, []string{"Cluster", "HttpConnectionManager", "StatPrefix"}},
		{&listenerv3.Listener{Name: "l", ListenerFilters: []*listenerv3.ListenerFilter{{Name: "f", ConfigType: &listenerv3.ListenerFilter_TypedConfig{
			TypedConfig: typed(structpb.NewNullValue())}}}}, nil},
	}
	for i, c := range cases {
		err := Validate(c.r)
		if c.want == nil {
			if err != nil {
				t.Errorf("case %d: valid resource refused: %v", i, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("case %d: invalid resource accepted", i)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("case %d: error %q does not mention %q", i, err, w)
			}
		}
	}
}
