package sink

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

// agreesWithReadResponse parses in with readCommonResponse and, if it
// accepts, checks that http.ReadResponse reads the same status, length,
// Close, body (and how it ends) and leaves the same bytes after it.
func agreesWithReadResponse(t *testing.T, in []byte) (accepted bool) {
	t.Helper()
	req := &http.Request{Method: http.MethodPost}
	br := bufio.NewReader(bytes.NewReader(in))
	if _, err := br.Peek(1); err != nil {
		return false
	}
	before := br.Buffered()
	resp, ok := readCommonResponse(br, req)
	if !ok {
		if br.Buffered() != before {
			t.Fatalf("refused %q after consuming %d bytes", in, before-br.Buffered())
		}
		return false
	}
	wantBr := bufio.NewReader(bytes.NewReader(in))
	want, err := http.ReadResponse(wantBr, req)
	if err != nil {
		t.Fatalf("accepted %q, which http.ReadResponse refuses: %v", in, err)
	}
	if resp.StatusCode != want.StatusCode || resp.ContentLength != want.ContentLength || resp.Close != want.Close {
		t.Fatalf("%q: status %d length %d close %v, ReadResponse %d %d %v",
			in, resp.StatusCode, resp.ContentLength, resp.Close, want.StatusCode, want.ContentLength, want.Close)
	}
	got, gotErr := io.ReadAll(resp.Body)
	exp, expErr := io.ReadAll(want.Body)
	if !bytes.Equal(got, exp) || errors.Is(gotErr, io.ErrUnexpectedEOF) != errors.Is(expErr, io.ErrUnexpectedEOF) || (gotErr == nil) != (expErr == nil) {
		t.Fatalf("%q: body %q (%v), ReadResponse %q (%v)", in, got, gotErr, exp, expErr)
	}
	if gotErr == nil {
		restGot, _ := io.ReadAll(br)
		restExp, _ := io.ReadAll(wantBr)
		if !bytes.Equal(restGot, restExp) {
			t.Fatalf("%q: left %q after the body, ReadResponse %q", in, restGot, restExp)
		}
	}
	return true
}

const (
	goServer204 = "HTTP/1.1 204 No Content\r\nDate: Fri, 27 Nov 2026 15:00:00 GMT\r\n\r\n"
	goServer200 = "HTTP/1.1 200 OK\r\nDate: Fri, 27 Nov 2026 15:00:00 GMT\r\nContent-Length: 2\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nok"
)

// TestReadCommonResponse: the shapes receivers commonly answer with are
// parsed as net/http parses them; the rest is left to net/http, nothing
// consumed.
func TestReadCommonResponse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"Go server 204", goServer204, true},
		{"Go server 200 with a body", goServer200, true},
		{"a next response after it", goServer204 + goServer200, true},
		{"Connection close", "HTTP/1.1 201 Created\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", true},
		{"keep-alive, any case", "HTTP/1.1 202 Accepted\r\nconnection: Keep-Alive\r\ncontent-length: 3\r\n\r\nabc", true},
		{"no reason phrase", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", true},
		{"a 500", "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops", true},
		{"a 204 declaring a length", "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", true},
		{"a body cut short", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", true},
		{"informational first", "HTTP/1.1 100 Continue\r\n\r\n" + goServer204, false},
		{"101", "HTTP/1.1 101 Switching Protocols\r\n\r\n", false},
		{"429 with Retry-After", "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 5\r\nContent-Length: 0\r\n\r\n", false},
		{"503", "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", false},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", false},
		{"chunked beside a length", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n1\r\na\r\n0\r\n\r\n", false},
		{"delimited by the close", "HTTP/1.1 200 OK\r\n\r\nok", false},
		{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", false},
		{"a signed length", "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", false},
		{"a folded field", "HTTP/1.1 200 OK\r\nX-A: 1\r\n  2\r\nContent-Length: 0\r\n\r\n", false},
		{"a space before the colon", "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n", false},
		{"HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false},
		{"another Connection", "HTTP/1.1 200 OK\r\nConnection: upgrade\r\nContent-Length: 0\r\n\r\n", false},
		{"header not all here", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n", false},
		{"a control byte", "HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 0\r\n\r\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := agreesWithReadResponse(t, []byte(tt.in)); got != tt.want {
				t.Errorf("accepted = %v, want %v", got, tt.want)
			}
		})
	}
	if _, ok := readCommonResponse(bufio.NewReader(strings.NewReader(goServer204)), &http.Request{Method: http.MethodHead}); ok {
		t.Error("parsed the answer to a HEAD")
	}
}

// FuzzCommonResponse: whatever readCommonResponse accepts, http.ReadResponse
// reads alike (agreesWithReadResponse).
func FuzzCommonResponse(f *testing.F) {
	for _, s := range []string{goServer204, goServer200, goServer204 + goServer200,
		"HTTP/1.1 201 Created\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		agreesWithReadResponse(t, in)
	})
}
