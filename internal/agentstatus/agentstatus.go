// Package agentstatus is what the mesh knows of each agent: what the agent
// reports of itself and of the xDS clients it serves (Envoy, or a
// proxyless app), and what discovery records of its stream. The agent
// sends its report to discovery in the node metadata of its stream;
// discovery serves its records, and the agent its own report, to
// `kubectl tandem status` through the API server. Only the JSON documents
// of this package cross those boundaries.
package agentstatus

import (
	"encoding/json"
	"fmt"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// Sources of an agent's configuration.
const (
	SourceDiscovery = "discovery"
	SourceAPIServer = "api-server"
	// SourceNone: no configuration published yet.
	SourceNone = "none"
)

// States of an Exchange.
const (
	StateSynced   = "synced"   // the latest response was accepted
	StatePending  = "pending"  // sent, not answered yet
	StateRejected = "rejected" // the latest response was refused
	StateNotSent  = "not-sent" // nothing sent yet
)

// Exchange is the state of one xDS type on one stream: the latest
// response sent and the client's answers. Versions are the server's: the
// xDS version of the agent's responses, the nonce of discovery's.
type Exchange struct {
	Type    string    `json:"type"`
	Sent    string    `json:"sent,omitempty"`
	SentAt  time.Time `json:"sentAt,omitzero"`
	Acked   string    `json:"acked,omitempty"`
	AckedAt time.Time `json:"ackedAt,omitzero"`
	// Rejected is the latest refusal, while no later response has been
	// accepted; the client keeps serving Acked meanwhile.
	Rejected *Rejection `json:"rejected,omitempty"`
}

// Rejection is a response the client refused, with the client's own error.
type Rejection struct {
	Version string    `json:"version"`
	Error   string    `json:"error"`
	At      time.Time `json:"at"`
}

// State summarises an exchange.
func (e Exchange) State() string {
	switch {
	case e.Rejected != nil && e.Rejected.Version == e.Sent:
		return StateRejected
	case e.Sent == "":
		return StateNotSent
	case e.Acked == e.Sent:
		return StateSynced
	}
	return StatePending
}

// RecordSent records a response of version sent at t.
func (e *Exchange) RecordSent(version string, t time.Time) { e.Sent, e.SentAt = version, t }

// RecordAck records that the client accepted the latest response.
func (e *Exchange) RecordAck(t time.Time) { e.Acked, e.AckedAt, e.Rejected = e.Sent, t, nil }

// RecordNACK records a refusal of version ("" when it is not known) with
// the client's error; it reports whether this refusal is new, and not a
// repetition of the one recorded.
func (e *Exchange) RecordNACK(version, msg string, t time.Time) bool {
	if r := e.Rejected; r != nil && r.Version == version && r.Error == msg {
		return false
	}
	e.Rejected = &Rejection{Version: version, Error: msg, At: t}
	return true
}

// Clone is a copy that shares nothing with e.
func (e Exchange) Clone() Exchange {
	if e.Rejected != nil {
		r := *e.Rejected
		e.Rejected = &r
	}
	return e
}

// Proxy is one xDS client of an agent: the pod's Envoy, or one of the
// gRPC channels of a proxyless app.
type Proxy struct {
	Node      string     `json:"node,omitempty"`
	Exchanges []Exchange `json:"exchanges"`
}

// Agent is an agent's report of itself.
type Agent struct {
	Version string `json:"version"`
	// Mode is "sidecar" (Envoy) or "proxyless".
	Mode string `json:"mode"`
	// Source is where its configuration comes from now (SourceDiscovery,
	// SourceAPIServer or SourceNone).
	Source string `json:"source"`
	// Discovery is the agent's side of its discovery stream; nil when the
	// agent is not configured for discovery.
	Discovery *Link   `json:"discovery,omitempty"`
	Proxies   []Proxy `json:"proxies"`
}

// Link is an agent's view of discovery.
type Link struct {
	Address   string    `json:"address"`
	Connected bool      `json:"connected"`
	Since     time.Time `json:"since,omitzero"`
	Fallbacks uint64    `json:"fallbacks"`
	// Services is how many Services the agent holds from discovery.
	Services int `json:"services"`
	// Refused is discovery's latest refusal of the agent's stream (a bad
	// token, a namespace without injection) while it is not connected.
	Refused string `json:"refused,omitempty"`
}

// Stream is discovery's record of one agent's stream.
type Stream struct {
	// Pod is "namespace/name" of the agent's pod, from its token; the
	// service account's name when the token is bound to no pod.
	Pod            string    `json:"pod"`
	ServiceAccount string    `json:"serviceAccount"`
	Node           string    `json:"node,omitempty"`
	Peer           string    `json:"peer,omitempty"`
	ConnectedAt    time.Time `json:"connectedAt"`
	// Subscriptions are the resource names it asked for ("*" everything,
	// "<namespace>/*" a namespace, "<namespace>/<name>" a Service).
	Subscriptions []string   `json:"subscriptions"`
	Exchanges     []Exchange `json:"exchanges"`
	// Agent is the agent's latest report, with ReportedAt its time.
	Agent      *Agent    `json:"agent,omitempty"`
	ReportedAt time.Time `json:"reportedAt,omitzero"`
}

// Paths of the agent's debug endpoint (loopback only, port
// wellknown.AgentDebugPort): the agent's report, and the xDS resources it
// serves (query "kind": listeners, routes, clusters, endpoints; all when
// absent) in the JSON of `agent config`.
const (
	StatusPath = "/status"
	ConfigPath = "/config"
)

// MetadataKey holds the report in the node metadata of an agent's
// discovery stream.
const MetadataKey = "tandem.dev/agent"

// UserAgent names the agent in the node of its discovery stream.
const UserAgent = "tandem-agent"

// Node is the node an agent announces to discovery, carrying its report
// as JSON text: discovery stores the text and reads it only when asked.
func Node(id string, a Agent) (*corev3.Node, error) {
	b, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	return &corev3.Node{
		Id:                   id,
		UserAgentName:        UserAgent,
		UserAgentVersionType: &corev3.Node_UserAgentVersion{UserAgentVersion: a.Version},
		Metadata:             &structpb.Struct{Fields: map[string]*structpb.Value{MetadataKey: structpb.NewStringValue(string(b))}},
	}, nil
}

// ReportOf returns the report text a node carries; ok is false when it
// carries none.
func ReportOf(n *corev3.Node) (text string, ok bool) {
	v, ok := n.GetMetadata().GetFields()[MetadataKey]
	if !ok {
		return "", false
	}
	return v.GetStringValue(), true
}

// Parse reads a report's text.
func Parse(text string) (Agent, error) {
	var a Agent
	if err := json.Unmarshal([]byte(text), &a); err != nil {
		return a, fmt.Errorf("metadata %s is not an agent's report: %w", MetadataKey, err)
	}
	return a, nil
}
