package events

// partScanner is mime/multipart's Reader from Go 1.26 (Copyright 2010 The
// Go Authors; BSD-style license, see https://go.dev/LICENSE), cut down to
// what parseMultipart needs and changed where it made streaming a large
// file part slow. It finds the same parts, headers and bodies; the
// differential fuzz test FuzzMultipartScanner checks it against
// mime/multipart. The changes:
//
//   - A 32 KiB buffer instead of 4 KiB, read straight from the source (one
//     copy per byte instead of three). A boundary or preamble line longer
//     than mime/multipart's 4 KiB buffer is still an error, as it is there.
//   - scanUntilBoundary looks for the start of a delimiter cut by the end
//     of the buffer in the buffer's last len(delimiter)-1 bytes only, not in
//     the whole buffer with a byte-at-a-time LastIndexByte (the cost of a
//     file part without CR bytes was mostly that scan).
//   - A skipped part's bytes are dropped from the buffer instead of copied
//     out to io.Discard.
//   - Part headers are read by textproto.Reader.ReadMIMEHeader one line at a
//     time, then held to mime/multipart's limits (10,000 headers, 10 MiB of
//     header memory). mime/multipart applies them while reading, through an
//     unexported textproto function; here a header block is cut off at
//     10 MiB of raw bytes instead. Both fail a part whose headers pass the
//     limits only from about 8 MiB of header bytes on (and
//     GODEBUG=multipartmaxheaders is not read).
//
// Boundaries longer than maxFastBoundary or holding CR or LF are left to
// mime/multipart (see parseMultipart): only for boundaries without CR and
// LF is a delimiter unable to overlap itself, which makes where the buffer
// ends irrelevant to the parse.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/textproto"
	"strings"
)

const (
	// scanBufferSize is partScanner's read buffer: one hand-over from the
	// tee's pipe (a whole proxy read) fits in it.
	scanBufferSize = teeBufferSize
	// stdPeekBufferSize is mime/multipart's buffer size, which bounds the
	// length of a boundary or preamble line.
	stdPeekBufferSize = 4096
	// maxMIMEHeaderSize and maxMIMEHeaders are mime/multipart's limits on
	// one part's header block.
	maxMIMEHeaderSize = 10 << 20
	maxMIMEHeaders    = 10000
	// headerOverhead and headerEntryOverhead are the bytes textproto counts
	// against maxMIMEHeaderSize for the header map and for each key.
	headerOverhead      = 400
	headerEntryOverhead = 200
)

var (
	errHeaderTooLarge = errors.New("multipart: message too large")
	errEmptyBoundary  = errors.New("multipart: boundary is empty")
	emptyParams       = map[string]string{}
)

// partScanner iterates over the parts of a multipart body.
type partScanner struct {
	br  *bufio.Reader
	cur *scanPart
	// partsRead counts the parts found so far.
	partsRead int

	// hdr buffers the header lines that lines hands to tp.
	hdr   *bufio.Reader
	lines headerLines
	tp    *textproto.Reader

	nl               []byte // "\r\n" or "\n" (set after seeing first boundary line)
	nlDashBoundary   []byte // nl + "--boundary"
	dashBoundaryDash []byte // "--boundary--"
	dashBoundary     []byte // "--boundary"
}

func newPartScanner(r io.Reader, boundary string) *partScanner {
	b := []byte("\r\n--" + boundary + "--")
	mr := &partScanner{
		br:               bufio.NewReaderSize(&stickyErrorReader{r: r}, scanBufferSize),
		nl:               b[:2],
		nlDashBoundary:   b[:len(b)-2],
		dashBoundaryDash: b[2:],
		dashBoundary:     b[2 : len(b)-2],
	}
	mr.lines.br = mr.br
	// lines never fills more than one line into it; ReadMIMEHeader joins
	// longer lines itself.
	mr.hdr = bufio.NewReaderSize(&mr.lines, stdPeekBufferSize)
	mr.tp = textproto.NewReader(mr.hdr)
	return mr
}

// stickyErrorReader is an io.Reader which never calls Read on its
// underlying Reader once an error has been seen.
type stickyErrorReader struct {
	r   io.Reader
	err error
}

func (r *stickyErrorReader) Read(p []byte) (n int, _ error) {
	if r.err != nil {
		return 0, r.err
	}
	n, r.err = r.r.Read(p)
	return n, r.err
}

