package events

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
)

// PreRead captures the parameters of a form body before it is forwarded,
// for endpoints whose lookup must happen first (/remove). It reads at most
// lim.MaxFormBytes+1 bytes of the body now, adds the parameters found in
// them to p, and returns a reader that replays exactly those bytes followed
// by the rest of the body; closing it closes body.
//
// complete is false when the body was longer than MaxFormBytes (the fields
// wholly inside the prefix are still added; an urlencoded prefix is parsed
// up to its last "&"), when a multipart prefix did not parse to its closing
// boundary, or on a read error. A body that is not a form, and http.NoBody,
// are returned as is, unread, with complete true (false for a multipart
// type without a boundary).
//
// err is set only for a read error; the replay reader then returns the
// bytes read and then that error.
func PreRead(body io.ReadCloser, contentType string, lim Limits, p *Params) (replay io.ReadCloser, complete bool, err error) {
	if body == nil {
		body = http.NoBody
	}
	kind, boundary, ok := classifyBody(contentType)
	if kind == bodyOpaque || body == http.NoBody {
		return body, ok, nil
	}
	lim = lim.withDefaults()

	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(body, lim.MaxFormBytes+1))
	data := buf.Bytes()
	over := n > lim.MaxFormBytes
	complete = !over && err == nil

	switch kind {
	case bodyForm:
		form := data
		if !complete {
			form = form[:max(bytes.LastIndexByte(form, '&'), 0)]
		}
		complete = p.addForm(form, lim) && complete
	case bodyMultipart:
		if len(data) == 0 {
			break // an empty body holds no fields, as for the tee
		}
		parsed := parseMultipart(bytes.NewReader(data), boundary, lim)
		for _, f := range parsed.fields {
			p.Add(f.name, f.value)
		}
		complete = complete && parsed.ok
	}

	switch {
	case err != nil:
		rest := io.MultiReader(bytes.NewReader(data), errorReader{err})
		return readCloser{Reader: rest, Closer: body}, false, fmt.Errorf("pre-reading request body: %w", err)
	case over:
		return readCloser{Reader: io.MultiReader(bytes.NewReader(data), body), Closer: body}, false, nil
	}
	return readCloser{Reader: bytes.NewReader(data), Closer: body}, complete, nil
}

// readCloser joins a reader and a closer.
type readCloser struct {
	io.Reader
	io.Closer
}

// errorReader always fails with err.
type errorReader struct{ err error }

// Read returns the stored error.
func (r errorReader) Read([]byte) (int, error) { return 0, r.err }
