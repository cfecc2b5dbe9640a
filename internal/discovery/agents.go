package discovery

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"github.com/tandem-mesh/tandem/internal/agentstatus"
	"github.com/tandem-mesh/tandem/internal/discovery/resource"
)

// agents keeps, for every open stream, who it belongs to, what it follows,
// what it was sent and how it answered, and the agent's latest report.
// Everything comes from the stream itself and the token reviewed when it
// opened: keeping it costs the API server nothing.
type agents struct {
	log *slog.Logger

	mu      sync.Mutex
	streams map[int64]*agentRecord
	// Totals since the start, for the metrics.
	pushes, rejections uint64
}

type agentRecord struct {
	who       identity
	peer      string
	connected time.Time
	node      string
	subs      map[string]bool // Service subscriptions
	// exchanges are by type URL; their versions are nonces, as
	// discovery's responses carry no version of their own.
	exchanges map[string]*agentstatus.Exchange
	// reportText is the agent's latest report as it sent it; report is
	// that text read, once someone asks.
	reportText string
	report     *agentstatus.Agent
	reported   time.Time
}

func newAgents(log *slog.Logger) *agents {
	return &agents{log: log, streams: map[int64]*agentRecord{}}
}

// identityKey carries a stream's identity from the interceptor, which
// reviewed its token, to the delta server's callbacks.
type identityKey struct{}

type streamIdentity struct {
	who  identity
	peer string
}

func withIdentity(ctx context.Context, who identity, peer string) context.Context {
	return context.WithValue(ctx, identityKey{}, streamIdentity{who, peer})
}

func (a *agents) open(ctx context.Context, id int64) {
	si, _ := ctx.Value(identityKey{}).(streamIdentity)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.streams[id] = &agentRecord{who: si.who, peer: si.peer, connected: time.Now(), subs: map[string]bool{}, exchanges: map[string]*agentstatus.Exchange{}}
}

func (a *agents) closed(id int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.streams, id)
}

// request records a request: the node and its report, subscription
// changes, and the answer to a response. A refusal is logged once, though
// a report repeats it.
func (a *agents) request(id int64, r *discoverygrpc.DeltaDiscoveryRequest) {
	a.mu.Lock()
	defer a.mu.Unlock()
	rec := a.streams[id]
	if rec == nil {
		return
	}
	if n := r.GetNode(); n != nil {
		rec.node = n.GetId()
		if text, ok := agentstatus.ReportOf(n); ok {
			if text != rec.reportText {
				rec.reportText, rec.report = text, nil
			}
			rec.reported = time.Now()
		}
	}
	if r.GetTypeUrl() == resource.TypeURL {
		for _, n := range r.GetResourceNamesSubscribe() {
			rec.subs[n] = true
		}
		for _, n := range r.GetResourceNamesUnsubscribe() {
			delete(rec.subs, n)
		}
	}
	nonce := r.GetResponseNonce()
	if nonce == "" {
		return
	}
	ex := rec.exchange(r.GetTypeUrl())
	if nonce != ex.Sent {
		return // an answer to an older response
	}
	if d := r.GetErrorDetail(); d != nil {
		// A report repeats the latest answer: a refusal is counted once.
		if ex.RecordNACK(nonce, d.GetMessage(), time.Now()) {
			a.rejections++
			a.log.Warn("agent rejected a response", "agent", rec.who, "node", rec.node, "type", typeName(r.GetTypeUrl()), "error", d.GetMessage())
		}
		return
	}
	if ex.Acked != nonce {
		ex.RecordAck(time.Now())
	}
}

func (a *agents) response(id int64, r *discoverygrpc.DeltaDiscoveryResponse) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pushes++
	if rec := a.streams[id]; rec != nil {
		rec.exchange(r.GetTypeUrl()).RecordSent(r.GetNonce(), time.Now())
	}
}

// agentReport is the agent's latest report, read from its text the first
// time it is asked for; nil before any. Must hold the agents' lock.
func (a *agents) agentReport(rec *agentRecord) *agentstatus.Agent {
	if rec.report != nil || rec.reportText == "" {
		return rec.report
	}
	rep, err := agentstatus.Parse(rec.reportText)
	if err != nil {
		a.log.Warn("agent's report unreadable", "agent", rec.who, "error", err)
		rec.reportText = ""
		return nil
	}
	rec.report = &rep
	return rec.report
}

func (rec *agentRecord) exchange(typeURL string) *agentstatus.Exchange {
	ex := rec.exchanges[typeURL]
	if ex == nil {
		ex = &agentstatus.Exchange{Type: typeName(typeURL)}
		rec.exchanges[typeURL] = ex
	}
	return ex
}

// typeName is the message name of a type URL: "Service", "Node".
func typeName(typeURL string) string { return typeURL[strings.LastIndex(typeURL, ".")+1:] }

// list returns a copy of every record, sorted by pod.
func (a *agents) list() []agentstatus.Stream {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]agentstatus.Stream, 0, len(a.streams))
	for _, rec := range a.streams {
		st := agentstatus.Stream{
			Pod: rec.who.String(), ServiceAccount: rec.who.namespace + "/" + rec.who.serviceAccount,
			Node: rec.node, Peer: rec.peer, ConnectedAt: rec.connected,
			Subscriptions: slices.Sorted(maps.Keys(rec.subs)), Exchanges: []agentstatus.Exchange{},
			Agent: a.agentReport(rec), ReportedAt: rec.reported,
		}
		for _, typeURL := range slices.Sorted(maps.Keys(rec.exchanges)) {
			st.Exchanges = append(st.Exchanges, rec.exchanges[typeURL].Clone())
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(x, y agentstatus.Stream) int { return strings.Compare(x.Pod, y.Pod) })
	return out
}

// Agents returns discovery's record of every open stream, with the
// agent's latest report.
func (s *Server) Agents() []agentstatus.Stream { return s.agents.list() }
