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
	// HTTP1Only makes the client speak only HTTP/1.1, through this
	// package's own transport: each attempt is one write (one TLS record,
	// one system call) on one of up to MaxIdleConnsPerHost kept-alive
	// connections, and its response is read on the caller's goroutine.
	// Otherwise the client is net/http's, which speaks HTTP/2 to receivers
	// that offer it. Draining a backlog to a local Go receiver on 2 cores,
	// over ten runs, the HTTP/1.1 transport delivered 9-45 % more per
	// second than net/http's HTTP/2 client, with 9-32 % less CPU per
	// delivery on both ends.
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
// overall timeout: callers bound each request with its context. Callers
// that send through its Transport directly, as the dispatcher does, get
// the same behaviour.
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
	var rt http.RoundTripper = tr
	if o.HTTP1Only {
		rt = &h1Transport{
			dial: d.DialContext,
			tlsConfig: &tls.Config{
				MinVersion:         tls.VersionTLS12,
				RootCAs:            o.RootCAs,
				NextProtos:         []string{"http/1.1"},
				ClientSessionCache: tls.NewLRUClientSessionCache(64),
				// Full-size records from the start, so that a request of
				// up to 16 KiB is one record, one write.
				DynamicRecordSizingDisabled: true,
			},
			handshakeTimeout: tr.TLSHandshakeTimeout,
			maxIdlePerHost:   perHost,
			maxIdle:          tr.MaxIdleConns,
			idleTimeout:      tr.IdleConnTimeout,
			maxHeaderBytes:   tr.MaxResponseHeaderBytes,
		}
	}
	return &http.Client{
		Transport: rt,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}
