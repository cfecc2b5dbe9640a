package server

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/runtime/protoiface"
	"google.golang.org/protobuf/types/known/emptypb"
)

// compact holds a served resource in its wire form. The Go structs of the
// listeners, routes, clusters and endpoints of 1,000 Services take about
// 12 MiB of heap, their wire form a tenth of that, and an agent runs in
// every pod. go-control-plane sends what it holds through proto.Marshal,
// which writes a message's unknown fields as they are: an empty message
// carrying the resource's bytes as unknown fields goes out byte for byte as
// the resource itself. Its Marshal method returns those bytes without a
// copy, so the cache's marshaled form of it costs nothing either.
type compact struct {
	emptypb.Empty
	name string
}

func (c *compact) ProtoReflect() protoreflect.Message {
	return compactMessage{Message: c.Empty.ProtoReflect(), c: c}
}

// compactMessage is an empty message's reflection with a Marshal of its own.
type compactMessage struct {
	protoreflect.Message
	c *compact
}

func (compactMessage) ProtoMethods() *protoiface.Methods { return &compactMethods }

var compactMethods = protoiface.Methods{
	Flags: protoiface.SupportMarshalDeterministic, // the bytes were marshaled deterministically
	Marshal: func(in protoiface.MarshalInput) (protoiface.MarshalOutput, error) {
		wire := in.Message.(compactMessage).c.wire()
		if len(in.Buf) == 0 {
			// Shared, never written: capped so an append copies.
			return protoiface.MarshalOutput{Buf: slices.Clip(wire)}, nil
		}
		return protoiface.MarshalOutput{Buf: append(in.Buf, wire...)}, nil
	},
}

// newCompact serializes res deterministically, so equal resources have
// equal bytes.
func newCompact(name string, res types.Resource) (*compact, error) {
	b, err := cachev3.MarshalResource(res)
	if err != nil {
		return nil, fmt.Errorf("serializing %s: %w", name, err)
	}
	c := &compact{name: name}
	c.Empty.ProtoReflect().SetUnknown(b)
	return c, nil
}

// GetName names the resource for go-control-plane.
func (c *compact) GetName() string { return c.name }

func (c *compact) wire() []byte { return c.Empty.ProtoReflect().GetUnknown() }

func (c *compact) equal(o *compact) bool { return bytes.Equal(c.wire(), o.wire()) }

// decode returns the resource as its own type again.
func (c *compact) decode(typeURL string) (types.Resource, error) {
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(typeURL)
	if err != nil {
		return nil, err
	}
	m := mt.New().Interface()
	if err := proto.Unmarshal(c.wire(), m); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", c.name, err)
	}
	return m, nil
}
