package sink

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rawTLSServer accepts TLS connections offering only http/1.1 and hands
// each to serve, so that a test controls the bytes a receiver sends. conns
// counts the connections accepted.
func rawTLSServer(t *testing.T, serve func(c net.Conn, br *bufio.Reader)) (url string, pool *httptest.Server, conns *atomic.Int32) {
	t.Helper()
	cert := httptest.NewUnstartedServer(nil)
	cert.StartTLS() // only for its certificate, which trusts 127.0.0.1
	t.Cleanup(cert.Close)
	cfg := cert.TLS.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	conns = new(atomic.Int32)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			wg.Go(func() {
				defer c.Close()
				serve(c, bufio.NewReader(c))
			})
		}
	})
	return "https://" + ln.Addr().String(), cert, conns
}

// readRequest reads one request, body included, or returns nil at the
// connection's end.
func readRequest(t *testing.T, br *bufio.Reader) *http.Request {
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		t.Errorf("reading request body: %v", err)
		return nil
	}
	req.Body = io.NopCloser(strings.NewReader(string(body)))
	return req
}

func h1Client(pool *httptest.Server) *http.Client {
	return NewClient(ClientOptions{Policy: Policy{AllowPrivate: true}, RootCAs: certPool(pool), HTTP1Only: true})
}

// post sends a delivery-like POST and returns the response with its body
// read and closed.
func post(ctx context.Context, c *http.Client, url string) (*http.Response, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(`{"event":"Upload"}`))
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header["webhook-id"] = []string{"msg_1"}
	resp, err := c.Transport.RoundTrip(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

// TestH1TransportSendsTheRequestIntact: method, target, Host, headers and
// body arrive as given, and a request on a kept-alive connection is one
// write (one TLS record, one system call).
func TestH1TransportSendsTheRequestIntact(t *testing.T) {
	got := make(chan *http.Request, 2)
	url, pool, _ := rawTLSServer(t, func(c net.Conn, br *bufio.Reader) {
		for {
			r := readRequest(t, br)
			if r == nil {
				return
			}
			got <- r
			io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
		}
	})
	c := h1Client(pool)
	defer c.CloseIdleConnections()
	writes := countWrites(c)
	for i := range 2 {
		// The first request also carries the handshake's writes.
		before := writes.Load()
		resp, _, err := post(context.Background(), c, url+"/hook/a?x=1&y=%2F")
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if n := writes.Load() - before; i == 1 && n != 1 {
			t.Errorf("request on a kept-alive connection written in %d writes, want 1", n)
		}
		r := <-got
		body, _ := io.ReadAll(r.Body)
		host := strings.TrimPrefix(url, "https://")
		for _, c := range []struct{ what, got, want string }{
			{"method", r.Method, http.MethodPost},
			{"target", r.RequestURI, "/hook/a?x=1&y=%2F"},
			{"proto", r.Proto, "HTTP/1.1"},
			{"host", r.Host, host},
			{"content-type", r.Header.Get("Content-Type"), "application/json"},
			{"webhook-id", r.Header.Get("Webhook-Id"), "msg_1"},
			{"content-length", r.Header.Get("Content-Length"), "18"},
			{"body", string(body), `{"event":"Upload"}`},
		} {
			if c.got != c.want {
				t.Errorf("request %d %s: got %q, want %q", i, c.what, c.got, c.want)
			}
		}
	}
}

// TestH1TransportWritesALargeRequestOnce: a 12 KiB delivery on a
// kept-alive connection is still one write: TLS records are full-size from
// the connection's start.
func TestH1TransportWritesALargeRequestOnce(t *testing.T) {
	url, pool, _ := rawTLSServer(t, func(c net.Conn, br *bufio.Reader) {
		for readRequest(t, br) != nil {
			io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
		}
	})
	c := h1Client(pool)
	defer c.CloseIdleConnections()
	writes := countWrites(c)
	body := strings.Repeat("x", 12<<10)
	for i := range 2 {
		before := writes.Load()
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		resp, err := c.Transport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if n := writes.Load() - before; i == 1 && n != 1 {
			t.Errorf("12 KiB request on a kept-alive connection written in %d writes, want 1", n)
		}
	}
}

// countWrites makes c's transport count the writes on the connections it
// dials from now on.
func countWrites(c *http.Client) *atomic.Int32 {
	writes := new(atomic.Int32)
	tr := c.Transport.(*h1Transport)
	dial := tr.dial
	tr.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &countingConn{Conn: conn, writes: writes}, nil
	}
	return writes
}

