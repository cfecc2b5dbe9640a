package discovery

import (
	"errors"
	"strconv"
	"strings"
	"sync"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	pb "github.com/tandem-mesh/tandem/internal/discovery/discoverypb"
	"github.com/tandem-mesh/tandem/internal/discovery/resource"
)

// Cache holds one resource per Service and answers delta watches. It
// exists beside go-control-plane's LinearCache because subscriptions name
// namespaces ("<namespace>/*") as well as single Services and everything
// ("*"), and because a change must reach the watches of its Service, its
// namespace and the wildcard ones only, without scanning the others.
//
// Versions are hashes of the resources' encoding: the same in every
// replica and across restarts, so a client resuming with the versions it
// holds is sent only what changed.
type Cache struct {
	mu sync.Mutex
	// seq numbers the changes; changes logs the latest ones, so that a
	// client's ACK is answered by looking at what changed since its last
	// response rather than at everything it follows.
	seq       uint64
	changes   []change
	entries   map[string]*entry            // by resource name
	byNS      map[string]map[string]*entry // namespace -> name -> entry
	wildcard  map[*watch]struct{}
	nsWatches map[string]map[*watch]struct{} // by namespace
	watches   map[string]map[*watch]struct{} // by resource name
}

type change struct {
	seq  uint64
	name string
}

// maxChanges bounds the change log; a client further behind is compared
// in full.
const maxChanges = 4096

// seqKey holds, in a subscription's map of returned versions, the change
// number its client is in step with. No resource name is empty-prefixed.
const seqKey = "\x00seq"

type entry struct {
	name, namespace string
	version         string
	res             *anypb.Any
	size            int
}

type watch struct {
	req  *cachev3.DeltaRequest
	sub  cachev3.Subscription
	out  chan cachev3.DeltaResponse
	keys []string // the index keys it is filed under: names and namespaces
}

// NewCache returns an empty cache.
func NewCache() *Cache {
	return &Cache{
		entries:   map[string]*entry{},
		byNS:      map[string]map[string]*entry{},
		wildcard:  map[*watch]struct{}{},
		nsWatches: map[string]map[*watch]struct{}{},
		watches:   map[string]map[*watch]struct{}{},
	}
}

