package sink

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync"
	"time"
)

// h1Transport is the delivery client's HTTP/1.1 transport (versions 1.1).
//
// net/http's Transport hands every request to two goroutines of the
// connection (one writes it, one reads the response). This transport does
// both on the caller's goroutine: it writes the request line, headers and
// body with one Write, so one TLS record and one system call, and parses
// the response with http.ReadResponse. Measured on 2 cores against a Go
// receiver in another process, one POST of a delivery's size cost the
// client about half the CPU of net/http's HTTP/1.1 client and a third of
// its HTTP/2 client, and the receiver's net/http server a third of what
// HTTP/2 costs it.
//
// It sends only https requests whose body it can read into memory (a
// delivery's is), never follows redirects, offers only http/1.1 in ALPN and
// keeps up to maxIdlePerHost connections per host alive.
type h1Transport struct {
	dial             func(ctx context.Context, network, addr string) (net.Conn, error)
	tlsConfig        *tls.Config // NextProtos http/1.1; ServerName set per host
	handshakeTimeout time.Duration
	maxIdlePerHost   int
	idleTimeout      time.Duration
	maxHeaderBytes   int64

	mu        sync.Mutex
	idle      map[string][]*h1Conn // by host:port, most recently used last
	lastSweep time.Time
}

// h1Conn is one kept-alive connection.
type h1Conn struct {
	addr string
	conn net.Conn
	// lr limits what br reads from conn while response headers are parsed.
	lr        io.LimitedReader
	br        *bufio.Reader
	wbuf      []byte
	idleSince time.Time
}

// aLongTimeAgo is a deadline that has passed: setting it makes blocked
// reads and writes on a connection return at once.
var aLongTimeAgo = time.Unix(1, 0)

var _ http.RoundTripper = (*h1Transport)(nil)

// RoundTrip sends req and reads the response's headers. The caller must
// close the response body; a connection whose response body was read to
// its end goes back to the idle pool.
func (t *h1Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := requestBody(req)
	if err != nil {
		return nil, err
	}
	u := req.URL
	if u == nil || u.Scheme != "https" || u.Host == "" {
		return nil, errors.New("http/1.1 transport: only https URLs with a host are sent")
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "443")
	}
	ctx := req.Context()
	// A kept-alive connection may have been closed by the receiver while
	// idle, which shows only when the response is read: then the request
	// goes once more, on a new connection. A delivery may arrive twice
	// anyway (webhook-id tells the receiver), so this is no new risk.
	for attempt := 0; ; attempt++ {
		pc, reused, err := t.getConn(ctx, addr, u.Hostname())
		if err != nil {
			return nil, contextError(ctx, err)
		}
		resp, retry, err := t.exchange(ctx, pc, req, body)
		if err == nil {
			return resp, nil
		}
		if !reused || !retry || attempt > 0 || ctx.Err() != nil {
			return nil, contextError(ctx, err)
		}
	}
}

// exchange sends req on pc and reads its response's headers. retry is true
// when the request failed before any byte of a response arrived, because
// the connection was closed.
func (t *h1Transport) exchange(ctx context.Context, pc *h1Conn, req *http.Request, body []byte) (_ *http.Response, retry bool, _ error) {
	// The context bounds the exchange: once it is done, the connection's
	// deadline passes, and the error then wraps the context's.
	_ = pc.conn.SetDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { _ = pc.conn.SetDeadline(aLongTimeAgo) })
	fail := func(err error, retry bool) (*http.Response, bool, error) {
		stop()
		_ = pc.conn.Close()
		return nil, retry, err
	}
	trace := httptrace.ContextClientTrace(ctx)
	var err error
	pc.wbuf, err = appendRequest(pc.wbuf[:0], req, body)
	if err != nil {
		return fail(err, false)
	}
	_, err = pc.conn.Write(pc.wbuf)
	if trace != nil && trace.WroteRequest != nil {
		trace.WroteRequest(httptrace.WroteRequestInfo{Err: err})
	}
	if err != nil {
		return fail(fmt.Errorf("writing request: %w", err), true)
	}
	resp, err := t.readResponse(pc, req, trace)
	if err != nil {
		// Closed before anything came back: an idle connection the
		// receiver had closed.
		closed := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || isReset(err)
		return fail(err, closed)
	}
	b := &h1Body{rc: resp.Body, t: t, pc: pc, stop: stop,
		reusable: !resp.Close && resp.ProtoAtLeast(1, 1), eof: resp.Body == http.NoBody}
	resp.Body = b
	return resp, false, nil
}

// isReset reports whether err is a connection reset or broken pipe.
func isReset(err error) bool {
	s := err.Error()
	return strings.Contains(s, "connection reset") || strings.Contains(s, "broken pipe")
}

// readResponse reads the response to req from pc, skipping 1xx
// informational responses, and calls the trace's GotFirstResponseByte.
func (t *h1Transport) readResponse(pc *h1Conn, req *http.Request, trace *httptrace.ClientTrace) (*http.Response, error) {
	first := true
	for {
		pc.lr.N = t.maxHeaderBytes
		if first && trace != nil && trace.GotFirstResponseByte != nil {
			if _, err := pc.br.Peek(1); err != nil {
				return nil, fmt.Errorf("reading response: %w", err)
			}
			trace.GotFirstResponseByte()
		}
		first = false
		resp, err := http.ReadResponse(pc.br, req)
		if err != nil {
			if pc.lr.N <= 0 {
				return nil, fmt.Errorf("response headers exceed %d bytes", t.maxHeaderBytes)
			}
			return nil, fmt.Errorf("reading response: %w", err)
		}
		pc.lr.N = math.MaxInt64
		switch {
		case resp.StatusCode == http.StatusSwitchingProtocols:
			return nil, errors.New("unexpected 101 Switching Protocols")
		case resp.StatusCode >= 100 && resp.StatusCode < 200:
			continue // informational: the final response follows
		}
		return resp, nil
	}
}

