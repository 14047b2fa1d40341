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
	"syscall"
	"time"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// h1Transport is the delivery client's HTTP/1.1 transport (versions 1.1).
//
// net/http's Transport hands every request to two goroutines of the
// connection (one writes it, one reads the response). This transport does
// both on the caller's goroutine: it writes the request line, headers and
// body with one Write, so one TLS record and one system call for requests
// up to 16 KiB (records are full-size from the start), and parses the
// response with http.ReadResponse. Measured on 2 cores against a Go
// receiver in another process, one POST of a delivery's size cost the
// client about half the CPU of net/http's HTTP/1.1 client and a third of
// its HTTP/2 client, and the receiver's net/http server a third of what
// HTTP/2 costs it.
//
// It sends only https requests whose body it can read into memory (a
// delivery's is), never follows redirects, offers only http/1.1 in ALPN and
// keeps up to maxIdlePerHost connections per host alive (maxIdle in all),
// checking that the receiver has not closed one before reusing it.
type h1Transport struct {
	dial             func(ctx context.Context, network, addr string) (net.Conn, error)
	tlsConfig        *tls.Config // NextProtos http/1.1; ServerName set per host
	handshakeTimeout time.Duration
	maxIdlePerHost   int
	idleTimeout      time.Duration
	maxHeaderBytes   int64

	maxIdle int // idle connections in all

	mu        sync.Mutex
	idle      map[string][]*h1Conn // by host:port, most recently used last
	idleCount int
	sweeper   *time.Timer // closes expired idle connections while there are any
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
	peek      *peeker // checks it before it is reused
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
	return t.roundTrip(req.Context(), req, body, extras{})
}

// extras are what the dispatcher's attempts ask of a round trip beyond
// RoundTrip's (see roundTrip).
type extras struct {
	// fields are sent after req.Header's.
	fields []headerField
	// deadline, unless zero, bounds the exchange.
	deadline time.Time
	// statusOnly says the caller reads the status and the body, and
	// Retry-After only on a 429 or 503: a common response is then parsed
	// without net/http, into a response without Header
	// (readCommonResponse).
	statusOnly bool
}

// headerField is a header field a request carries besides its Header.
type headerField struct{ name, value string }

// roundTrip is RoundTrip with req's body already in memory (sent as is,
// not copied), its context given apart and the extras x: ctx, not req's,
// cancels the exchange and carries its trace. A non-zero x.deadline bounds
// it, dial and response body included, through the connection's deadline
// rather than a context timer; a failure once it has passed wraps
// context.DeadlineExceeded. The dispatcher sends its attempts this way: in
// a drain, the attempt's timer context and its parsed request were 5-8 %
// of the attempt's CPU.
func (t *h1Transport) roundTrip(ctx context.Context, req *http.Request, body []byte, x extras) (*http.Response, error) {
	deadline := x.deadline
	u := req.URL
	if u == nil || u.Scheme != "https" || u.Host == "" {
		return nil, errors.New("http/1.1 transport: only https URLs with a host are sent")
	}
	// A host name that is not ASCII is dialled, verified and sent in its
	// ASCII (punycode) form, as net/http does.
	hostname, err := asciiHost(u.Hostname())
	if err != nil {
		return nil, err
	}
	port := u.Port()
	if port == "" {
		port = "443"
	}
	addr := net.JoinHostPort(hostname, port)
	if hostname != u.Hostname() && (req.Host == "" || req.Host == u.Host) {
		req = req.Clone(ctx)
		req.Host = addr
		if u.Port() == "" {
			req.Host = hostname
		}
	}
	// A kept-alive connection is checked before it is reused (connAlive),
	// but the receiver may close it just then: if it fails before any
	// byte of an answer, the request goes once more, on a new connection.
	// A receiver that closes a connection without answering has most
	// likely closed an idle one and not handled the request; and a
	// delivery may arrive twice anyway (webhook-id tells).
	pc, reused, err := t.getConn(ctx, addr, hostname, deadline)
	if err != nil {
		return nil, doneError(ctx, deadline, err)
	}
	resp, retry, err := t.exchange(ctx, pc, req, body, reused, x)
	if err == nil {
		return resp, nil
	}
	if !reused || !retry || ctx.Err() != nil || expired(deadline) {
		return nil, doneError(ctx, deadline, err)
	}
	// The other idle connections to addr are as old or older.
	t.closeIdle(addr)
	if pc, _, err = t.dialConn(ctx, addr, hostname, deadline); err != nil {
		return nil, doneError(ctx, deadline, err)
	}
	resp, _, err = t.exchange(ctx, pc, req, body, false, x)
	if err != nil {
		return nil, doneError(ctx, deadline, err)
	}
	return resp, nil
}

// expired reports whether deadline is set and has passed.
func expired(deadline time.Time) bool {
	return !deadline.IsZero() && !time.Now().Before(deadline)
}

