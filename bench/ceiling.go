package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/sink"
)

// ceilingMode is one configuration of the bare HTTPS ceiling.
type ceilingMode struct {
	conns     int
	http1Only bool
	// sinkClient sends through the plugin's delivery client
	// (sink.NewClient, through its transport as the dispatcher does)
	// instead of net/http's defaults.
	sinkClient bool
	// inProcess sends to a net/http server in this process instead of the
	// receiver's: the "bare Go HTTPS client and server on the same
	// machine" the project's drain target was set against.
	inProcess bool
}

func (m ceilingMode) String() string {
	v := "HTTP/2"
	if m.http1Only {
		v = "HTTP/1.1"
	}
	c := "a bare Go `http.Client`"
	if m.sinkClient {
		c = "the plugin's delivery client (`sink.NewClient`)"
	}
	if m.inProcess {
		c += " and a net/http server, both in this process"
	}
	return fmt.Sprintf("no store, no dispatcher: %s, %d goroutines, %s", c, m.conns, v)
}

// ceiling measures what the machine can do without the plugin's store and
// dispatcher: m.conns goroutines POST n small JSON bodies, with a
// delivery's headers, to the same receiver, as fast as it answers, through
// net/http's defaults or the plugin's delivery client (m.sinkClient). It is
// the ceiling a drain is compared with: the same client and server stacks,
// with no outbox, claims, signing or completions.
func ceiling(rc *receiver, n int, roots *x509.CertPool, m ceilingMode) drainResult {
	url := rc.url() + "/ceiling"
	if m.inProcess {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusNoContent)
		}))
		srv.EnableHTTP2 = !m.http1Only
		srv.StartTLS()
		defer srv.Close()
		url = srv.URL + "/ceiling"
		roots = x509.NewCertPool()
		roots.AddCert(srv.Certificate())
	}
	rt := ceilingTransport(roots, m)
	if c, ok := rt.(interface{ CloseIdleConnections() }); ok {
		defer c.CloseIdleConnections()
	}
	// A delivery's body and header fields, in size and shape.
	body := []byte(`{"event":"Upload","apiKey":"drain-key","entryIds":["e12345"],"metadataKeys":[],"metadataValues":[]}`)
	sig := "v1," + string(bytes.Repeat([]byte("s"), 44))

	var left atomic.Int64
	left.Store(int64(n))
	var sent atomic.Int64
	var wg sync.WaitGroup
	cpu0 := rc.cpuWithOurs()
	start := time.Now()
	for range m.conns {
		wg.Go(func() {
			for i := left.Add(-1); i >= 0; i = left.Add(-1) {
				req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
				must(err, "ceiling request")
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("User-Agent", "bench-ceiling")
				req.Header["webhook-id"] = []string{"msg_" + strconv.FormatInt(time.Now().UnixNano(), 36)}
				req.Header["webhook-timestamp"] = []string{strconv.FormatInt(time.Now().Unix(), 10)}
				req.Header["webhook-signature"] = []string{sig}
				resp, err := rt.RoundTrip(req)
				if err != nil {
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode < 300 {
					sent.Add(1)
				}
			}
		})
	}
	wg.Wait()
	res := drainResult{elapsed: time.Since(start), delivered: int(sent.Load())}
	res.since(cpu0, rc.cpuWithOurs())
	return res
}

// ceilingTransport returns the transport a ceiling measurement sends
// through.
func ceilingTransport(roots *x509.CertPool, m ceilingMode) http.RoundTripper {
	if m.sinkClient {
		return sink.NewClient(sink.ClientOptions{
			Policy: sink.Policy{AllowPrivate: true}, RootCAs: roots,
			MaxIdleConnsPerHost: m.conns, HTTP1Only: m.http1Only,
		}).Transport
	}
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   !m.http1Only,
		MaxIdleConnsPerHost: m.conns,
	}
	if m.http1Only {
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return tr
}
