package discovery

import (
	"context"
	"errors"
	"log/slog"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"

	pb "github.com/tandem-mesh/tandem/internal/discovery/discoverypb"
	"github.com/tandem-mesh/tandem/internal/discovery/resource"
)

// nodeZones serves each Node's zone, by the Node's name, from a watch of
// the Nodes' metadata only: a Node object's status is most of its bytes,
// and only one label is read.
type nodeZones struct {
	cache    *cachev3.LinearCache
	informer cache.SharedIndexInformer // nil without a metadata client
}

var nodesResource = schema.GroupVersionResource{Version: "v1", Resource: "nodes"}

func newNodeZones(client metadata.Interface, log *slog.Logger) (*nodeZones, error) {
	n := &nodeZones{cache: cachev3.NewLinearCache(resource.NodeTypeURL)}
	if client == nil {
		return n, nil
	}
	n.informer = metadatainformer.NewFilteredMetadataInformer(client, nodesResource, "", 0, cache.Indexers{}, nil).Informer()
	if err := n.informer.SetTransform(stripNode); err != nil {
		return nil, err
	}
	set := func(obj any) {
		if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
			n.set(m.Name, m.Labels[corev1.LabelTopologyZone])
		}
	}
	if _, err := n.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    set,
		UpdateFunc: func(_, cur any) { set(cur) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
				n.cache.DeleteResource(m.Name)
			}
		},
	}); err != nil {
		return nil, err
	}
	if err := n.informer.SetWatchErrorHandler(func(_ *cache.Reflector, err error) {
		log.Warn("watch failed; serving the last state and retrying with backoff", "resource", "nodes", "error", err)
	}); err != nil {
		return nil, err
	}
	return n, nil
}

// stripNode keeps a Node's name and zone label.
func stripNode(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	out := &metav1.PartialObjectMetadata{TypeMeta: m.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{Name: m.Name, UID: m.UID, ResourceVersion: m.ResourceVersion}}
	if z, ok := m.Labels[corev1.LabelTopologyZone]; ok {
		out.Labels = map[string]string{corev1.LabelTopologyZone: z}
	}
	return out, nil
}

// set stores a Node's zone; the cache notifies only when it changed.
func (n *nodeZones) set(name, zone string) {
	if old, ok := n.cache.GetResources()[name].(*pb.Node); ok && old.Zone == zone {
		return
	}
	n.cache.UpdateResource(name, &pb.Node{Name: name, Zone: zone})
}

// run watches the Nodes until ctx ends.
func (n *nodeZones) run(ctx context.Context) {
	if n.informer != nil {
		n.informer.RunWithContext(ctx)
	}
}

// synced reports whether every Node has been loaded.
func (n *nodeZones) synced() bool { return n.informer == nil || n.informer.HasSynced() }

// CreateDeltaWatch serves Nodes by name only: an agent asks for its own.
func (n *nodeZones) CreateDeltaWatch(req *cachev3.DeltaRequest, sub cachev3.Subscription, out chan cachev3.DeltaResponse) (func(), error) {
	if sub.IsWildcard() {
		return nil, errors.New("discovery serves Nodes by name only: subscribe to the pod's own Node")
	}
	cancel, err := n.cache.CreateDeltaWatch(req, sub, out)
	if cancel == nil {
		cancel = func() {}
	}
	return cancel, err
}

// byType routes each stream's watches to the cache of their type.
type byType struct {
	services *Cache
	nodes    *nodeZones
}

func (b byType) CreateDeltaWatch(req *cachev3.DeltaRequest, sub cachev3.Subscription, out chan cachev3.DeltaResponse) (func(), error) {
	if req.GetTypeUrl() == resource.NodeTypeURL {
		return b.nodes.CreateDeltaWatch(req, sub, out)
	}
	return b.services.CreateDeltaWatch(req, sub, out)
}

func (b byType) CreateWatch(r *cachev3.Request, sub cachev3.Subscription, out chan cachev3.Response) (func(), error) {
	return b.services.CreateWatch(r, sub, out)
}
