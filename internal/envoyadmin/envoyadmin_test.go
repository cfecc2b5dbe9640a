package envoyadmin

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestNewRefusesBadAddresses(t *testing.T) {
	for _, bad := range []string{"", "127.0.0.1:15000", "ftp://127.0.0.1:15000", "http://", "http://127.0.0.1:15000/admin"} {
		if _, err := New(bad); err == nil || !strings.Contains(err.Error(), "http://127.0.0.1:15000") {
			t.Errorf("New(%q) = %v, want an error showing the accepted form", bad, err)
		}
	}
	if _, err := New("http://127.0.0.1:15000/"); err != nil {
		t.Errorf("New with a trailing slash: %v", err)
	}
}

func TestStatsAndDrain(t *testing.T) {
	var drained []string
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/stats/prometheus":
			w.Write([]byte("# TYPE envoy_server_live gauge\nenvoy_server_live 1\n"))
		case r.Method == http.MethodPost && r.URL.Path == "/drain_listeners":
			drained = append(drained, r.URL.RawQuery)
		default:
			http.Error(w, "no such admin endpoint", http.StatusNotFound)
		}
	}))
	defer admin.Close()
	c, err := New(admin.URL)
	if err != nil {
		t.Fatal(err)
	}
	stats, err := c.PrometheusStats(context.Background())
	if err != nil || !strings.Contains(string(stats), "envoy_server_live 1") {
		t.Fatalf("PrometheusStats = %q, %v", stats, err)
	}
	if err := c.DrainListeners(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(drained) != 1 || drained[0] != "graceful" {
		t.Fatalf("drain requests = %q, want one with query \"graceful\"", drained)
	}
}

func TestErrorsNameTheCall(t *testing.T) {
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "admin says no", http.StatusServiceUnavailable)
	}))
	c, _ := New(admin.URL)
	_, err := c.PrometheusStats(context.Background())
	if err == nil || !strings.Contains(err.Error(), "/stats/prometheus") || !strings.Contains(err.Error(), "admin says no") {
		t.Errorf("PrometheusStats error = %v", err)
	}
	admin.Close()
	if err := c.DrainListeners(context.Background()); err == nil || !strings.Contains(err.Error(), "drain_listeners") {
		t.Errorf("DrainListeners on a closed admin = %v", err)
	}
}
