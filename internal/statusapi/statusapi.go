// Package statusapi is the injector's status endpoint and its client:
// discovery's records of the agents connected to one replica, and whether
// given pods' sidecars are what the installed injection renders now. The
// endpoint listens on loopback only (port wellknown.StatusPort) and
// reveals configuration, so it is reached through the API server's
// port-forward, where RBAC decides who may (create on pods/portforward in
// the injector's namespace).
package statusapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"

	corev1 "k8s.io/api/core/v1"

	"github.com/tandem-mesh/tandem/internal/agentstatus"
	"github.com/tandem-mesh/tandem/internal/staleness"
	"github.com/tandem-mesh/tandem/webhook"
)

// Paths of the injector's status endpoint.
const (
	ReplicaPath  = "/replica"
	SidecarsPath = "/sidecars"
)

// Replica is what one injector replica tells of itself.
type Replica struct {
	// Host is the replica's host name: its pod's name in a cluster.
	Host    string `json:"host"`
	Version string `json:"version"`
	// Injection is how this install injects: "webhook" or "policy".
	Injection string `json:"injection"`
	// Discovery is true when the replica serves discovery, Ready once it
	// answers streams; Agents are its streams.
	Discovery bool                 `json:"discovery"`
	Ready     bool                 `json:"ready"`
	Agents    []agentstatus.Stream `json:"agents"`
}

// SidecarsRequest asks for the verdicts of pods, as the caller read them.
type SidecarsRequest struct {
	Pods []corev1.Pod `json:"pods"`
}

// PodVerdict is staleness's verdict of one pod.
type PodVerdict struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	staleness.Verdict
}

// SidecarsResponse answers a SidecarsRequest, in its order.
type SidecarsResponse struct {
	Verdicts []PodVerdict `json:"verdicts"`
}

// Source is what the endpoint reports.
type Source struct {
	Replica func() Replica
	// Injector renders what a pod gets now; an error when it cannot be
	// built (the admission policies' parameters are unreadable).
	Injector func(ctx context.Context) (*webhook.Injector, error)
	// Namespace reads a namespace (from the injector's cache).
	Namespace func(ctx context.Context, name string) (*corev1.Namespace, error)
}

// maxRequest bounds a SidecarsRequest: a few KiB per pod, tens of
// thousands of pods.
const maxRequest = 256 << 20

// Handler serves s.
func Handler(s Source) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+ReplicaPath, func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, s.Replica()) })
	mux.HandleFunc("POST "+SidecarsPath, func(w http.ResponseWriter, r *http.Request) {
		var req SidecarsRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, maxRequest)).Decode(&req); err != nil {
			http.Error(w, "a SidecarsRequest: "+err.Error(), http.StatusBadRequest)
			return
		}
		in, err := s.Injector(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		resp := SidecarsResponse{Verdicts: make([]PodVerdict, 0, len(req.Pods))}
		namespaces := map[string]webhook.Namespace{}
		for i := range req.Pods {
			pod := &req.Pods[i]
			ns, ok := namespaces[pod.Namespace]
			if !ok {
				n, err := s.Namespace(r.Context(), pod.Namespace)
				if err != nil {
					http.Error(w, fmt.Sprintf("namespace %s: %v", pod.Namespace, err), http.StatusServiceUnavailable)
					return
				}
				ns = webhook.Namespace{Name: n.Name, Labels: n.Labels, Annotations: n.Annotations}
				namespaces[pod.Namespace] = ns
			}
			resp.Verdicts = append(resp.Verdicts, PodVerdict{Namespace: pod.Namespace, Name: pod.Name, Verdict: staleness.Check(in, pod, ns)})
		}
		writeJSON(w, resp)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

// GetReplica asks one replica about itself; c reaches its status port.
func GetReplica(ctx context.Context, c *http.Client) (Replica, error) {
	var r Replica
	return r, do(ctx, c, http.MethodGet, ReplicaPath, nil, &r)
}

// Sidecars asks one replica for the verdicts of pods.
func Sidecars(ctx context.Context, c *http.Client, pods []corev1.Pod) ([]PodVerdict, error) {
	var resp SidecarsResponse
	if err := do(ctx, c, http.MethodPost, SidecarsPath, SidecarsRequest{Pods: pods}, &resp); err != nil {
		return nil, err
	}
	return resp.Verdicts, nil
}

// do sends a request to the status port c reaches (any host name does).
func do(ctx context.Context, c *http.Client, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://status"+path, rd)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err // the URL's host is made up: the reason is all there is
	}
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxRequest))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	return json.Unmarshal(b, out)
}

// CheckLoopback accepts loopback listen addresses only (or "" for none):
// an endpoint that reveals configuration must never listen beyond its pod.
func CheckLoopback(addr string) error {
	if addr == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if _, err := netip.ParseAddrPort("127.0.0.1:" + port); err != nil {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	if ip, err := netip.ParseAddr(host); host == "localhost" || err == nil && ip.IsLoopback() {
		return nil
	}
	return errors.New("it reveals configuration, so it must not listen beyond the pod")
}
