package agent

import (
	"context"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"

	"github.com/tandem-mesh/tandem/internal/agentstatus"
)

// The agent reports itself to discovery in the node of its stream: on the
// first request, and again whenever its source or its clients' answers
// change, by repeating its latest answer (ACK or NACK) with the new node.
// Reports cost discovery, never the API server; they are paced so that
// one push to Envoy and its ACKs travel as one report.
const (
	reportDelay       = 200 * time.Millisecond
	minReportInterval = time.Second
)

// report sends the agent's report on st whenever it changes, until ctx
// ends.
func (d *discoverySource) report(ctx context.Context, st discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesClient) {
	var served <-chan struct{}
	if d.a.opts.Served != nil {
		served = d.a.opts.Served.ClientsChanged()
	}
	var (
		last  time.Time
		dirty bool
		timer = time.NewTimer(time.Hour)
	)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-served:
			dirty = true
		case <-d.a.statusChanged:
			dirty = true
		case <-timer.C:
			if !dirty {
				continue
			}
			sent, err := d.sendReport(st)
			if err != nil {
				return // the stream is ending; the next one starts with a report
			}
			if sent {
				dirty, last = false, time.Now()
				continue
			}
			// Nothing answered yet to repeat: try again later.
			timer.Reset(minReportInterval)
			continue
		}
		timer.Reset(max(reportDelay, time.Until(last.Add(minReportInterval))))
	}
}

// sendReport repeats the latest answer with the agent's report; sent is
// false when no Service response has been answered on st yet.
func (d *discoverySource) sendReport(st discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesClient) (sent bool, err error) {
	node, err := agentstatus.Node(d.opts.NodeID, d.a.Status())
	if err != nil {
		d.log.Error("building the report", "error", err)
		return false, nil
	}
	d.sendMu.Lock()
	defer d.sendMu.Unlock()
	if d.answer == nil {
		return false, nil
	}
	req := proto.Clone(d.answer).(*discoverygrpc.DeltaDiscoveryRequest)
	req.Node = node
	return true, st.Send(req)
}

func (d *discoverySource) countFallback() {
	d.mu.Lock()
	d.fallbacks++
	d.mu.Unlock()
}

// link is the agent's view of discovery.
func (d *discoverySource) link() *agentstatus.Link {
	d.mu.Lock()
	defer d.mu.Unlock()
	l := &agentstatus.Link{Address: d.opts.Address, Connected: d.up, Fallbacks: d.fallbacks, Services: len(d.held)}
	if d.up {
		l.Since = d.since
	} else {
		l.Refused = d.refused
	}
	return l
}
