package sink

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func certPool(srv *httptest.Server) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(srv.Certificate())
	return p
}

// bothVersions runs fn with a client of each delivery transport: net/http's
// (HTTP/2 offered) and the HTTP/1.1 one.
func bothVersions(t *testing.T, fn func(t *testing.T, http1Only bool)) {
	for _, http1Only := range []bool{false, true} {
		t.Run(fmt.Sprintf("http1only=%v", http1Only), func(t *testing.T) { fn(t, http1Only) })
	}
}

func TestClientDoesNotFollowRedirects(t *testing.T) {
	bothVersions(t, testClientDoesNotFollowRedirects)
}

func testClientDoesNotFollowRedirects(t *testing.T, http1Only bool) {
	var targetHits atomic.Int32
	target := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		targetHits.Add(1)
	}))
	defer target.Close()
	src := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/x", http.StatusFound)
	}))
	defer src.Close()

	c := NewClient(ClientOptions{Policy: Policy{AllowPrivate: true}, RootCAs: certPool(src), HTTP1Only: http1Only})
	resp, err := c.Post(src.URL, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("status %d, want 302", resp.StatusCode)
	}
	if targetHits.Load() != 0 {
		t.Fatal("redirect was followed")
	}
}

func TestClientPolicyAndTLS(t *testing.T) {
	bothVersions(t, testClientPolicyAndTLS)
}

func testClientPolicyAndTLS(t *testing.T, http1Only bool) {
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:1")
	t.Setenv("HTTP_PROXY", "http://127.0.0.1:1")
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()

	// Default policy: loopback refused before any connection.
	c := NewClient(ClientOptions{RootCAs: certPool(srv), HTTP1Only: http1Only})
	_, err := c.Get(srv.URL)
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("GET loopback with default policy: %v", err)
	}

	// Untrusted certificate refused.
	c = NewClient(ClientOptions{Policy: Policy{AllowPrivate: true}, HTTP1Only: http1Only})
	if _, err := c.Get(srv.URL); err == nil {
		t.Fatal("untrusted certificate accepted")
	}

	// Allowed, and the environment's proxy is not used.
	c = NewClient(ClientOptions{Policy: Policy{AllowPrivate: true}, RootCAs: certPool(srv), HTTP1Only: http1Only})
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	resp.Body.Close()
	switch tr := c.Transport.(type) {
	case *http.Transport:
		if tr.Proxy != nil || tr.TLSClientConfig.MinVersion < tls.VersionTLS12 {
			t.Fatalf("transport settings: proxy set=%v min=%x", tr.Proxy != nil, tr.TLSClientConfig.MinVersion)
		}
	case *h1Transport: // dials only through its dialer: no proxy
		if tr.tlsConfig.MinVersion < tls.VersionTLS12 {
			t.Fatalf("transport settings: min=%x", tr.tlsConfig.MinVersion)
		}
	default:
		t.Fatalf("transport %T", tr)
	}
	if c.Timeout != 0 {
		t.Fatalf("client timeout %v, want none", c.Timeout)
	}
}

// h2Receiver starts a TLS receiver that offers HTTP/2 and records the
// protocol of each request, with the ALPN protocol it negotiated, and
// counts the connections it accepts.
func h2Receiver(t *testing.T) (srv *httptest.Server, seen func() []string, conns *atomic.Int32) {
	t.Helper()
	var (
		mu     sync.Mutex
		protos []string
	)
	seen = func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), protos...)
	}
	conns = new(atomic.Int32)
	srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		protos = append(protos, fmt.Sprintf("HTTP/%d %s", r.ProtoMajor, r.TLS.NegotiatedProtocol))
		mu.Unlock()
		io.WriteString(w, "ok")
	}))
	srv.EnableHTTP2 = true
	// Offer both, as http.Server.ServeTLS does (httptest alone offers
	// only h2), so the test sees what the client asked for.
	srv.TLS = &tls.Config{NextProtos: []string{"h2", "http/1.1"}}
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, seen, conns
}

// TestClientHTTPVersions: the client speaks HTTP/2 to a receiver that
// offers it, and HTTP/1.1 when HTTP1Only is set.
func TestClientHTTPVersions(t *testing.T) {
	for _, tc := range []struct {
		name      string
		http1Only bool
		want      string
	}{
		{"default", false, "HTTP/2 h2"},
		{"http1 only", true, "HTTP/1 http/1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, seen, _ := h2Receiver(t)
			c := NewClient(ClientOptions{Policy: Policy{AllowPrivate: true}, RootCAs: certPool(srv), HTTP1Only: tc.http1Only})
			defer c.CloseIdleConnections()
			resp, err := c.Post(srv.URL, "application/json", strings.NewReader("{}"))
			if err != nil {
				t.Fatalf("POST: %v", err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if got := strings.Join(seen(), ", "); got != tc.want {
				t.Errorf("receiver saw %q, want %q", got, tc.want)
			}
		})
	}
}

// TestClientKeepsHTTP1ConnectionsAlive: sequential deliveries over HTTP/1.1
// reuse one connection rather than paying a TLS handshake each.
func TestClientKeepsHTTP1ConnectionsAlive(t *testing.T) {
	srv, seen, conns := h2Receiver(t)
	c := NewClient(ClientOptions{Policy: Policy{AllowPrivate: true}, RootCAs: certPool(srv), HTTP1Only: true})
	defer c.CloseIdleConnections()
	const n = 20
	for i := range n {
		resp, err := c.Post(srv.URL, "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatalf("POST %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	got := seen()
	if len(got) != n {
		t.Fatalf("receiver saw %d requests, want %d", len(got), n)
	}
	for i, p := range got {
		if p != "HTTP/1 http/1.1" {
			t.Fatalf("request %d arrived as %q, want HTTP/1.1", i, p)
		}
	}
	if got := conns.Load(); got != 1 {
		t.Errorf("%d requests opened %d connections, want 1", n, got)
	}
}