// requestBody reads req's body, if any, and closes it.
func requestBody(req *http.Request) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	defer req.Body.Close()
	var b []byte
	var err error
	if req.ContentLength > 0 {
		b = make([]byte, req.ContentLength)
		_, err = io.ReadFull(req.Body, b)
	} else {
		b, err = io.ReadAll(req.Body)
	}
	if err != nil {
		return nil, fmt.Errorf("reading request body: %w", err)
	}
	return b, nil
}

// appendRequest appends req, as an HTTP/1.1 request with body, to b. It
// refuses header names and values that would break the message.
func appendRequest(b []byte, req *http.Request, body []byte) ([]byte, error) {
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if !validHeaderValue(host) || !validToken(method) {
		return b, errors.New("invalid method or host")
	}
	b = append(b, method...)
	b = append(b, ' ')
	b = append(b, req.URL.RequestURI()...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\n"...)
	for name, values := range req.Header {
		if !validToken(name) {
			return b, fmt.Errorf("invalid header name %q", name)
		}
		switch http.CanonicalHeaderKey(name) {
		case "Host", "Content-Length", "Transfer-Encoding", "Connection":
			continue // written here, or not at all
		}
		for _, v := range values {
			if !validHeaderValue(v) {
				return b, fmt.Errorf("invalid value for header %q", name)
			}
			b = append(b, name...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	if len(body) > 0 || (method != http.MethodGet && method != http.MethodHead) {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(len(body)), 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	return append(b, body...), nil
}

// validToken reports whether s is a non-empty RFC 9110 token, as header
// names and methods must be.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// validHeaderValue reports whether s holds no control character but tab.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// getConn returns an idle connection to addr, or dials a new one; reused
// says which.
func (t *h1Transport) getConn(ctx context.Context, addr, serverName string) (_ *h1Conn, reused bool, _ error) {
	now := time.Now()
	t.mu.Lock()
	var stale []*h1Conn
	var pc *h1Conn
	for idle := t.idle[addr]; len(idle) > 0; idle = t.idle[addr] {
		c := idle[len(idle)-1]
		t.idle[addr] = idle[:len(idle)-1]
		if now.Sub(c.idleSince) > t.idleTimeout {
			stale = append(stale, c)
			continue
		}
		pc = c
		break
	}
	t.mu.Unlock()
	for _, c := range stale {
		_ = c.conn.Close()
	}
	if pc != nil {
		return pc, true, nil
	}
	raw, err := t.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	cfg := t.tlsConfig.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = serverName
	}
	tc := tls.Client(raw, cfg)
	hctx, cancel := context.WithTimeout(ctx, t.handshakeTimeout)
	err = tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		_ = raw.Close()
		return nil, false, fmt.Errorf("tls handshake: %w", err)
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != "" && p != "http/1.1" {
		_ = tc.Close()
		return nil, false, fmt.Errorf("receiver chose protocol %q, not http/1.1", p)
	}
	pc = &h1Conn{addr: addr, conn: tc}
	pc.lr = io.LimitedReader{R: tc, N: math.MaxInt64}
	pc.br = bufio.NewReader(&pc.lr)
	return pc, false, nil
}

// putIdle keeps pc for reuse, unless addr has enough idle connections; it
// also closes connections idle for longer than idleTimeout, at most once
// per half of it.
func (t *h1Transport) putIdle(pc *h1Conn) {
	now := time.Now()
	pc.idleSince = now
	var closing []*h1Conn
	t.mu.Lock()
	if t.idle == nil {
		t.idle = make(map[string][]*h1Conn)
	}
	if len(t.idle[pc.addr]) < t.maxIdlePerHost {
		t.idle[pc.addr] = append(t.idle[pc.addr], pc)
	} else {
		closing = append(closing, pc)
	}
	if now.Sub(t.lastSweep) > t.idleTimeout/2 {
		t.lastSweep = now
		for addr, idle := range t.idle {
			kept := idle[:0]
			for _, c := range idle {
				if now.Sub(c.idleSince) > t.idleTimeout {
					closing = append(closing, c)
					continue
				}
				kept = append(kept, c)
			}
			if len(kept) == 0 {
				delete(t.idle, addr)
			} else {
				t.idle[addr] = kept
			}
		}
	}
	t.mu.Unlock()
	for _, c := range closing {
		_ = c.conn.Close()
	}
}

// CloseIdleConnections closes every idle connection; http.Client's method
// of that name calls it.
func (t *h1Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, conns := range idle {
		for _, c := range conns {
			_ = c.conn.Close()
		}
	}
}

// h1Body is a response body; closing it returns the connection to the idle
// pool if the body was read to its end, and closes the connection
// otherwise (rather than reading an unbounded rest).
type h1Body struct {
	rc       io.ReadCloser
	t        *h1Transport
	pc       *h1Conn
	stop     func() bool // stops the context's cancellation of the connection
	reusable bool        // the response allows keeping the connection
	eof      bool
	closed   bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.closed {
		return 0, errors.New("read on closed response body")
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *h1Body) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	// stop reports false if the context was done: then the connection's
	// deadline is in the past, and it is not reused.
	live := b.stop()
	if b.eof && b.reusable && live && b.pc.br.Buffered() == 0 {
		b.t.putIdle(b.pc)
		return nil
	}
	return b.pc.conn.Close()
}

// contextError returns the context's error, wrapped around err, when ctx
// is done: a cancelled or timed-out request fails with the reason, not
// with the I/O error the past deadline caused.
func contextError(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	return err
}
