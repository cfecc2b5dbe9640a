package xds

import (
	"net/netip"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// typed packs a message into an Any. Marshalling a generated message fails
// only on a string that is not UTF-8, and every string here is built from
// names the model has checked, so a failure is a bug.
func typed(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic("xds: packing " + string(m.ProtoReflect().Descriptor().FullName()) + ": " + err.Error())
	}
	return a
}

// adsSource says "over the same ADS stream as this resource".
func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

func socketAddress(ap netip.AddrPort) *corev3.Address {
	return socketAddresses([]netip.AddrPort{ap})[0]
}

// socketAddresses makes many addresses with one allocation per message
// type rather than four per address.
func socketAddresses(aps []netip.AddrPort) []*corev3.Address {
	n := len(aps)
	var (
		out   = make([]*corev3.Address, n)
		addrs = make([]corev3.Address, n)
		wraps = make([]corev3.Address_SocketAddress, n)
		socks = make([]corev3.SocketAddress, n)
		ports = make([]corev3.SocketAddress_PortValue, n)
	)
	for i, ap := range aps {
		ports[i].PortValue = uint32(ap.Port())
		socks[i].Address = ap.Addr().String()
		socks[i].PortSpecifier = &ports[i]
		wraps[i].SocketAddress = &socks[i]
		addrs[i].Address = &wraps[i]
		out[i] = &addrs[i]
	}
	return out
}

// duration converts a duration; zero stays zero (Envoy: disabled).
func duration(d time.Duration) *durationpb.Duration { return durationpb.New(d) }