// countingConn counts Write calls.
type countingConn struct {
	net.Conn
	writes *atomic.Int32
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestH1TransportKeepsAndDropsConnections: a connection is reused only
// after a response read to its end that allows it.
func TestH1TransportKeepsAndDropsConnections(t *testing.T) {
	for _, tc := range []struct {
		name     string
		response string
		readAll  bool
		want     int32 // connections for two requests
	}{
		{"keep-alive", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true, 1},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", true, 1},
		{"connection close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", true, 2},
		{"http/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", true, 2},
		{"body not read to its end", "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + strings.Repeat("x", 100000), false, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var served atomic.Int32
			url, pool, conns := rawTLSServer(t, func(c net.Conn, br *bufio.Reader) {
				for readRequest(t, br) != nil {
					served.Add(1)
					io.WriteString(c, tc.response)
				}
			})
			c := h1Client(pool)
			defer c.CloseIdleConnections()
			for i := range 2 {
				req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader("{}"))
				resp, err := c.Transport.RoundTrip(req)
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if tc.readAll {
					if b, err := io.ReadAll(resp.Body); err != nil || string(b) != "ok" {
						t.Fatalf("request %d: body %q, %v", i, b, err)
					}
				} else {
					io.ReadFull(resp.Body, make([]byte, 10))
				}
				resp.Body.Close()
			}
			if got := conns.Load(); got != tc.want {
				t.Errorf("two requests used %d connections, want %d", got, tc.want)
			}
			if got := served.Load(); got != 2 {
				t.Errorf("receiver served %d requests, want 2", got)
			}
		})
	}
}

// TestH1TransportReusesOnlyLiveConnections: a kept-alive connection the
// receiver closed, or wrote to unasked, while it was idle costs the request
// a new connection, not a failed attempt; but a request the receiver began
// to answer is never sent again.
func TestH1TransportReusesOnlyLiveConnections(t *testing.T) {
	const ok = "HTTP/1.1 204 No Content\r\n\r\n"
	for _, tc := range []struct {
		name string
		// second is what the receiver does with a connection's second
		// request: it has already read it.
		second     func(c net.Conn)
		concurrent bool // the first requests run two at a time
		wantErr    string
		wantConns  int32
		wantReqs   int32 // requests the receiver read
	}{
		{name: "closed while idle", wantConns: 3, wantReqs: 3},
		{name: "two closed while idle", concurrent: true, wantConns: 3, wantReqs: 3},
		{name: "408 while idle", wantConns: 3, wantReqs: 3},
		{name: "closed with the next request unanswered", second: func(net.Conn) {}, wantConns: 3, wantReqs: 5},
		{name: "closed after the first byte of an answer", second: func(c net.Conn) { io.WriteString(c, "HTTP/1.1 200") }, wantErr: "unexpected EOF", wantConns: 2, wantReqs: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var reqs, finished atomic.Int32
			url, pool, conns := rawTLSServer(t, func(c net.Conn, br *bufio.Reader) {
				defer func() {
					c.Close()
					finished.Add(1)
				}()
				if readRequest(t, br) == nil {
					return
				}
				reqs.Add(1)
				io.WriteString(c, ok)
				switch {
				case tc.second != nil:
					if readRequest(t, br) != nil {
						reqs.Add(1)
						tc.second(c)
					}
				case tc.name == "408 while idle":
					io.WriteString(c, "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n")
				}
				// Returning closes the connection.
			})
			c := h1Client(pool)
			defer c.CloseIdleConnections()
			first := 2
			if tc.concurrent {
				first = 3
				var wg sync.WaitGroup
				for range 2 {
					wg.Go(func() {
						if _, _, err := post(context.Background(), c, url); err != nil {
							t.Error(err)
						}
					})
				}
				wg.Wait()
			} else if _, _, err := post(context.Background(), c, url); err != nil {
				t.Fatal(err)
			}
			// Wait until the receiver has closed (or, with a second
			// request to read, kept) the connections the first requests
			// left idle, its 408 written first: otherwise the 408 could
			// still be on its way when the next request is written, and
			// answer it, as it would with any HTTP/1.1 client.
			var lastErr error
			for i := first; i <= 3; i++ {
				if tc.second == nil {
					waitFor(t, "the receiver to close", func() bool { return finished.Load() >= int32(i-1) })
				} else {
					waitFor(t, "the earlier requests", func() bool { return reqs.Load() >= int32(i-1) })
				}
				resp, _, err := post(context.Background(), c, url)
				if err != nil {
					lastErr = err
					continue
				}
				if resp.StatusCode != http.StatusNoContent {
					t.Errorf("request %d: status %d, want 204", i, resp.StatusCode)
				}
			}
			switch {
			case tc.wantErr == "" && lastErr != nil:
				t.Errorf("error %v", lastErr)
			case tc.wantErr != "" && (lastErr == nil || !strings.Contains(lastErr.Error(), tc.wantErr)):
				t.Errorf("error %v, want one with %q", lastErr, tc.wantErr)
			}
			if got := conns.Load(); got != tc.wantConns {
				t.Errorf("%d connections, want %d", got, tc.wantConns)
			}
			if got := reqs.Load(); got != tc.wantReqs {
				t.Errorf("receiver read %d requests, want %d", got, tc.wantReqs)
			}
		})
	}
}