// headerLines hands the bytes of br to textproto at most one line per Read,
// so that textproto's buffer never holds bytes past the blank line that
// ends a header block, and fails once left bytes have been handed over.
type headerLines struct {
	br   *bufio.Reader
	left int
}

func (l *headerLines) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, errHeaderTooLarge
	}
	if _, err := l.br.Peek(1); err != nil {
		return 0, err
	}
	buf, _ := l.br.Peek(l.br.Buffered())
	n := len(buf)
	if i := bytes.IndexByte(buf, '\n'); i >= 0 {
		n = i + 1
	}
	n = min(n, len(p), l.left)
	copy(p, buf[:n])
	_, _ = l.br.Discard(n)
	l.left -= n
	return n, nil
}

// readHeader reads one part's header block, as mime/multipart does.
func (r *partScanner) readHeader() (textproto.MIMEHeader, error) {
	r.lines.left = maxMIMEHeaderSize
	r.hdr.Reset(&r.lines)
	header, err := r.tp.ReadMIMEHeader()
	if err != nil {
		return nil, err
	}
	if r.hdr.Buffered() != 0 {
		// Cannot happen (see headerLines); refuse rather than lose bytes.
		return nil, errors.New("multipart: header read past its end")
	}
	mem, n := int64(headerOverhead), 0
	for k, vv := range header {
		mem += int64(len(k)) + headerEntryOverhead
		n += len(vv)
		for _, v := range vv {
			mem += int64(len(v))
		}
	}
	if n > maxMIMEHeaders || mem > maxMIMEHeaderSize {
		return nil, errHeaderTooLarge
	}
	return header, nil
}

// scanPart is one part: its header and the state of reading its body.
type scanPart struct {
	mr                *partScanner
	header            textproto.MIMEHeader
	disposition       string
	dispositionParams map[string]string
	// qp decodes a quoted-printable body; nil for a raw one.
	qp io.Reader

	n       int   // known data bytes waiting in mr.br
	total   int64 // total data bytes read already
	err     error // error to return when n == 0
	readErr error // read error observed from mr.br
}

func (r *partScanner) newPart() (*scanPart, error) {
	header, err := r.readHeader()
	if err != nil {
		return nil, err
	}
	bp := &scanPart{mr: r, header: header}
	const cte = "Content-Transfer-Encoding"
	if strings.EqualFold(header.Get(cte), "quoted-printable") {
		header.Del(cte)
		bp.qp = quotedprintable.NewReader(rawPart{bp})
	}
	return bp, nil
}

// formName returns the name parameter if p has a Content-Disposition of
// type "form-data", else "".
func (p *scanPart) formName() string {
	if p.dispositionParams == nil {
		p.parseContentDisposition()
	}
	if p.disposition != "form-data" {
		return ""
	}
	return p.dispositionParams["name"]
}

// hasFileName reports whether p's Content-Disposition has a filename
// (mime/multipart's FileName is then not empty).
func (p *scanPart) hasFileName() bool {
	if p.dispositionParams == nil {
		p.parseContentDisposition()
	}
	return p.dispositionParams["filename"] != ""
}

func (p *scanPart) parseContentDisposition() {
	v := p.header.Get("Content-Disposition")
	var err error
	p.disposition, p.dispositionParams, err = mime.ParseMediaType(v)
	if err != nil {
		p.dispositionParams = emptyParams
	}
}

// Read reads the body of a part, decoded when it is quoted-printable.
func (p *scanPart) Read(d []byte) (int, error) {
	if p.qp != nil {
		return p.qp.Read(d)
	}
	return p.readRaw(d)
}

// discard reads the rest of the part's body, as io.Copy(io.Discard, p)
// would, and returns its error. A raw body is dropped from the buffer
// without being copied.
func (p *scanPart) discard() error {
	if p.qp != nil {
		_, err := io.Copy(io.Discard, p)
		return err
	}
	for {
		if !p.fill() {
			if p.err == io.EOF {
				return nil
			}
			return p.err
		}
		n, _ := p.mr.br.Discard(p.n)
		p.total += int64(n)
		p.n -= n
	}
}

// rawPart reads a part's body without decoding it.
type rawPart struct{ p *scanPart }

func (r rawPart) Read(d []byte) (int, error) { return r.p.readRaw(d) }

