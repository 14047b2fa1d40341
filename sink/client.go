package sink

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"time"
)

// ClientOptions configures NewClient.
type ClientOptions struct {
	// Policy decides which addresses may be dialled, on every connection
	// (allow-lists included); the zero Policy allows only global unicast.
	Policy   Policy
	Resolver *net.Resolver  // nil = net.DefaultResolver
	RootCAs  *x509.CertPool // nil = the system pool
	// MaxIdleConnsPerHost is how many idle connections to one host are
	// kept for reuse; 0 = 8. Set it to the most attempts that can be in
	// flight, or a busy HTTP/1.1 receiver costs a TLS handshake per
	// delivery (measured: 540 deliveries/s to one receiver with 8, against
	// thousands with 64).
	MaxIdleConnsPerHost int
	// HTTP1Only makes the client offer only http/1.1 in ALPN; by default
	// it speaks HTTP/2 to receivers that offer it. Go's HTTP/2 client
	// carries every attempt to a receiver over one connection, while
	// HTTP/1.1 spreads them over up to MaxIdleConnsPerHost kept-alive
	// connections, each with its own TLS handshake. Draining a backlog to
	// a local Go receiver on 2 cores, the two are within noise of each
	// other; under mixed proxy and delivery load in one Caddy, HTTP/2 cost
	// less (event calls at saturation 64-76 % of plain against 66-67 %,
	// added p99 at 2,000/s +16-20 against +26-28 ms), so it stays the
	// default.
	HTTP1Only bool
}

// dialTimeout bounds one TCP connect, so that an unreachable address leaves
// time to try the host's next one within an attempt.
const dialTimeout = 10 * time.Second

// NewClient returns the HTTP client used for deliveries: it connects only
// through a Dialer enforcing o.Policy, never uses a proxy from the
// environment, requires TLS 1.2 or later, keeps connections alive, and
// never follows redirects (a 3xx is returned as the response). It speaks
// HTTP/2 to receivers that offer it, unless o.HTTP1Only is set. It has no
// overall timeout: callers bound each request with its context.
func NewClient(o ClientOptions) *http.Client {
	d := &Dialer{Policy: o.Policy, Resolver: o.Resolver, Timeout: dialTimeout}
	perHost := o.MaxIdleConnsPerHost
	if perHost <= 0 {
		perHost = 8
	}
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            d.DialContext,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: o.RootCAs},
		TLSHandshakeTimeout:    10 * time.Second,
		ForceAttemptHTTP2:      !o.HTTP1Only,
		MaxIdleConns:           max(256, perHost),
		MaxIdleConnsPerHost:    perHost,
		IdleConnTimeout:        90 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 64 << 10,
		// Send HTTP/2 header fields without HPACK indexing (a table of
		// one byte holds no field). Every delivery carries values seen
		// once (webhook-id, webhook-timestamp, webhook-signature):
		// indexing them filled and evicted the table on every request,
		// pushing out the fields that do repeat. In a drain's CPU
		// profile, encoding request headers fell from 11 % to 5 %; each
		// request's header block grows by the few repeated fields, some
		// 90 bytes (162 against 74 in TestClientDoesNotIndexHeaders).
		HTTP2: &http.HTTP2Config{MaxEncoderHeaderTableSize: 1},
	}
	if o.HTTP1Only {
		// Offer only http/1.1 in ALPN, and give net/http an empty, non-nil
		// TLSNextProto, its documented switch that keeps HTTP/2 from being
		// wired up at all.
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}