// TestH1TransportResponses: what the receiver answers, and what the
// transport makes of it.
func TestH1TransportResponses(t *testing.T) {
	for _, tc := range []struct {
		name       string
		response   string
		wantStatus int
		wantErr    string
	}{
		{"informational responses skipped", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n", 202, ""},
		{"redirect returned, not followed", "HTTP/1.1 302 Found\r\nLocation: https://example.com/\r\nContent-Length: 0\r\n\r\n", 302, ""},
		{"switching protocols refused", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", 0, "101"},
		{"headers over the limit", "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", 70<<10) + "\r\n\r\n", 0, "exceed"},
		{"not HTTP", "SSH-2.0-OpenSSH\r\n\r\n", 0, "malformed HTTP"},
		{"closed without an answer", "", 0, "EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, pool, _ := rawTLSServer(t, func(c net.Conn, br *bufio.Reader) {
				if readRequest(t, br) != nil {
					io.WriteString(c, tc.response)
				}
			})
			c := h1Client(pool)
			defer c.CloseIdleConnections()
			resp, _, err := post(context.Background(), c, url)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.wantStatus {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.wantStatus)
			}
		})
	}
}

// TestH1TransportStopsWithItsContext: a receiver that never answers holds
// the request only until its context ends, and the error says why.
func TestH1TransportStopsWithItsContext(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	url, pool, _ := rawTLSServer(t, func(c net.Conn, br *bufio.Reader) {
		readRequest(t, br)
		<-release
	})
	c := h1Client(pool)
	defer c.CloseIdleConnections()

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, _, err := post(ctx, c, url); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("deadline: error %v, want context.DeadlineExceeded", err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	arrived := make(chan struct{})
	url2, pool2, _ := rawTLSServer(t, func(c net.Conn, br *bufio.Reader) {
		readRequest(t, br)
		close(arrived)
		<-release
	})
	c2 := h1Client(pool2)
	defer c2.CloseIdleConnections()
	go func() {
		<-arrived
		cancel()
	}()
	if _, _, err := post(ctx, c2, url2); !errors.Is(err, context.Canceled) {
		t.Errorf("cancel: error %v, want context.Canceled", err)
	}
}

// TestH1TransportRefusesWhatItCannotSend: no plain http, and no header
// that would split the message.
func TestH1TransportRefusesWhatItCannotSend(t *testing.T) {
	var served atomic.Int32
	url, pool, _ := rawTLSServer(t, func(c net.Conn, br *bufio.Reader) {
		if readRequest(t, br) != nil {
			served.Add(1)
			io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
		}
	})
	c := h1Client(pool)
	defer c.CloseIdleConnections()

	req, _ := http.NewRequest(http.MethodPost, strings.Replace(url, "https", "http", 1), strings.NewReader("{}"))
	if _, err := c.Transport.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "https") {
		t.Errorf("plain http: error %v", err)
	}
	req, _ = http.NewRequest(http.MethodPost, url, strings.NewReader("{}"))
	req.Header["X-Evil"] = []string{"a\r\nX-Injected: 1"}
	if _, err := c.Transport.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "X-Evil") {
		t.Errorf("header with CRLF: error %v", err)
	}
	if n := served.Load(); n != 0 {
		t.Errorf("receiver served %d requests, want 0", n)
	}

}

// TestH1TransportWritesFramingItself: Host, Content-Length, Connection and
// Transfer-Encoding set by the caller, in any case, are not sent: the
// transport writes the framing from the request itself.
func TestH1TransportWritesFramingItself(t *testing.T) {
	got := make(chan *http.Request, 1)
	url, pool, _ := rawTLSServer(t, func(c net.Conn, br *bufio.Reader) {
		got <- readRequest(t, br)
		io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
	})
	c := h1Client(pool)
	defer c.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader("{}"))
	req.Header["content-length"] = []string{"999"}
	req.Header["Connection"] = []string{"close"}
	req.Header["HOST"] = []string{"evil.example"}
	req.Header["Transfer-Encoding"] = []string{"chunked"}
	resp, err := c.Transport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	r := <-got
	if r == nil {
		t.Fatal("the receiver could not read the request")
	}
	body, _ := io.ReadAll(r.Body)
	if r.ContentLength != 2 || string(body) != "{}" || r.Host != strings.TrimPrefix(url, "https://") || r.Close || len(r.TransferEncoding) != 0 {
		t.Errorf("receiver saw Content-Length %d, body %q, Host %q, Close %v, Transfer-Encoding %v", r.ContentLength, body, r.Host, r.Close, r.TransferEncoding)
	}
}