// exchange sends req on pc and reads its response's headers. retry is true
// when the request failed before any byte of a response arrived, because
// the connection was closed or reset. retryable says the caller would
// retry such a failure: the trace then does not hear of a failed write.
// x.deadline, unless zero, is the connection's deadline meanwhile.
func (t *h1Transport) exchange(ctx context.Context, pc *h1Conn, req *http.Request, body []byte, retryable bool, x extras) (_ *http.Response, retry bool, _ error) {
	// The context bounds the exchange: once it is done, the connection's
	// deadline passes, and the error then wraps the context's.
	_ = pc.conn.SetDeadline(x.deadline)
	stop := context.AfterFunc(ctx, func() { _ = pc.conn.SetDeadline(aLongTimeAgo) })
	fail := func(err error, retry bool) (*http.Response, bool, error) {
		stop()
		_ = pc.conn.Close()
		return nil, retry, err
	}
	trace := httptrace.ContextClientTrace(ctx)
	var err error
	pc.wbuf, err = appendRequest(pc.wbuf[:0], req, x.fields, body)
	if err != nil {
		return fail(err, false)
	}
	_, err = pc.conn.Write(pc.wbuf)
	if err != nil && retryable && isClosed(err) {
		return fail(fmt.Errorf("writing request: %w", err), true)
	}
	if trace != nil && trace.WroteRequest != nil {
		trace.WroteRequest(httptrace.WroteRequestInfo{Err: err})
	}
	if err != nil {
		return fail(fmt.Errorf("writing request: %w", err), false)
	}
	// Nothing came back before the connection ended: the receiver closed
	// it without handling the request. Any later failure is final.
	if _, err := pc.br.Peek(1); err != nil {
		return fail(fmt.Errorf("reading response: %w", err), isClosed(err))
	}
	if trace != nil && trace.GotFirstResponseByte != nil {
		trace.GotFirstResponseByte()
	}
	var resp *http.Response
	if x.statusOnly {
		resp, _ = readCommonResponse(pc.br, req)
	}
	if resp == nil {
		if resp, err = t.readResponse(pc, req); err != nil {
			return fail(err, false)
		}
	}
	b := &h1Body{rc: resp.Body, t: t, pc: pc, stop: stop,
		reusable: !resp.Close && resp.ProtoAtLeast(1, 1), eof: resp.Body == http.NoBody}
	resp.Body = b
	return resp, false, nil
}

// asciiHost returns host, or its ASCII (punycode) form if it is not
// ASCII.
func asciiHost(host string) (string, error) {
	for i := 0; i < len(host); i++ {
		if host[i] >= utf8.RuneSelf {
			h, err := idna.Lookup.ToASCII(host)
			if err != nil {
				return "", fmt.Errorf("host name %q: %w", host, err)
			}
			return h, nil
		}
	}
	return host, nil
}

