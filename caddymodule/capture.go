package caddymodule

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// bufPool recycles the buffers that hold captured response bodies.
var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// captureWriter passes every byte of the response through unchanged and,
// when asked to, keeps a copy of at most max bytes of a 2xx body. It records
// the final status. Unwrap (from the embedded wrapper) keeps Flush, Hijack,
// deadlines and full-duplex working through http.ResponseController.
type captureWriter struct {
	// Embedded by value: one allocation per request for both.
	caddyhttp.ResponseWriterWrapper
	want        bool // copy the body of a 2xx response
	max         int
	buf         *bytes.Buffer // nil until a 2xx body starts to be copied
	truncated   bool
	status      int
	wroteHeader bool
	// problem is the skip reason set by body when a copied body cannot be
	// used: too large (also once decoded) or not decodable.
	problem string
}

func newCaptureWriter(w http.ResponseWriter, want bool, max int) *captureWriter {
	return &captureWriter{
		ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w},
		want:                  want,
		max:                   max,
	}
}

// WriteHeader records the final status; 1xx informational responses (but
// 101) pass straight through and are not final.
func (cw *captureWriter) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		cw.ResponseWriter.WriteHeader(code)
		return
	}
	if !cw.wroteHeader {
		cw.wroteHeader = true
		cw.status = code
		if cw.want && code >= 200 && code < 300 {
			cw.buf = bufPool.Get().(*bytes.Buffer)
			cw.buf.Reset()
		}
	}
	cw.ResponseWriter.WriteHeader(code)
}

// Write copies up to the cap, then writes through.
func (cw *captureWriter) Write(p []byte) (int, error) {
	if !cw.wroteHeader {
		cw.WriteHeader(http.StatusOK)
	}
	n, err := cw.ResponseWriter.Write(p)
	cw.keep(p[:n])
	return n, err
}

// ReadFrom keeps the sendfile fast path when nothing is being copied and
// otherwise routes the bytes through Write so the capture sees them.
func (cw *captureWriter) ReadFrom(r io.Reader) (int64, error) {
	if !cw.wroteHeader {
		cw.WriteHeader(http.StatusOK)
	}
	if cw.buf == nil {
		return cw.ResponseWriterWrapper.ReadFrom(r)
	}
	return io.Copy(writerOnly{cw}, r)
}

func (cw *captureWriter) keep(p []byte) {
	if cw.buf == nil || cw.truncated {
		return
	}
	room := cw.max - cw.buf.Len()
	if len(p) > room {
		cw.buf.Write(p[:room])
		cw.truncated = true
		return
	}
	cw.buf.Write(p)
}

// body returns the captured body, decoded when the upstream gzipped it, and
// whether it is complete. The bytes are valid until release.
func (cw *captureWriter) body() ([]byte, bool) {
	if cw.buf == nil {
		return nil, false
	}
	if cw.truncated {
		cw.problem = skipResponseTooLarge
		return nil, false
	}
	enc := strings.ToLower(strings.TrimSpace(cw.Header().Get("Content-Encoding")))
	switch enc {
	case "", "identity":
		return cw.buf.Bytes(), true
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(bytes.NewReader(cw.buf.Bytes()))
		if err != nil {
			cw.problem = skipResponseEncoding
			return nil, false
		}
		defer zr.Close()
		// Bound the decoded size as well, against decompression bombs.
		out, err := io.ReadAll(io.LimitReader(zr, int64(cw.max)+1))
		switch {
		case len(out) > cw.max:
			cw.problem = skipResponseTooLarge
			return nil, false
		case err != nil:
			cw.problem = skipResponseEncoding
			return nil, false
		}
		return out, true
	default:
		cw.problem = skipResponseEncoding
		return nil, false
	}
}

// release returns the capture buffer to the pool.
func (cw *captureWriter) release() {
	if cw.buf == nil {
		return
	}
	if cw.buf.Cap() <= 4<<20 {
		bufPool.Put(cw.buf)
	}
	cw.buf = nil
}

// writerOnly hides ReadFrom so io.Copy cannot recurse into it.
type writerOnly struct{ io.Writer }

// lookupRecorder collects the response of a lookup sub-request (small text
// bodies such as the value of a /get), capped at max bytes.
type lookupRecorder struct {
	header    http.Header
	status    int
	body      bytes.Buffer
	max       int
	truncated bool
}

func newLookupRecorder(max int) *lookupRecorder {
	return &lookupRecorder{header: make(http.Header), max: max}
}

func (lr *lookupRecorder) Header() http.Header { return lr.header }

func (lr *lookupRecorder) WriteHeader(code int) {
	if lr.status == 0 && (code < 100 || code >= 200) {
		lr.status = code
	}
}

func (lr *lookupRecorder) Write(p []byte) (int, error) {
	if lr.status == 0 {
		lr.status = http.StatusOK
	}
	room := lr.max - lr.body.Len()
	if len(p) > room {
		lr.body.Write(p[:room])
		lr.truncated = true
		return len(p), nil
	}
	lr.body.Write(p)
	return len(p), nil
}

// FlushError is a no-op: nothing is sent anywhere until the lookup ends.
func (lr *lookupRecorder) FlushError() error { return nil }

// Interface guards
var (
	_ http.ResponseWriter = (*captureWriter)(nil)
	_ io.ReaderFrom       = (*captureWriter)(nil)
	_ http.ResponseWriter = (*lookupRecorder)(nil)
)
