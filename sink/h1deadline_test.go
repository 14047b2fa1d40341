package sink

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestH1TransportDeadline: the dispatcher's path (roundTrip with a
// deadline and no context timer) gives up once the deadline passes,
// whether the receiver stalls its handshake, its answer or its body, and
// says so with context.DeadlineExceeded; a stopped context still wins.
func TestH1TransportDeadline(t *testing.T) {
	// The servers' goroutines wait on release until their test ends.
	stallAnswer := func(release chan struct{}) func(c net.Conn, br *bufio.Reader) {
		return func(c net.Conn, br *bufio.Reader) {
			readRequest(t, br)
			<-release
		}
	}
	stallBody := func(release chan struct{}) func(c net.Conn, br *bufio.Reader) {
		return func(c net.Conn, br *bufio.Reader) {
			readRequest(t, br)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
			<-release
		}
	}
	tests := []struct {
		name     string
		serve    func(release chan struct{}) func(c net.Conn, br *bufio.Reader) // nil: a TCP listener that never handshakes
		readBody bool
	}{
		{name: "handshake", serve: nil},
		{name: "answer", serve: stallAnswer},
		{name: "body", serve: stallBody, readBody: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var raw string
			var c *http.Client
			if tt.serve == nil {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { ln.Close() })
				go func() {
					for {
						conn, err := ln.Accept()
						if err != nil {
							return
						}
						t.Cleanup(func() { conn.Close() })
					}
				}()
				raw = "https://" + ln.Addr().String() + "/hook"
				c = NewClient(ClientOptions{Policy: Policy{AllowPrivate: true}, HTTP1Only: true})
			} else {
				release := make(chan struct{})
				u, srv, _ := rawTLSServer(t, tt.serve(release))
				t.Cleanup(func() { close(release) }) // before the server's cleanup
				raw, c = u+"/hook", h1Client(srv)
			}
			defer c.CloseIdleConnections()
			u, _ := url.Parse(raw)
			req := &http.Request{Method: http.MethodPost, URL: u, ContentLength: 2}
			const budget = 300 * time.Millisecond
			start := time.Now()
			resp, err := c.Transport.(*h1Transport).roundTrip(context.Background(), req, []byte("{}"), extras{fields: []headerField{{"webhook-id", "msg_1"}}, deadline: start.Add(budget)})
			if tt.readBody {
				if err != nil {
					t.Fatalf("headers: %v", err)
				}
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil {
					t.Fatal("reading a stalled body succeeded")
				}
				if elapsed := time.Since(start); elapsed < budget {
					t.Errorf("gave up after %v, before the deadline", elapsed)
				}
				return
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("error %v, want context.DeadlineExceeded", err)
			}
			// Well before the handshake's own 10 s timeout: the deadline
			// bounds the dial too.
			if elapsed := time.Since(start); elapsed < budget || elapsed > 5*time.Second {
				t.Errorf("gave up after %v, want soon after %v", elapsed, budget)
			}
		})
	}

	t.Run("stopped", func(t *testing.T) {
		arrived, release := make(chan struct{}), make(chan struct{})
		u, srv, _ := rawTLSServer(t, func(c net.Conn, br *bufio.Reader) {
			readRequest(t, br)
			close(arrived)
			<-release
		})
		t.Cleanup(func() { close(release) }) // before the server's cleanup
		c := h1Client(srv)
		defer c.CloseIdleConnections()
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			<-arrived
			cancel()
		}()
		pu, _ := url.Parse(u)
		req := &http.Request{Method: http.MethodPost, URL: pu}
		_, err := c.Transport.(*h1Transport).roundTrip(ctx, req, []byte("{}"), extras{deadline: time.Now().Add(time.Minute)})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v, want context.Canceled", err)
		}
	})
}

// TestH1TransportSendsPunycodeHost: a host name that is not ASCII is
// dialled and sent as Host in its ASCII form, also when the request was
// made by http.NewRequest (which sets req.Host to the URL's host as
// written).
func TestH1TransportSendsPunycodeHost(t *testing.T) {
	got := make(chan string, 1)
	u, srv, _ := rawTLSServer(t, func(c net.Conn, br *bufio.Reader) {
		if r := readRequest(t, br); r != nil {
			got <- r.Host
		}
		io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
	})
	c := h1Client(srv)
	defer c.CloseIdleConnections()
	tr := c.Transport.(*h1Transport)
	tr.tlsConfig = tr.tlsConfig.Clone()
	tr.tlsConfig.InsecureSkipVerify = true // the test certificate names no such host
	var dialled string
	tr.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dialled = addr
		var d net.Dialer
		return d.DialContext(ctx, network, strings.TrimPrefix(u, "https://"))
	}
	req, _ := http.NewRequest(http.MethodPost, "https://bücher.example:8443/hook", strings.NewReader("{}"))
	resp, err := c.Transport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	const want = "xn--bcher-kva.example:8443"
	if host := <-got; host != want || dialled != want {
		t.Errorf("sent Host %q and dialled %q, want %q", host, dialled, want)
	}
}
