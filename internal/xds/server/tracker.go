package server

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/genproto/googleapis/rpc/status"

	"github.com/tandem-mesh/tandem/internal/agentstatus"
)

// streamKey tells streams apart: the state-of-the-world and the delta
// servers number their streams independently.
type streamKey struct {
	delta bool
	id    int64
}

type stream struct {
	node      string
	types     map[string]*typeState
	listeners map[string]bool // listener names the client asked for
}

// typeState follows one resource type on one stream: the last response sent
// and whether the client has accepted it.
type typeState struct {
	sentNonce, sentVersion string
	ackedNonce             string
	acked                  bool // the client has accepted at least one response
	// ex is what Clients reports: versions sent and accepted, the latest
	// refusal until a later response is accepted.
	ex agentstatus.Exchange
}

// tracker implements the xDS server callbacks: it follows every stream's
// responses and the ACKs and NACKs that answer them.
type tracker struct {
	log *slog.Logger

	// onListeners, when set, is given the listener names all clients ask
	// for whenever that set changes.
	onListeners func([]string)
	lastNames   string

	// changed is signalled whenever a client connects, leaves, is sent a
	// response or answers one.
	changed chan struct{}

	mu       sync.Mutex
	streams  map[streamKey]*stream
	pushes   map[string]uint64
	acks     map[string]uint64
	nacks    map[string]uint64
	lastNACK string
}

var _ serverv3.Callbacks = (*tracker)(nil)

func newTracker(log *slog.Logger, onListeners func([]string)) *tracker {
	return &tracker{
		log:         log,
		onListeners: onListeners,
		streams:     map[streamKey]*stream{},
		pushes:      map[string]uint64{},
		acks:        map[string]uint64{},
		nacks:       map[string]uint64{},
		changed:     make(chan struct{}, 1),
	}
}

func (t *tracker) kick() {
	select {
	case t.changed <- struct{}{}:
	default:
	}
}

func (t *tracker) open(k streamKey) {
	t.mu.Lock()
	t.streams[k] = &stream{types: map[string]*typeState{}}
	t.mu.Unlock()
	t.kick()
}

func (t *tracker) closed(k streamKey, node *corev3.Node) {
	t.mu.Lock()
	delete(t.streams, k)
	t.listenersChanged()
	t.mu.Unlock()
	t.kick()
	t.log.Info("xDS client disconnected", "node", node.GetId(), "delta", k.delta)
}

// typeState returns the state of typeURL on stream k. Must hold t.mu.
func (t *tracker) typeState(k streamKey, typeURL string) (*stream, *typeState) {
	s := t.streams[k]
	if s == nil { // a callback for a stream that is already closing
		s = &stream{types: map[string]*typeState{}}
	}
	ts := s.types[typeURL]
	if ts == nil {
		ts = &typeState{}
		s.types[typeURL] = ts
	}
	return s, ts
}

func (t *tracker) request(k streamKey, node *corev3.Node, typeURL, nonce string, errDetail *status.Status) {
	t.mu.Lock()
	s, ts := t.typeState(k, typeURL)
	if s.node == "" && node.GetId() != "" {
		s.node = node.GetId()
		t.log.Info("xDS client connected", "node", s.node, "delta", k.delta)
	}
	if nonce == "" { // a first request or a subscription change, no answer to a response
		t.mu.Unlock()
		return
	}
	typeName := typeNames[typeURL]
	if errDetail != nil {
		t.nacks[typeName]++
		version := ""
		if nonce == ts.sentNonce {
			version = ts.sentVersion
		}
		t.lastNACK = typeName + ": " + errDetail.GetMessage()
		ts.ex.RecordNACK(version, errDetail.GetMessage(), time.Now())
		t.mu.Unlock()
		t.kick()
		t.log.Warn("xDS client rejected a response (NACK); it keeps its last accepted configuration",
			"node", s.node, "type", typeName, "version", version, "nonce", nonce, "error", errDetail.GetMessage())
		return
	}
	// Only an answer to the latest response counts, and only once: clients
	// repeat the last nonce when they change their subscriptions.
	if nonce == ts.sentNonce && nonce != ts.ackedNonce {
		ts.ackedNonce = nonce
		ts.acked = true
		ts.ex.RecordAck(time.Now())
		t.acks[typeName]++
		defer t.kick()
	}
	t.mu.Unlock()
}

func (t *tracker) response(k streamKey, typeURL, nonce, version string) {
	t.mu.Lock()
	_, ts := t.typeState(k, typeURL)
	ts.sentNonce, ts.sentVersion = nonce, version
	ts.ex.RecordSent(version, time.Now())
	t.pushes[typeNames[typeURL]]++
	t.mu.Unlock()
	t.kick()
}