// isClosed reports whether err says the peer closed or reset the
// connection.
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// readResponse reads the response to req from pc, skipping 1xx
// informational responses; their headers count against the limit too.
func (t *h1Transport) readResponse(pc *h1Conn, req *http.Request) (*http.Response, error) {
	pc.lr.N = t.maxHeaderBytes
	for {
		resp, err := http.ReadResponse(pc.br, req)
		if err != nil {
			if pc.lr.N <= 0 {
				return nil, fmt.Errorf("response headers exceed %d bytes", t.maxHeaderBytes)
			}
			return nil, fmt.Errorf("reading response: %w", err)
		}
		switch {
		case resp.StatusCode == http.StatusSwitchingProtocols:
			return nil, errors.New("unexpected 101 Switching Protocols")
		case resp.StatusCode >= 100 && resp.StatusCode < 200:
			continue // informational: the final response follows
		}
		pc.lr.N = math.MaxInt64
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

// appendRequest appends req, as an HTTP/1.1 request with fields after its
// Header and with body, to b. It refuses header names and values that
// would break the message.
func appendRequest(b []byte, req *http.Request, fields []headerField, body []byte) ([]byte, error) {
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
	var err error
	for name, values := range req.Header {
		for _, v := range values {
			if b, err = appendField(b, name, v); err != nil {
				return b, err
			}
		}
	}
	for _, f := range fields {
		if b, err = appendField(b, f.name, f.value); err != nil {
			return b, err
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

// appendField appends the header field name: value to b, unless the
// transport writes it itself (Host, Content-Length) or not at all
// (Transfer-Encoding, Connection).
func appendField(b []byte, name, value string) ([]byte, error) {
	if !validToken(name) {
		return b, fmt.Errorf("invalid header name %q", name)
	}
	if strings.EqualFold(name, "Host") || strings.EqualFold(name, "Content-Length") ||
		strings.EqualFold(name, "Transfer-Encoding") || strings.EqualFold(name, "Connection") {
		return b, nil
	}
	if !validHeaderValue(value) {
		return b, fmt.Errorf("invalid value for header %q", name)
	}
	b = append(b, name...)
	b = append(b, ": "...)
	b = append(b, value...)
	return append(b, "\r\n"...), nil
}

// tokenChars marks the bytes an RFC 9110 token may hold: visible ASCII
// but the delimiters. A table, as every field of every attempt is checked.
var tokenChars = func() (t [256]bool) {
	for c := '!'; c < 0x7f; c++ {
		t[c] = !strings.ContainsRune(`"(),/:;<=>?@[\]{}`, c)
	}
	return t
}()

// validToken reports whether s is a non-empty RFC 9110 token, as header
// names and methods must be.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenChars[s[i]] {
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

// getConn returns a live idle connection to addr, or dials a new one;
// reused says which. Idle connections found expired or closed by the
// receiver (connAlive) are closed.
func (t *h1Transport) getConn(ctx context.Context, addr, serverName string, deadline time.Time) (_ *h1Conn, reused bool, _ error) {
	now := time.Now()
	for {
		t.mu.Lock()
		var pc *h1Conn
		if idle := t.idle[addr]; len(idle) > 0 {
			pc = idle[len(idle)-1]
			t.setIdle(addr, idle[:len(idle)-1])
		}
		t.mu.Unlock()
		if pc == nil {
			return t.dialConn(ctx, addr, serverName, deadline)
		}
		if now.Sub(pc.idleSince) <= t.idleTimeout && pc.peek.connAlive() {
			return pc, true, nil
		}
		_ = pc.conn.Close()
	}
}

// dialConn dials addr, through the transport's dialer, and does the TLS
// handshake, by deadline unless it is zero.
func (t *h1Transport) dialConn(ctx context.Context, addr, serverName string, deadline time.Time) (_ *h1Conn, reused bool, _ error) {
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
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
	pc := &h1Conn{addr: addr, conn: tc, peek: newPeeker(tc)}
	pc.lr = io.LimitedReader{R: tc, N: math.MaxInt64}
	pc.br = bufio.NewReader(&pc.lr)
	return pc, false, nil
}

// setIdle sets addr's idle connections, keeping the total count. The
// caller holds t.mu.
func (t *h1Transport) setIdle(addr string, conns []*h1Conn) {
	t.idleCount += len(conns) - len(t.idle[addr])
	if len(conns) == 0 {
		delete(t.idle, addr)
		return
	}
	t.idle[addr] = conns
}

// putIdle keeps pc for reuse, unless addr has maxIdlePerHost idle
// connections or the transport maxIdle in all; while any is kept, a timer
// closes those idle for longer than idleTimeout.
func (t *h1Transport) putIdle(pc *h1Conn) {
	pc.idleSince = time.Now()
	t.mu.Lock()
	if t.idle == nil {
		t.idle = make(map[string][]*h1Conn)
	}
	idle := t.idle[pc.addr]
	if len(idle) >= t.maxIdlePerHost || t.idleCount >= t.maxIdle {
		t.mu.Unlock()
		_ = pc.conn.Close()
		return
	}
	t.setIdle(pc.addr, append(idle, pc))
	if t.sweeper == nil {
		t.sweeper = time.AfterFunc(t.idleTimeout, t.sweep)
	}
	t.mu.Unlock()
}

// sweep closes the connections idle for longer than idleTimeout, and
// comes back while any idle connection is left.
func (t *h1Transport) sweep() {
	now := time.Now()
	var closing []*h1Conn
	t.mu.Lock()
	for addr, idle := range t.idle {
		kept := make([]*h1Conn, 0, len(idle))
		for _, c := range idle {
			if now.Sub(c.idleSince) > t.idleTimeout {
				closing = append(closing, c)
				continue
			}
			kept = append(kept, c)
		}
		t.setIdle(addr, kept)
	}
	t.sweeper = nil
	if t.idleCount > 0 {
		t.sweeper = time.AfterFunc(t.idleTimeout/2, t.sweep)
	}
	t.mu.Unlock()
	for _, c := range closing {
		_ = c.conn.Close()
	}
}

// closeIdle closes addr's idle connections.
func (t *h1Transport) closeIdle(addr string) {
	t.mu.Lock()
	idle := t.idle[addr]
	t.setIdle(addr, nil)
	t.mu.Unlock()
	for _, c := range idle {
		_ = c.conn.Close()
	}
}

// CloseIdleConnections closes every idle connection; http.Client's method
// of that name calls it.
func (t *h1Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle, t.idleCount = nil, 0
	if t.sweeper != nil {
		t.sweeper.Stop()
		t.sweeper = nil
	}
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

// doneError returns the context's error, wrapped around err, when ctx is
// done, and context.DeadlineExceeded wrapped around err once deadline (if
// set) has passed: a cancelled or timed-out request fails with the reason,
// not with the I/O error the past deadline caused.
func doneError(ctx context.Context, deadline time.Time, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	if expired(deadline) {
		return fmt.Errorf("%w (%v)", context.DeadlineExceeded, err)
	}
	return err
}
