package events

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"sync"
)

// teeBufferSize is the multipart parser's read buffer (see partScanner). It
// lets one hand-over through the pipe carry a whole proxy read.
const teeBufferSize = 32 << 10

var (
	// errTeeFinished ends the parse when Finish is called before the body
	// reached EOF.
	errTeeFinished = errors.New("events: body capture finished before EOF")
	// errTeeClosed ends the parse when the body is closed before EOF.
	errTeeClosed = errors.New("events: body closed before EOF")
	// errParserDone refuses further bytes once the parser has stopped.
	errParserDone = errors.New("events: multipart parser stopped")
)

// BodyTee wraps a request body on its way to the upstream and captures its
// parameters as they stream through, without buffering the body and
// without delaying it beyond a hand-over to the parser.
//
//   - application/x-www-form-urlencoded: at most Limits.MaxFormBytes of the
//     body are kept and parsed by Finish.
//   - multipart/form-data: a goroutine started on the first read parses the
//     stream as it passes; file parts are skipped, text parts are kept
//     within Limits. Memory does not depend on the body size.
//   - anything else: Read is the wrapped body's Read, with no copy.
//
// Read and Close may be called from the proxy's goroutines; Finish may run
// concurrently with a late Read and always returns. Finish or Close must be
// called once the body is no longer needed, or the parser goroutine of a
// multipart body that was not read to EOF stays blocked.
type BodyTee struct {
	body     io.ReadCloser
	kind     bodyKind
	boundary string
	lim      Limits

	mu       sync.Mutex
	finished bool // Finish was called; capture no more
	eof      bool // the body returned io.EOF
	failed   bool // the body returned another error, or cannot be parsed
	form     []byte
	formOver bool // the urlencoded body was longer than MaxFormBytes

	// multipart only; pw and done are set under mu by the first read.
	pw     *io.PipeWriter
	done   chan struct{}
	parsed formFields // written by the parser before done is closed
}

// NewBodyTee wraps body, whose Content-Type header value is contentType.
// A nil body or http.NoBody is empty and already complete; a handler should
// nevertheless leave http.NoBody in place rather than wrap it, so that the
// transport still sees a request without a body.
func NewBodyTee(body io.ReadCloser, contentType string, lim Limits) *BodyTee {
	if body == nil {
		body = http.NoBody
	}
	kind, boundary, ok := classifyBody(contentType)
	return &BodyTee{
		body:     body,
		kind:     kind,
		boundary: boundary,
		lim:      lim.withDefaults(),
		eof:      body == http.NoBody,
		failed:   !ok,
	}
}

// Read reads from the wrapped body and passes the bytes through unchanged.
func (t *BodyTee) Read(p []byte) (int, error) {
	if t.kind == bodyOpaque {
		return t.body.Read(p)
	}
	n, err := t.body.Read(p)
	if n > 0 || err != nil {
		t.observe(p[:n], err)
	}
	return n, err
}

// Close closes the wrapped body. A multipart parse still waiting for bytes
// is stopped, so its goroutine ends even if Finish is never called.
func (t *BodyTee) Close() error {
	err := t.body.Close()
	if t.kind != bodyMultipart {
		return err
	}
	t.mu.Lock()
	pw, eof := t.pw, t.eof
	t.mu.Unlock()
	if pw != nil && !eof {
		pw.CloseWithError(errTeeClosed)
	}
	return err
}

// Finish stops capturing, adds the text fields seen to p and reports
// whether the whole body was seen and parsed without truncation. It is
// meant to be called once, after the proxy is done with the body; a second
// call adds nothing and returns false. For a body that is not a form,
// complete is true (there was nothing to capture) unless it was a multipart
// form without a boundary.
//
// An incomplete urlencoded capture is parsed up to its last "&", so a value
// cut short is never reported.
func (t *BodyTee) Finish(p *Params) (complete bool) {
	t.mu.Lock()
	if t.finished {
		t.mu.Unlock()
		return false
	}
	t.finished = true
	eof, failed := t.eof, t.failed
	form, over := t.form, t.formOver
	t.form = nil
	pw, done := t.pw, t.done
	t.mu.Unlock()

	switch t.kind {
	case bodyForm:
		complete = eof && !over && !failed
		if !complete {
			form = form[:max(bytes.LastIndexByte(form, '&'), 0)]
		}
		return p.addForm(form, t.lim) && complete
	case bodyMultipart:
		if pw == nil {
			// Nothing was read: complete only for an empty body.
			return eof && !failed
		}
		if eof {
			pw.Close()
		} else {
			pw.CloseWithError(errTeeFinished)
		}
		<-done
		for _, f := range t.parsed.fields {
			p.Add(f.name, f.value)
		}
		return eof && !failed && t.parsed.ok
	}
	return !failed
}

// observe records one read result of a form body.
func (t *BodyTee) observe(b []byte, err error) {
	if t.kind == bodyForm {
		t.observeForm(b, err)
		return
	}
	t.observeMultipart(b, err)
}

// observeForm keeps the first MaxFormBytes of an urlencoded body.
func (t *BodyTee) observeForm(b []byte, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.finished {
		return
	}
	if room := t.lim.MaxFormBytes - int64(len(t.form)); int64(len(b)) > room {
		b = b[:room]
		t.formOver = true
	}
	t.form = append(t.form, b...)
	t.noteErr(err)
}

// observeMultipart hands b to the parser, starting it on the first bytes.
// The hand-over returns as soon as the parser has copied b into its buffer,
// or at once when the parser has stopped or the capture is finished.
func (t *BodyTee) observeMultipart(b []byte, err error) {
	t.mu.Lock()
	if t.finished {
		t.mu.Unlock()
		return
	}
	if len(b) > 0 && t.pw == nil {
		t.startParser()
	}
	if err != nil {
		t.noteErr(err)
	}
	pw := t.pw
	t.mu.Unlock()

	if pw == nil {
		return
	}
	if len(b) > 0 {
		_, _ = pw.Write(b) // an error means the parser stopped: nothing to do
	}
	switch {
	case err == io.EOF:
		pw.Close()
	case err != nil:
		pw.CloseWithError(err)
	}
}

// noteErr records a read error; t.mu must be held.
func (t *BodyTee) noteErr(err error) {
	switch {
	case err == nil:
	case err == io.EOF:
		t.eof = true
	default:
		t.failed = true
	}
}

// startParser starts the multipart parser goroutine; t.mu must be held.
func (t *BodyTee) startParser() {
	pr, pw := io.Pipe()
	t.pw = pw
	t.done = make(chan struct{})
	go t.parse(pr)
}

// parse runs the multipart parser over the pipe. When it stops, for
// whatever reason, it closes the pipe's read side, so a pending or later
// hand-over returns at once instead of blocking the proxy.
func (t *BodyTee) parse(pr *io.PipeReader) {
	defer close(t.done)
	defer pr.CloseWithError(errParserDone)
	defer func() {
		if recover() != nil {
			t.parsed = formFields{}
		}
	}()
	t.parsed = parseMultipart(pr, t.boundary, t.lim)
}
