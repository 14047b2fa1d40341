package sink

import (
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func certPool(srv *httptest.Server) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(srv.Certificate())
	return p
}

func TestClientDoesNotFollowRedirects(t *testing.T) {
	var targetHits atomic.Int32
	target := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		targetHits.Add(1)
	}))
	defer target.Close()
	src := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/x", http.StatusFound)
	}))
	defer src.Close()

	c := NewClient(ClientOptions{Policy: Policy{AllowPrivate: true}, RootCAs: certPool(src)})
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
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:1")
	t.Setenv("HTTP_PROXY", "http://127.0.0.1:1")
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()

	// Default policy: loopback refused before any connection.
	c := NewClient(ClientOptions{RootCAs: certPool(srv)})
	_, err := c.Get(srv.URL)
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("GET loopback with default policy: %v", err)
	}

	// Untrusted certificate refused.
	c = NewClient(ClientOptions{Policy: Policy{AllowPrivate: true}})
	if _, err := c.Get(srv.URL); err == nil {
		t.Fatal("untrusted certificate accepted")
	}

	// Allowed, and the environment's proxy is not used.
	c = NewClient(ClientOptions{Policy: Policy{AllowPrivate: true}, RootCAs: certPool(srv)})
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	resp.Body.Close()
	if tr := c.Transport.(*http.Transport); tr.Proxy != nil || tr.TLSClientConfig.MinVersion < 0x0303 || !tr.ForceAttemptHTTP2 {
		t.Fatalf("transport settings: proxy set=%v min=%x h2=%v", tr.Proxy != nil, tr.TLSClientConfig.MinVersion, tr.ForceAttemptHTTP2)
	}
	if c.Timeout != 0 {
		t.Fatalf("client timeout %v, want none", c.Timeout)
	}
}
