// Package envoyadmin talks to the local Envoy's admin interface: its
// Prometheus statistics and graceful listener draining.
package envoyadmin

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client calls one Envoy admin endpoint.
type Client struct {
	base *url.URL
	http *http.Client
}

// New returns a client for the admin interface at base, e.g.
// "http://127.0.0.1:15000".
func New(base string) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("envoy admin address %q: want an http:// or https:// URL with a host and no path, like http://127.0.0.1:15000", base)
	}
	u.Path = ""
	return &Client{base: u, http: &http.Client{Timeout: 5 * time.Second}}, nil
}

// maxStats bounds the statistics read from Envoy; a sidecar's are far smaller.
const maxStats = 64 << 20

// PrometheusStats returns Envoy's statistics in the Prometheus text format.
func (c *Client) PrometheusStats(ctx context.Context) ([]byte, error) {
	resp, err := c.do(ctx, http.MethodGet, "/stats/prometheus")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxStats))
	if err != nil {
		return nil, fmt.Errorf("reading Envoy stats: %w", err)
	}
	return body, nil
}

// DrainListeners asks Envoy to drain its listeners gracefully: it stops
// accepting new connections and lets open ones finish during its drain time.
func (c *Client) DrainListeners(ctx context.Context) error {
	resp, err := c.do(ctx, http.MethodPost, "/drain_listeners?graceful")
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

func (c *Client) do(ctx context.Context, method, pathQuery string) (*http.Response, error) {
	u := c.base.String() + pathQuery
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("envoy admin %s %s: %w", method, pathQuery, err)
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, fmt.Errorf("envoy admin %s %s: %s: %s", method, pathQuery, resp.Status, strings.TrimSpace(string(msg)))
	}
	return resp, nil
}