// fill reads into the buffer until some data of the part is known (p.n >
// 0, true) or a reason to stop is (false, p.err set).
func (p *scanPart) fill() bool {
	br := p.mr.br
	for p.n == 0 && p.err == nil {
		peek, _ := br.Peek(br.Buffered())
		p.n, p.err = scanUntilBoundary(peek, p.mr.dashBoundary, p.mr.nlDashBoundary, p.total, p.readErr)
		if p.n == 0 && p.err == nil {
			// Force buffered I/O to read more into buffer.
			_, p.readErr = br.Peek(len(peek) + 1)
			if p.readErr == io.EOF {
				p.readErr = io.ErrUnexpectedEOF
			}
		}
	}
	return p.n > 0
}

func (p *scanPart) readRaw(d []byte) (int, error) {
	// Read out from "data to return" part of buffer.
	if !p.fill() {
		return 0, p.err
	}
	n := min(len(d), p.n)
	n, _ = p.mr.br.Read(d[:n])
	p.total += int64(n)
	p.n -= n
	if p.n == 0 {
		return n, p.err
	}
	return n, nil
}

// scanUntilBoundary scans buf to identify how much of it can be safely
// returned as part of the Part body.
// dashBoundary is "--boundary".
// nlDashBoundary is "\r\n--boundary" or "\n--boundary", depending on what mode we are in.
// The comments below (and the name) assume "\n--boundary", but either is accepted.
// total is the number of bytes read out so far. If total == 0, then a leading "--boundary" is recognized.
// readErr is the read error, if any, that followed reading the bytes in buf.
// scanUntilBoundary returns the number of data bytes from buf that can be
// returned as part of the Part body and also the error to return (if any)
// once those data bytes are done.
func scanUntilBoundary(buf, dashBoundary, nlDashBoundary []byte, total int64, readErr error) (int, error) {
	if total == 0 {
		// At beginning of body, allow dashBoundary.
		if bytes.HasPrefix(buf, dashBoundary) {
			switch matchAfterPrefix(buf, dashBoundary, readErr) {
			case -1:
				return len(dashBoundary), nil
			case 0:
				return 0, nil
			case +1:
				return 0, io.EOF
			}
		}
		if bytes.HasPrefix(dashBoundary, buf) {
			return 0, readErr
		}
	}

	// Search for "\n--boundary".
	if i := bytes.Index(buf, nlDashBoundary); i >= 0 {
		switch matchAfterPrefix(buf[i:], nlDashBoundary, readErr) {
		case -1:
			return i + len(nlDashBoundary), nil
		case 0:
			return i, nil
		case +1:
			return i, io.EOF
		}
	}
	if bytes.HasPrefix(nlDashBoundary, buf) {
		return 0, readErr
	}

	// Otherwise, anything up to the final \n is not part of the boundary
	// and so must be part of the body.
	// Also if the section from the final \n onward is not a prefix of the boundary,
	// it too must be part of the body.
	// (Changed:) buf holds no whole "\n--boundary", so such a section can
	// only start in the last len(nlDashBoundary)-1 bytes: look there only.
	tail := max(len(buf)-len(nlDashBoundary)+1, 0)
	if i := bytes.LastIndexByte(buf[tail:], nlDashBoundary[0]); i >= 0 && bytes.HasPrefix(nlDashBoundary, buf[tail+i:]) {
		return tail + i, nil
	}
	return len(buf), readErr
}

// matchAfterPrefix checks whether buf should be considered to match the boundary.
// The prefix is "--boundary" or "\r\n--boundary" or "\n--boundary",
// and the caller has verified already that bytes.HasPrefix(buf, prefix) is true.
//
// matchAfterPrefix returns +1 if the buffer does match the boundary,
// meaning the prefix is followed by a double dash, space, tab, cr, nl,
// or end of input.
// It returns -1 if the buffer definitely does NOT match the boundary,
// meaning the prefix is followed by some other character.
// For example, "--foobar" does not match "--foo".
// It returns 0 more input needs to be read to make the decision,
// meaning that len(buf) == len(prefix) and readErr == nil.
func matchAfterPrefix(buf, prefix []byte, readErr error) int {
	if len(buf) == len(prefix) {
		if readErr != nil {
			return +1
		}
		return 0
	}
	c := buf[len(prefix)]

	if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
		return +1
	}

	// Try to detect boundaryDash
	if c == '-' {
		if len(buf) == len(prefix)+1 {
			if readErr != nil {
				// Prefix + "-" does not match
				return -1
			}
			return 0
		}
		if buf[len(prefix)+1] == '-' {
			return +1
		}
	}

	return -1
}