// Set stores a Service's resource and notifies the watches that follow it;
// nothing happens when it is unchanged.
func (c *Cache) Set(r *pb.Service) error {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	if err != nil {
		return err
	}
	name := resource.Name(r.Namespace, r.Name)
	e := &entry{name: name, namespace: r.Namespace, version: resource.VersionOf(b),
		res: &anypb.Any{TypeUrl: resource.TypeURL, Value: b}, size: len(b)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.entries[name]; ok && old.version == e.version {
		return nil
	}
	c.entries[name] = e
	if c.byNS[e.namespace] == nil {
		c.byNS[e.namespace] = map[string]*entry{}
	}
	c.byNS[e.namespace][name] = e
	c.logChange(name)
	c.notify(name, e.namespace)
	return nil
}

// logChange numbers a change. Must hold c.mu.
func (c *Cache) logChange(name string) {
	c.seq++
	c.changes = append(c.changes, change{c.seq, name})
	if len(c.changes) > maxChanges {
		c.changes = append(c.changes[:0:0], c.changes[maxChanges/2:]...)
	}
}

// changedSince returns the names changed after change number seq, or ok
// false when the log does not reach back that far. Must hold c.mu.
func (c *Cache) changedSince(seq uint64) (names []string, ok bool) {
	if seq > c.seq || (len(c.changes) > 0 && c.changes[0].seq > seq+1) || (len(c.changes) == 0 && seq != c.seq) {
		return nil, false
	}
	seen := map[string]bool{}
	for i := len(c.changes) - 1; i >= 0 && c.changes[i].seq > seq; i-- {
		if n := c.changes[i].name; !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	return names, true
}

// Delete removes a Service's resource.
func (c *Cache) Delete(namespace, name string) {
	key := resource.Name(namespace, name)
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[key]; !ok {
		return
	}
	delete(c.entries, key)
	delete(c.byNS[namespace], key)
	if len(c.byNS[namespace]) == 0 {
		delete(c.byNS, namespace)
	}
	c.logChange(key)
	c.notify(key, namespace)
}

// Len is the number of resources held.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// notify answers the open watches following one resource. An open watch's
// client holds every other resource it follows at the current version, so
// the answer is this resource alone. Must hold c.mu.
func (c *Cache) notify(name, namespace string) {
	for _, set := range []map[*watch]struct{}{c.watches[name], c.nsWatches[namespace], c.wildcard} {
		for w := range set {
			if resp := c.respond(w, []string{name}, false); resp != nil {
				c.remove(w)
				w.out <- resp
			}
		}
	}
}

// follows reports whether a subscription covers a resource.
func follows(sub cachev3.Subscription, e *entry) bool {
	if sub.IsWildcard() {
		return true
	}
	subs := sub.SubscribedResources()
	if _, ok := subs[e.name]; ok {
		return true
	}
	_, ok := subs[resource.NamespaceName(e.namespace)]
	return ok
}

// respond computes the response of a watch over the given resource names
// (every name the subscription covers or the client holds when nil), or
// nil when there is nothing to send and no empty answer is due. Must hold
// c.mu.
func (c *Cache) respond(w *watch, names []string, evenIfEmpty bool) cachev3.DeltaResponse {
	known := w.sub.ReturnedResources()
	if names == nil {
		seen := map[string]bool{}
		add := func(n string) {
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
		if w.sub.IsWildcard() {
			for n := range c.entries {
				add(n)
			}
		} else {
			for s := range w.sub.SubscribedResources() {
				if ns, ok := strings.CutSuffix(s, "/*"); ok {
					for n := range c.byNS[ns] {
						add(n)
					}
				} else {
					add(s)
				}
			}
		}
		for n := range known {
			if n != seqKey {
				add(n)
			}
		}
	}
	resp := &discoverygrpc.DeltaDiscoveryResponse{TypeUrl: resource.TypeURL}
	next := map[string]string{}
	for _, n := range names {
		e, exists := c.entries[n]
		version, held := known[n]
		switch {
		case exists && follows(w.sub, e):
			if held && version == e.version {
				continue
			}
			resp.Resources = append(resp.Resources, &discoverygrpc.Resource{Name: n, Version: e.version, Resource: e.res})
			next[n] = e.version
		case held:
			resp.RemovedResources = append(resp.RemovedResources, n)
			next[n] = ""
		}
	}
	if len(next) == 0 && !evenIfEmpty {
		return nil
	}
	// The map of returned versions is updated in place rather than copied:
	// copying it for each response of each subscriber is most of the cost
	// of a change. The delta server reads it only while no watch of the
	// subscription is open, and this watch closes with this response.
	versions := known
	for n, v := range next {
		if v == "" {
			delete(versions, n)
		} else {
			versions[n] = v
		}
	}
	versions[seqKey] = strconv.FormatUint(c.seq, 10)
	return &cachev3.DeltaPassthroughResponse{DeltaRequest: w.req, NextVersionMap: versions, DeltaDiscoveryResponse: resp}
}

// CreateDeltaWatch answers at once when the client lacks something it
// follows, or on the first request of a stream (so a client knows it is in
// step even when nothing exists yet); otherwise it files the watch until a
// change.
func (c *Cache) CreateDeltaWatch(req *cachev3.DeltaRequest, sub cachev3.Subscription, out chan cachev3.DeltaResponse) (func(), error) {
	if req.GetTypeUrl() != resource.TypeURL {
		return nil, errors.New("discovery serves " + resource.TypeURL + " only, not " + req.GetTypeUrl())
	}
	w := &watch{req: req, sub: sub, out: out}
	c.mu.Lock()
	defer c.mu.Unlock()
	// A plain ACK of a client in step up to some change: only what changed
	// since can be missing.
	var names []string
	if req.GetResponseNonce() != "" && len(req.GetResourceNamesSubscribe())+len(req.GetResourceNamesUnsubscribe()) == 0 {
		if seq, err := strconv.ParseUint(sub.ReturnedResources()[seqKey], 10, 64); err == nil {
			if changed, ok := c.changedSince(seq); ok {
				names = changed
				if names == nil {
					names = []string{}
				}
			}
		}
	}
	if resp := c.respond(w, names, req.GetResponseNonce() == ""); resp != nil {
		out <- resp
		return func() {}, nil
	}
	if known := sub.ReturnedResources(); known != nil {
		known[seqKey] = strconv.FormatUint(c.seq, 10) // in step up to now
	}
	c.file(w)
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.remove(w)
	}, nil
}

// file indexes an open watch. Must hold c.mu.
func (c *Cache) file(w *watch) {
	if w.sub.IsWildcard() {
		c.wildcard[w] = struct{}{}
		return
	}
	for s := range w.sub.SubscribedResources() {
		idx, key := c.watches, s
		if ns, ok := strings.CutSuffix(s, "/*"); ok {
			idx, key = c.nsWatches, ns
		}
		if idx[key] == nil {
			idx[key] = map[*watch]struct{}{}
		}
		idx[key][w] = struct{}{}
		w.keys = append(w.keys, s)
	}
}

// remove drops an open watch from the indexes. Must hold c.mu.
func (c *Cache) remove(w *watch) {
	delete(c.wildcard, w)
	for _, s := range w.keys {
		idx, key := c.watches, s
		if ns, ok := strings.CutSuffix(s, "/*"); ok {
			idx, key = c.nsWatches, ns
		}
		delete(idx[key], w)
		if len(idx[key]) == 0 {
			delete(idx, key)
		}
	}
	w.keys = nil
}

// CreateWatch refuses state-of-the-world requests: discovery is delta only.
func (c *Cache) CreateWatch(*cachev3.Request, cachev3.Subscription, chan cachev3.Response) (func(), error) {
	return nil, errors.New("discovery serves delta xDS only")
}
