// Package podconn opens TCP connections to ports of a pod through the API
// server's port-forward subresource, with the caller's own credentials: the
// API server authenticates the caller and RBAC decides (create on
// pods/portforward in the pod's namespace). The kubelet connects to the
// port inside the pod's network namespace, so a port bound to 127.0.0.1 in
// the pod is reachable this way and from no other host.
package podconn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	streamhttp "k8s.io/streaming/pkg/httpstream"
)

// Forwarder opens port-forward tunnels to pods.
type Forwarder struct {
	cfg  *rest.Config
	core rest.Interface
}

// New returns a Forwarder using cfg's server and credentials.
func New(cfg *rest.Config) (*Forwarder, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Forwarder{cfg: cfg, core: cs.CoreV1().RESTClient()}, nil
}

// Tunnel is one port-forward connection to a pod; each Dial opens a
// stream pair on it. Close ends every connection through it.
type Tunnel struct {
	namespace, pod string
	conn           streamhttp.Connection

	mu     sync.Mutex
	nextID int
}

// Open opens a tunnel to pod namespace/name. The upgrade is refused
// with the API server's reason when the caller may not port-forward to it
// or the pod is not running.
func (f *Forwarder) Open(ctx context.Context, namespace, name string) (*Tunnel, error) {
	u := f.core.Post().Resource("pods").Namespace(namespace).Name(name).SubResource("portforward").URL()
	rt, upgrader, err := spdy.RoundTripperFor(f.cfg)
	if err != nil {
		return nil, err
	}
	var dialer streamhttp.Dialer = spdy.NewDialerForStreaming(upgrader, &http.Client{Transport: rt}, http.MethodPost, u)
	// WebSockets first (Kubernetes 1.30+), SPDY where they are refused,
	// as kubectl port-forward does.
	ws, err := portforward.NewSPDYOverWebsocketDialerForStreaming(u, f.cfg)
	if err != nil {
		return nil, err
	}
	dialer = portforward.NewFallbackDialerForStreaming(ws, dialer, func(err error) bool {
		return streamhttp.IsUpgradeFailure(err) || streamhttp.IsHTTPSProxyError(err)
	})
	type result struct {
		conn streamhttp.Connection
		err  error
	}
	done := make(chan result, 1)
	go func() {
		conn, proto, err := dialer.Dial(portforward.PortForwardProtocolV1Name)
		if err == nil && proto != portforward.PortForwardProtocolV1Name {
			conn.Close()
			err = fmt.Errorf("the API server offered protocol %q, not %q", proto, portforward.PortForwardProtocolV1Name)
		}
		done <- result{conn, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("port-forward to pod %s/%s: %w", namespace, name, r.err)
		}
		return &Tunnel{namespace: namespace, pod: name, conn: r.conn}, nil
	case <-ctx.Done():
		go func() {
			if r := <-done; r.conn != nil {
				r.conn.Close()
			}
		}()
		return nil, fmt.Errorf("port-forward to pod %s/%s: %w", namespace, name, ctx.Err())
	}
}

// Close ends the tunnel and its connections.
func (s *Tunnel) Close() error { return s.conn.Close() }

// Dial connects to port of the pod.
func (s *Tunnel) Dial(port int) (net.Conn, error) {
	s.mu.Lock()
	id := s.nextID
	s.nextID++
	s.mu.Unlock()
	h := http.Header{}
	h.Set(corev1.StreamType, corev1.StreamTypeError)
	h.Set(corev1.PortHeader, strconv.Itoa(port))
	h.Set(corev1.PortForwardRequestIDHeader, strconv.Itoa(id))
	errStream, err := s.conn.CreateStream(h)
	if err != nil {
		return nil, s.errorf(port, err)
	}
	errStream.Close() // nothing is written to it
	c := &conn{s: s, port: port, errStream: errStream, remoteErr: make(chan error, 1)}
	go func() {
		msg, err := io.ReadAll(errStream)
		switch {
		case err != nil:
			c.remoteErr <- err
		case len(msg) > 0:
			c.remoteErr <- errors.New(string(msg))
		default:
			c.remoteErr <- nil
		}
	}()
	h.Set(corev1.StreamType, corev1.StreamTypeData)
	if c.data, err = s.conn.CreateStream(h); err != nil {
		s.conn.RemoveStreams(errStream)
		return nil, s.errorf(port, err)
	}
	return c, nil
}

func (s *Tunnel) errorf(port int, err error) error {
	return fmt.Errorf("port %d of pod %s/%s: %w", port, s.namespace, s.pod, err)
}

// HTTPClient is a client whose connections go to port of the pod, whatever
// the URL's host.
func (s *Tunnel) HTTPClient(port int, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DialContext:       func(context.Context, string, string) (net.Conn, error) { return s.Dial(port) },
		DisableKeepAlives: false,
		MaxIdleConns:      4,
	}}
}

// conn is a forwarded connection: the data stream, with the kubelet's
// error (it could not connect to the port, say) in place of a bare EOF.
type conn struct {
	s         *Tunnel
	port      int
	data      streamhttp.Stream
	errStream streamhttp.Stream
	remoteErr chan error

	once sync.Once
}

// remoteErrWait is how long a read that hit the end of the data stream
// waits for the kubelet's reason.
const remoteErrWait = time.Second

func (c *conn) Read(p []byte) (int, error) {
	n, err := c.data.Read(p)
	if err == nil || n > 0 {
		return n, err
	}
	select {
	case rerr := <-c.remoteErr:
		c.remoteErr <- rerr // later reads see it too
		if rerr != nil {
			return 0, c.s.errorf(c.port, rerr)
		}
	case <-time.After(remoteErrWait):
	}
	return 0, err
}

func (c *conn) Write(p []byte) (int, error) { return c.data.Write(p) }

func (c *conn) Close() error {
	c.once.Do(func() {
		c.data.Reset()
		c.s.conn.RemoveStreams(c.data, c.errStream)
	})
	return nil
}

func (c *conn) LocalAddr() net.Addr { return addr("port-forward") }
func (c *conn) RemoteAddr() net.Addr {
	return addr(c.s.namespace + "/" + c.s.pod + ":" + strconv.Itoa(c.port))
}

// Deadlines are not supported by streams; callers bound their requests
// with contexts and timeouts instead.
func (c *conn) SetDeadline(time.Time) error      { return nil }
func (c *conn) SetReadDeadline(time.Time) error  { return nil }
func (c *conn) SetWriteDeadline(time.Time) error { return nil }

type addr string

func (a addr) Network() string { return "port-forward" }
func (a addr) String() string  { return string(a) }
