package caddymodule

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// flushRecorder notes flushes and hijacks that reach the real writer.
type flushRecorder struct {
	*httptest.ResponseRecorder
	flushes  int
	hijacked bool
}

func (f *flushRecorder) Flush() { f.flushes++; f.ResponseRecorder.Flush() }

func (f *flushRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	f.hijacked = true
	return nil, nil, nil
}

func TestCaptureWriter(t *testing.T) {
	gz := func(s string) []byte {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		_, _ = zw.Write([]byte(s))
		_ = zw.Close()
		return b.Bytes()
	}
	for _, tc := range []struct {
		name         string
		want         bool
		max          int
		status       int
		encoding     string
		chunks       [][]byte
		readFrom     bool
		wantBody     string
		wantComplete bool
	}{
		{"2xx captured", true, 64, 200, "", [][]byte{[]byte(`{"id":`), []byte(`"a"}`)}, false, `{"id":"a"}`, true},
		{"implicit 200", true, 64, 0, "", [][]byte{[]byte("ok")}, false, "ok", true},
		{"not wanted", false, 64, 200, "", [][]byte{[]byte("ok")}, false, "", false},
		{"non-2xx not captured", true, 64, 404, "", [][]byte{[]byte("Data not found")}, false, "", false},
		{"over the cap", true, 4, 200, "", [][]byte{[]byte("0123456789")}, false, "", false},
		{"exactly the cap", true, 10, 200, "", [][]byte{[]byte("0123456789")}, false, "0123456789", true},
		{"through ReadFrom", true, 64, 200, "", [][]byte{[]byte("streamed")}, true, "streamed", true},
		{"gzip decoded", true, 64, 200, "gzip", [][]byte{gz(`{"id":"z"}`)}, false, `{"id":"z"}`, true},
		{"gzip bomb bounded", true, 64, 200, "gzip", [][]byte{gz(strings.Repeat("a", 1000))}, false, "", false},
		{"unknown encoding", true, 64, 200, "br", [][]byte{[]byte("xx")}, false, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			cw := newCaptureWriter(rec, tc.want, tc.max)
			defer cw.release()
			if tc.encoding != "" {
				cw.Header().Set("Content-Encoding", tc.encoding)
			}
			if tc.status != 0 {
				cw.WriteHeader(tc.status)
			}
			var sent []byte
			for _, c := range tc.chunks {
				sent = append(sent, c...)
				if tc.readFrom {
					if _, err := cw.ReadFrom(bytes.NewReader(c)); err != nil {
						t.Fatal(err)
					}
					continue
				}
				if _, err := cw.Write(c); err != nil {
					t.Fatal(err)
				}
			}
			// The client always gets every byte, unchanged.
			if !bytes.Equal(rec.Body.Bytes(), sent) {
				t.Errorf("client got %q, want %q", rec.Body.Bytes(), sent)
			}
			body, complete := cw.body()
			if complete != tc.wantComplete || string(body) != tc.wantBody {
				t.Errorf("capture = %q, %v; want %q, %v", body, complete, tc.wantBody, tc.wantComplete)
			}
		})
	}
}

// statusLog records every WriteHeader that reaches the real writer.
type statusLog struct {
	http.ResponseWriter
	codes []int
}

func (s *statusLog) WriteHeader(code int) { s.codes = append(s.codes, code) }

func TestCaptureWriterInformational(t *testing.T) {
	sl := &statusLog{ResponseWriter: httptest.NewRecorder()}
	cw := newCaptureWriter(sl, true, 64)
	cw.WriteHeader(http.StatusEarlyHints)
	if cw.wroteHeader {
		t.Fatal("a 103 was taken as the final status")
	}
	cw.WriteHeader(http.StatusCreated)
	if cw.status != http.StatusCreated {
		t.Errorf("final status %d, want 201", cw.status)
	}
	if len(sl.codes) != 2 || sl.codes[0] != http.StatusEarlyHints || sl.codes[1] != http.StatusCreated {
		t.Errorf("client saw %v, want [103 201]", sl.codes)
	}
}

func TestCaptureWriterKeepsControllerFeatures(t *testing.T) {
	fr := &flushRecorder{ResponseRecorder: httptest.NewRecorder()}
	cw := newCaptureWriter(fr, true, 64)
	rc := http.NewResponseController(cw)
	if err := rc.Flush(); err != nil {
		t.Fatalf("flush through the wrapper: %v", err)
	}
	if fr.flushes != 1 {
		t.Errorf("flushes reaching the real writer = %d, want 1", fr.flushes)
	}
	if _, _, err := rc.Hijack(); err != nil || !fr.hijacked {
		t.Errorf("hijack through the wrapper: %v (hijacked %v)", err, fr.hijacked)
	}
}

func TestLookupRecorder(t *testing.T) {
	lr := newLookupRecorder(5)
	lr.WriteHeader(http.StatusContinue)
	lr.WriteHeader(http.StatusOK)
	n, err := io.WriteString(lr, "0123456789")
	if err != nil || n != 10 {
		t.Fatalf("write = %d, %v", n, err)
	}
	if lr.status != http.StatusOK || lr.body.String() != "01234" || !lr.truncated {
		t.Errorf("recorder = %d %q truncated=%v", lr.status, lr.body.String(), lr.truncated)
	}
	if err := http.NewResponseController(lr).Flush(); err != nil {
		t.Errorf("flush: %v", err)
	}
}
