package server

import (
	"context"
	"sync"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// gate holds every watch until the first configuration is published. A
// client that connects while the informers are still syncing would
// otherwise get an empty configuration at once, accept it and drop every
// route it may already have; held, it simply waits for the real one.
type gate struct {
	inner cachev3.Cache

	mu      sync.Mutex
	open    bool
	pending []*heldWatch
}

var _ cachev3.Cache = (*gate)(nil)

// heldWatch is a watch waiting for the gate; create and cancel are
// serialised by mu so a cancel never races the watch's creation.
type heldWatch struct {
	mu        sync.Mutex
	create    func() (func(), error)
	cancel    func()
	cancelled bool
}

func (h *heldWatch) start() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cancelled {
		return
	}
	// The inner caches only fail for a type they do not serve, and those
	// never wait at the gate.
	h.cancel, _ = h.create()
}

func (h *heldWatch) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cancelled = true
	if h.cancel != nil {
		h.cancel()
	}
}

func (g *gate) hold(typeURL string, create func() (func(), error)) (func(), error) {
	if _, served := typeNames[typeURL]; !served {
		return create() // refused by the inner cache at once
	}
	g.mu.Lock()
	if g.open {
		g.mu.Unlock()
		return create()
	}
	h := &heldWatch{create: create}
	g.pending = append(g.pending, h)
	g.mu.Unlock()
	return h.stop, nil
}

// release opens the gate and starts the held watches.
func (g *gate) release() {
	g.mu.Lock()
	if g.open {
		g.mu.Unlock()
		return
	}
	g.open = true
	held := g.pending
	g.pending = nil
	g.mu.Unlock()
	for _, h := range held {
		h.start()
	}
}

func (g *gate) CreateWatch(r *cachev3.Request, sub cachev3.Subscription, ch chan cachev3.Response) (func(), error) {
	return g.hold(r.GetTypeUrl(), func() (func(), error) { return g.inner.CreateWatch(r, sub, ch) })
}

func (g *gate) CreateDeltaWatch(r *cachev3.DeltaRequest, sub cachev3.Subscription, ch chan cachev3.DeltaResponse) (func(), error) {
	return g.hold(r.GetTypeUrl(), func() (func(), error) { return g.inner.CreateDeltaWatch(r, sub, ch) })
}

func (g *gate) Fetch(ctx context.Context, r *cachev3.Request) (cachev3.Response, error) {
	return g.inner.Fetch(ctx, r)
}
