package xds

import (
	"fmt"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// validator is implemented by every generated Envoy message (protoc-gen-validate).
type validator interface{ ValidateAll() error }

// Validate checks one resource against Envoy's API constraints: ValidateAll
// on the message, and on every typed_config (Any) inside it, which
// ValidateAll alone leaves unchecked; an Any of a type this program does not
// know is an error too. The error names the resource's type and name.
func Validate(r types.Resource) error {
	if r == nil {
		return fmt.Errorf("nil resource")
	}
	if err := validateMessage(r); err != nil {
		return &ObjectError{Kind: resourceKind(r), Name: resourceName(r), Err: err}
	}
	return nil
}

func validateMessage(m proto.Message) error {
	if v, ok := m.(validator); ok {
		if err := v.ValidateAll(); err != nil {
			return err
		}
	}
	return validateAnys(m.ProtoReflect())
}

var anyName = (&anypb.Any{}).ProtoReflect().Descriptor().FullName()

// validateAnys finds the Any fields below m, unpacks and validates them.
func validateAnys(m protoreflect.Message) error {
	if m.Descriptor().FullName() == anyName {
		a := m.Interface().(*anypb.Any)
		inner, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("typed config %q: %w", a.GetTypeUrl(), err)
		}
		if err := validateMessage(inner); err != nil {
			return fmt.Errorf("typed config %q: %w", a.GetTypeUrl(), err)
		}
		return nil
	}
	for _, fd := range anyFields(m.Descriptor()) {
		if !m.Has(fd) {
			continue
		}
		v := m.Get(fd)
		var err error
		switch {
		case fd.IsMap():
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				err = validateAnys(mv.Message())
				return err == nil
			})
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len() && err == nil; i++ {
				err = validateAnys(l.Get(i).Message())
			}
		default:
			err = validateAnys(v.Message())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// fieldsWithAny caches, per message type, the fields in which an Any can
// occur, so the walk skips the many that cannot (addresses, durations).
var fieldsWithAny sync.Map // protoreflect.FullName -> []protoreflect.FieldDescriptor

func anyFields(md protoreflect.MessageDescriptor) []protoreflect.FieldDescriptor {
	if v, ok := fieldsWithAny.Load(md.FullName()); ok {
		return v.([]protoreflect.FieldDescriptor)
	}
	var out []protoreflect.FieldDescriptor
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		sub := fd.Message()
		if fd.IsMap() {
			sub = fd.MapValue().Message()
		}
		if sub != nil && reachAny(sub, map[protoreflect.FullName]bool{}) {
			out = append(out, fd)
		}
	}
	fieldsWithAny.Store(md.FullName(), out)
	return out
}

// holdsAny caches, per message type, whether an Any can occur in it.
var holdsAny sync.Map // protoreflect.FullName -> bool

// reachAny searches the message graph. A type met again on the current
// path counts as holding an Any: wrong only in being cautious.
func reachAny(md protoreflect.MessageDescriptor, onPath map[protoreflect.FullName]bool) bool {
	name := md.FullName()
	if v, ok := holdsAny.Load(name); ok {
		return v.(bool)
	}
	if name == anyName || onPath[name] {
		return true
	}
	onPath[name] = true
	defer delete(onPath, name)
	found := false
	fields := md.Fields()
	for i := 0; i < fields.Len() && !found; i++ {
		fd := fields.Get(i)
		if fd.IsMap() {
			fd = fd.MapValue()
		}
		if sub := fd.Message(); sub != nil {
			found = reachAny(sub, onPath)
		}
	}
	holdsAny.Store(name, found)
	return found
}

// resourceName is the xDS name of a resource.
func resourceName(r types.Resource) string {
	switch r := r.(type) {
	case *endpointv3.ClusterLoadAssignment:
		return r.GetClusterName()
	case types.ResourceWithName:
		return r.GetName()
	}
	return ""
}

func resourceKind(r types.Resource) string {
	switch r.(type) {
	case *listenerv3.Listener:
		return "Listener"
	case *routev3.RouteConfiguration:
		return "RouteConfiguration"
	case *clusterv3.Cluster:
		return "Cluster"
	case *endpointv3.ClusterLoadAssignment:
		return "ClusterLoadAssignment"
	}
	return string(r.ProtoReflect().Descriptor().Name())
}
