package sink

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/store"
)

// untrustedCert returns a self-signed certificate for 127.0.0.1 that no
// test pool trusts.
func untrustedCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "untrusted"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"example.com"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// flakyTLS makes rc's first n TLS handshakes present an untrusted
// certificate.
func flakyTLS(t *testing.T, n int32) func(*httptest.Server) {
	bad := untrustedCert(t)
	var handshakes atomic.Int32
	return func(srv *httptest.Server) {
		srv.TLS = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			if handshakes.Add(1) <= n {
				return &tls.Config{Certificates: []tls.Certificate{bad}}, nil
			}
			return nil, nil
		}}
	}
}

// reset closes the connection under the request with a TCP RST.
func reset(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	if tc, ok := conn.(*tls.Conn); ok {
		if tcp, ok := tc.NetConn().(*net.TCPConn); ok {
			_ = tcp.SetLinger(0)
		}
	}
	_ = conn.Close()
}

// TestFaultInjection runs one delivery against a real HTTPS receiver that
// fails its first attempts in a given way, then answers 200: every kind of
// failure but 410 is retried, recorded (status or error) and finally
// delivered, signed, with the same webhook-id.
func TestFaultInjection(t *testing.T) {
	type fault struct {
		name     string
		failures int
		timeout  time.Duration // per attempt; 0 = 5s
		respond  func(w http.ResponseWriter, r *http.Request)
		server   func(*httptest.Server) // changes the receiver before it starts
		dns      bool                   // the URL's name fails to resolve at first
		status   int                    // recorded for a failed attempt
		errPart  string                 // part of the recorded error
	}
	faults := []fault{
		{name: "503 run", failures: 3, status: 503,
			respond: func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) }},
		{name: "500", failures: 1, status: 500,
			respond: func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "oops", http.StatusInternalServerError) }},
		{name: "400", failures: 1, status: 400,
			respond: func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "bad", http.StatusBadRequest) }},
		{name: "302 not followed", failures: 1, status: 302,
			respond: func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/elsewhere", http.StatusFound) }},
		{name: "hang past the timeout", failures: 2, timeout: time.Second, errPart: "timeout after 1s",
			respond: func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }},
		{name: "connection reset", failures: 2, errPart: "",
			respond: func(w http.ResponseWriter, _ *http.Request) { reset(w) }},
		{name: "tls error", failures: 2, errPart: "certificate",
			server: flakyTLS(t, 2)},
		{name: "dns failure", failures: 2, dns: true, errPart: "no such host"},
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			var dns *fakeDNS
			if f.dns {
				dns = newFakeDNS(t)
				dns.setStages("example.com", nil, nil, []string{"127.0.0.1"})
			}
			h := newHarness(t, func(h *harness, c *Config) {
				c.Schedule = Schedule{5 * time.Millisecond, 5 * time.Millisecond, 5 * time.Millisecond, 5 * time.Millisecond}
				if f.timeout > 0 {
					c.Timeout = f.timeout
				}
				if dns != nil {
					c.Client = NewClient(ClientOptions{Policy: Policy{AllowPrivate: true}, Resolver: dns.resolver(), RootCAs: h.pool})
				}
			})
			var served atomic.Int32
			rc := &receiver{}
			rc.secret, _ = NewSecret()
			rc.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				i := int(served.Add(1)) - 1
				body, _ := io.ReadAll(r.Body)
				if f.respond != nil && i < f.failures {
					f.respond(w, r)
					return
				}
				rc.mu.Lock()
				rc.reqs = append(rc.reqs, received{id: r.Header.Get("webhook-id"), header: r.Header.Clone(), body: body})
				rc.mu.Unlock()
				io.WriteString(w, "ok")
			}))
			rc.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
			if f.server != nil {
				f.server(rc.srv)
			}
			rc.srv.StartTLS()
			t.Cleanup(rc.srv.Close)
			w := h.webhook(rc, func(w *store.Webhook) {
				if f.dns {
					_, port, _ := net.SplitHostPort(rc.srv.Listener.Addr().String())
					w.URL = "https://example.com:" + port + "/hook"
				}
			})
			d := h.enqueue(w.ID, 1)[0]
			h.d.Start()

			got := h.waitState(d.ID, store.StateSucceeded)
			if got.Attempts != f.failures+1 {
				t.Errorf("attempts %d, want %d", got.Attempts, f.failures+1)
			}
			res := h.waitResults(d.ID, f.failures+1)
			for i, r := range res[:f.failures] {
				if r.Outcome != OutcomeRetry || r.Attempt != i+1 || r.Status != f.status {
					t.Errorf("result %d: %+v", i, r)
				}
			}
			atts, _, err := h.st.ListAttempts(w.ID, "", 10)
			if err != nil || len(atts) != f.failures+1 {
				t.Fatalf("ListAttempts = %d, %v", len(atts), err)
			}
			for _, a := range atts[1:] { // newest first: the failures
				if a.Status != f.status || !strings.Contains(a.Error, f.errPart) || (f.status == 0 && a.Error == "") {
					t.Errorf("failed attempt recorded as status %d, error %q; want %d, %q", a.Status, a.Error, f.status, f.errPart)
				}
				if a.Duration <= 0 || a.At.IsZero() {
					t.Errorf("failed attempt without time or duration: %+v", a)
				}
			}
			if atts[0].Status != 200 || atts[0].Error != "" {
				t.Errorf("last attempt %+v", atts[0])
			}
			reqs := rc.requests()
			if len(reqs) != 1 || reqs[0].id != d.ID {
				t.Fatalf("receiver got %d successful requests (want 1, webhook-id %s)", len(reqs), d.ID)
			}
			verifyWith(t, rc.secret, reqs[0])
			if hl := h.st.Health(w.ID); !hl.IsZero() {
				t.Errorf("health after success %+v, want zero", hl)
			}
		})
	}
}

