package agentstatus

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestExchangeState(t *testing.T) {
	rej := &Rejection{Version: "v2", Error: "bad"}
	for _, tc := range []struct {
		e    Exchange
		want string
	}{
		{Exchange{}, StateNotSent},
		{Exchange{Sent: "v1"}, StatePending},
		{Exchange{Sent: "v1", Acked: "v1"}, StateSynced},
		{Exchange{Sent: "v2", Acked: "v1", Rejected: rej}, StateRejected},
		// A refusal of an older version, and a newer one sent since: pending.
		{Exchange{Sent: "v3", Acked: "v1", Rejected: rej}, StatePending},
	} {
		if got := tc.e.State(); got != tc.want {
			t.Errorf("%+v: %s, want %s", tc.e, got, tc.want)
		}
	}
}

// TestNodeRoundTrip: the report a node carries reads back as it was sent.
func TestNodeRoundTrip(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a := Agent{Version: "v0.1.0", Mode: "proxyless", Source: SourceAPIServer,
		Discovery: &Link{Address: "tandem-discovery.tandem-system.svc:15012", Fallbacks: 2, Services: 3, Refused: "no"},
		Proxies: []Proxy{{Node: "app.shop", Exchanges: []Exchange{{Type: "listener", Sent: "x-2", SentAt: at, Acked: "x-1", AckedAt: at,
			Rejected: &Rejection{Version: "x-2", Error: "refused", At: at}}}}}}
	n, err := Node("app.shop", a)
	if err != nil {
		t.Fatal(err)
	}
	if n.Id != "app.shop" || n.UserAgentName != UserAgent || n.GetUserAgentVersion() != "v0.1.0" {
		t.Fatalf("node %v", n)
	}
	text, ok := ReportOf(n)
	if !ok {
		t.Fatal("no report in the node")
	}
	got, err := Parse(text)
	if err != nil || !reflect.DeepEqual(got, a) {
		t.Fatalf("read back %+v (%v), want %+v", got, err, a)
	}
	if _, ok := ReportOf(nil); ok {
		t.Error("a nil node carries a report")
	}
	if _, err := Parse("[1]"); err == nil || !strings.Contains(err.Error(), MetadataKey) {
		t.Errorf("not a report: %v", err)
	}
}

// FuzzParse: whatever text an agent sends, Parse returns an error or a
// report that reads back the same once written again.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, text string) {
		a, err := Parse(text)
		if err != nil {
			return
		}
		n, err := Node("x", a)
		if err != nil {
			t.Fatalf("a parsed report does not encode: %v", err)
		}
		again, _ := ReportOf(n)
		b, err := Parse(again)
		if err != nil || !reflect.DeepEqual(a, b) {
			t.Fatalf("%q: read back %+v (%v), want %+v", text, b, err, a)
		}
	})
}
