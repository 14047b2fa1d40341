package sink

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
)

// readCommonResponse parses, without net/http, a response of the shape a
// receiver commonly answers an attempt with, when all of its header is
// already in br's buffer: a final "HTTP/1.1" status line, then fields of
// which it reads only Content-Length and Connection, and a body of known
// length (or none). It returns ok false, having consumed nothing, for any
// other response, which the caller then parses with http.ReadResponse: an
// informational or 101 status, a 429 or 503 (whose Retry-After matters), a
// body framed by Transfer-Encoding or by the connection's end, a field it
// cannot vouch for, or a header not yet all read. The response has no
// Header: the dispatcher reads only the status and the body start.
//
// http.ReadResponse allocated a dozen objects per attempt for fields the
// dispatcher never reads (a server's Date, its Content-Type). FuzzCommonResponse
// holds this parser to it: whatever it accepts, ReadResponse reads alike.
func readCommonResponse(br *bufio.Reader, req *http.Request) (_ *http.Response, ok bool) {
	if req.Method != http.MethodPost {
		return nil, false // a HEAD's answer has no body whatever its fields say
	}
	buf, _ := br.Peek(br.Buffered())
	end := bytes.Index(buf, []byte("\r\n\r\n"))
	if end < 0 {
		return nil, false
	}
	head := buf[:end+2] // each line ends with CRLF

	line, rest := cutLine(head)
	// "HTTP/1.1 " code [ " " reason ]
	if len(line) < 12 || string(line[:9]) != "HTTP/1.1 " || (len(line) > 12 && line[12] != ' ') {
		return nil, false
	}
	code := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return nil, false
		}
		code = code*10 + int(c-'0')
	}
	status := line[9:]
	if code < 200 || code > 599 || code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable ||
		!validFieldValue(status) {
		return nil, false
	}

	length, closing := int64(-1), false
	for len(rest) > 0 {
		line, rest = cutLine(rest)
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !validToken(string(line[:colon])) {
			return nil, false // also a folded line, which starts with white space
		}
		name, value := line[:colon], bytes.Trim(line[colon+1:], " \t")
		if !validFieldValue(value) {
			return nil, false
		}
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, ok := parseLength(value)
			if !ok || length >= 0 {
				return nil, false
			}
			length = n
		case bytes.EqualFold(name, []byte("Connection")):
			switch {
			case bytes.EqualFold(value, []byte("close")):
				closing = true
			case !bytes.EqualFold(value, []byte("keep-alive")):
				return nil, false
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")), bytes.EqualFold(name, []byte("Trailer")):
			return nil, false
		}
	}
	var body io.ReadCloser = http.NoBody
	switch {
	case code == http.StatusNoContent || code == http.StatusNotModified:
		length = 0 // whatever Content-Length says, as net/http reads it
	case length < 0:
		return nil, false // delimited by the connection's end
	case length > 0:
		body = &fixedBody{br: br, n: length}
	}
	resp := &http.Response{
		Status:        string(status),
		StatusCode:    code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Body:          body,
		ContentLength: length,
		Close:         closing,
		Request:       req,
	}
	_, _ = br.Discard(end + 4)
	return resp, true
}

// cutLine returns the first CRLF-terminated line of b, without its CRLF,
// and the rest.
func cutLine(b []byte) (line, rest []byte) {
	i := bytes.Index(b, []byte("\r\n"))
	return b[:i], b[i+2:]
}

// validFieldValue reports whether v holds only visible ASCII, spaces and
// tabs: a stricter rule than net/http's, which is what this parser needs.
func validFieldValue(v []byte) bool {
	for _, c := range v {
		if (c < ' ' && c != '\t') || c >= 0x7f {
			return false
		}
	}
	return true
}

// parseLength parses a Content-Length value: 1 to 18 decimal digits.
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// fixedBody reads a body of n bytes from br. It ends with io.EOF once it
// has read them all, and with io.ErrUnexpectedEOF if the connection ends
// first, as net/http's bodies do.
type fixedBody struct {
	br *bufio.Reader
	n  int64
}

func (b *fixedBody) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.br.Read(p)
	b.n -= int64(n)
	switch {
	case err == io.EOF && b.n > 0:
		err = io.ErrUnexpectedEOF
	case err == nil && b.n == 0:
		err = io.EOF
	}
	return n, err
}

func (*fixedBody) Close() error { return nil }