// close reads the rest of the part, ignoring errors.
func (p *scanPart) close() {
	_ = p.discard()
}

// nextPart returns the next part, or io.EOF when there are no more.
func (r *partScanner) nextPart() (*scanPart, error) {
	if r.cur != nil {
		r.cur.close()
	}
	if string(r.dashBoundary) == "--" {
		return nil, errEmptyBoundary
	}
	expectNewPart := false
	for {
		line, err := r.readLine()

		if err == io.EOF && r.isFinalBoundary(line) {
			// If the buffer ends in "--boundary--" without the
			// trailing "\r\n", ReadSlice will return an error
			// (since it's missing the '\n'), but this is a valid
			// multipart EOF so we need to return io.EOF instead of
			// a fmt-wrapped one.
			return nil, io.EOF
		}
		if err != nil {
			return nil, fmt.Errorf("multipart: NextPart: %w", err)
		}

		if r.isBoundaryDelimiterLine(line) {
			r.partsRead++
			bp, err := r.newPart()
			if err != nil {
				return nil, err
			}
			r.cur = bp
			return bp, nil
		}

		if r.isFinalBoundary(line) {
			// Expected EOF
			return nil, io.EOF
		}

		if expectNewPart {
			return nil, fmt.Errorf("multipart: expecting a new Part; got line %q", string(line))
		}

		if r.partsRead == 0 {
			// skip line
			continue
		}

		// Consume the "\n" or "\r\n" separator between the
		// body of the previous part and the boundary line we
		// now expect will follow. (either a new part or the
		// end boundary)
		if bytes.Equal(line, r.nl) {
			expectNewPart = true
			continue
		}

		return nil, fmt.Errorf("multipart: unexpected line in Next(): %q", line)
	}
}

// readLine is ReadSlice('\n') as mime/multipart's 4 KiB buffer sees it: a
// line longer than that buffer fails with bufio.ErrBufferFull (a line
// without "\n" fails so from the buffer's size on, as the end of the input
// comes with a read of its own).
func (r *partScanner) readLine() ([]byte, error) {
	line, err := r.br.ReadSlice('\n')
	if len(line) > stdPeekBufferSize || (len(line) == stdPeekBufferSize && err != nil) {
		return line, bufio.ErrBufferFull
	}
	return line, err
}

// isFinalBoundary reports whether line is the final boundary line
// indicating that all parts are over.
// It matches `^--boundary--[ \t]*(\r\n)?$`
func (r *partScanner) isFinalBoundary(line []byte) bool {
	if !bytes.HasPrefix(line, r.dashBoundaryDash) {
		return false
	}
	rest := line[len(r.dashBoundaryDash):]
	rest = skipLWSPChar(rest)
	return len(rest) == 0 || bytes.Equal(rest, r.nl)
}

func (r *partScanner) isBoundaryDelimiterLine(line []byte) (ret bool) {
	// https://tools.ietf.org/html/rfc2046#section-5.1
	//   The boundary delimiter line is then defined as a line
	//   consisting entirely of two hyphen characters ("-",
	//   decimal value 45) followed by the boundary parameter
	//   value from the Content-Type header field, optional linear
	//   whitespace, and a terminating CRLF.
	if !bytes.HasPrefix(line, r.dashBoundary) {
		return false
	}
	rest := line[len(r.dashBoundary):]
	rest = skipLWSPChar(rest)

	// On the first part, see our lines are ending in \n instead of \r\n
	// and switch into that mode if so. This is a violation of the spec,
	// but occurs in practice.
	if r.partsRead == 0 && len(rest) == 1 && rest[0] == '\n' {
		r.nl = r.nl[1:]
		r.nlDashBoundary = r.nlDashBoundary[1:]
	}
	return bytes.Equal(rest, r.nl)
}

// skipLWSPChar returns b with leading spaces and tabs removed.
// RFC 822 defines:
//
//	LWSP-char = SPACE / HTAB
func skipLWSPChar(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}