// clients reports every connected client's exchanges, by type in the order
// Envoy applies them.
func (t *tracker) clients() []agentstatus.Proxy {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]agentstatus.Proxy, 0, len(t.streams))
	for _, s := range t.streams {
		p := agentstatus.Proxy{Node: s.node, Exchanges: []agentstatus.Exchange{}}
		for _, typeURL := range updateOrder {
			ts := s.types[typeURL]
			if ts == nil || ts.sentNonce == "" && ts.ex.Rejected == nil {
				continue
			}
			e := ts.ex.Clone()
			e.Type = typeNames[typeURL]
			p.Exchanges = append(p.Exchanges, e)
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b agentstatus.Proxy) int { return strings.Compare(a.Node, b.Node) })
	return out
}

// listeners updates the listener names a stream asks for: set replaces
// them (state of the world), add and remove change them (delta).
func (t *tracker) listeners(k streamKey, set []string, replace bool, add, remove []string) {
	if t.onListeners == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	s, _ := t.typeState(k, resource.ListenerType)
	if replace || s.listeners == nil {
		s.listeners = map[string]bool{}
	}
	for _, n := range set {
		s.listeners[n] = true
	}
	for _, n := range add {
		s.listeners[n] = true
	}
	for _, n := range remove {
		delete(s.listeners, n)
	}
	t.listenersChanged()
}

// listenersChanged gives onListeners the union of every stream's listener
// names when it changed. Must hold t.mu, which keeps the calls in order.
func (t *tracker) listenersChanged() {
	if t.onListeners == nil {
		return
	}
	all := map[string]bool{}
	for _, s := range t.streams {
		for n := range s.listeners {
			all[n] = true
		}
	}
	names := slices.Sorted(maps.Keys(all))
	if key := strings.Join(names, ","); key != t.lastNames {
		t.lastNames = key
		t.onListeners(names)
	}
}

// ready reports whether one connected client has ACKed clusters and listeners.
func (t *tracker) ready() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range t.streams {
		c, l := s.types[resource.ClusterType], s.types[resource.ListenerType]
		if c != nil && c.acked && l != nil && l.acked {
			return true
		}
	}
	return false
}

// Stream callbacks of the state-of-the-world server.

func (t *tracker) OnStreamOpen(_ context.Context, id int64, _ string) error {
	t.open(streamKey{id: id})
	return nil
}

func (t *tracker) OnStreamClosed(id int64, node *corev3.Node) { t.closed(streamKey{id: id}, node) }

func (t *tracker) OnStreamRequest(id int64, r *discoveryv3.DiscoveryRequest) error {
	if r.GetTypeUrl() == resource.ListenerType {
		t.listeners(streamKey{id: id}, r.GetResourceNames(), true, nil, nil)
	}
	t.request(streamKey{id: id}, r.GetNode(), r.GetTypeUrl(), r.GetResponseNonce(), r.GetErrorDetail())
	return nil
}

func (t *tracker) OnStreamResponse(_ context.Context, id int64, _ *discoveryv3.DiscoveryRequest, r *discoveryv3.DiscoveryResponse) {
	t.response(streamKey{id: id}, r.GetTypeUrl(), r.GetNonce(), r.GetVersionInfo())
}

// Stream callbacks of the delta server.

func (t *tracker) OnDeltaStreamOpen(_ context.Context, id int64, _ string) error {
	t.open(streamKey{delta: true, id: id})
	return nil
}

func (t *tracker) OnDeltaStreamClosed(id int64, node *corev3.Node) {
	t.closed(streamKey{delta: true, id: id}, node)
}

func (t *tracker) OnStreamDeltaRequest(id int64, r *discoveryv3.DeltaDiscoveryRequest) error {
	if r.GetTypeUrl() == resource.ListenerType {
		t.listeners(streamKey{delta: true, id: id}, nil, false, r.GetResourceNamesSubscribe(), r.GetResourceNamesUnsubscribe())
	}
	t.request(streamKey{delta: true, id: id}, r.GetNode(), r.GetTypeUrl(), r.GetResponseNonce(), r.GetErrorDetail())
	return nil
}

func (t *tracker) OnStreamDeltaResponse(id int64, _ *discoveryv3.DeltaDiscoveryRequest, r *discoveryv3.DeltaDiscoveryResponse) {
	t.response(streamKey{delta: true, id: id}, r.GetTypeUrl(), r.GetNonce(), r.GetSystemVersionInfo())
}

// REST fetches are not served; the callbacks exist to satisfy the interface.

func (t *tracker) OnFetchRequest(context.Context, *discoveryv3.DiscoveryRequest) error           { return nil }
func (t *tracker) OnFetchResponse(*discoveryv3.DiscoveryRequest, *discoveryv3.DiscoveryResponse) {}