// TestRetryAfterHoldsWebhook: a 429 with Retry-After makes the whole
// webhook wait, not only the delivery that got it.
func TestRetryAfterHoldsWebhook(t *testing.T) {
	h := newHarness(t, func(_ *harness, c *Config) { c.Schedule = Schedule{time.Millisecond} })
	type hit struct {
		id string
		at time.Time
	}
	hits := make(chan hit, 10)
	rc := h.newReceiver(func(i int, w http.ResponseWriter, r *http.Request) {
		hits <- hit{r.Header.Get("webhook-id"), time.Now()}
		if i == 0 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
		}
	})
	w := h.webhook(rc)
	first := h.enqueue(w.ID, 1)[0]
	h.d.Start()
	r1 := <-hits
	h.waitResults(first.ID, 1)
	if hl := h.st.Health(w.ID); !hl.HoldUntil.After(h.clock.Now().Add(500 * time.Millisecond)) {
		t.Fatalf("health after 429 %+v, want a hold of about 1s", hl)
	}
	second := h.enqueue(w.ID, 1)[0] // due now, but the webhook is held
	var got []hit
	for len(got) < 2 {
		select {
		case x := <-hits:
			got = append(got, x)
		case <-time.After(10 * time.Second):
			t.Fatalf("receiver got %d more requests, want 2", len(got))
		}
	}
	for _, x := range got {
		if gap := x.at.Sub(r1.at); gap < 900*time.Millisecond {
			t.Errorf("request for %s %v after the 429, want at least the 1s asked", x.id, gap)
		}
	}
	if got[0].id != first.ID || got[1].id != second.ID {
		t.Errorf("after the hold: %s then %s, want the retried delivery first", got[0].id, got[1].id)
	}
	h.waitState(second.ID, store.StateSucceeded)
}

// verifyWith checks a request's signature with the reference library.
func verifyWith(t *testing.T, secret string, r received) {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(r.body, r.header); err != nil {
		t.Errorf("reference Verify: %v", err)
	}
}
