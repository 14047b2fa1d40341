package events

import (
	"bytes"
	"errors"
	"io"
	"mime/multipart"
	"runtime"
	"sort"
	"testing"
	"time"
)

// readChunked reads r to EOF in reads of at most chunk bytes, as a proxy
// copying the body would.
func readChunked(r io.Reader, chunk int) ([]byte, error) {
	var out bytes.Buffer
	buf := make([]byte, chunk)
	for {
		n, err := r.Read(buf)
		out.Write(buf[:n])
		if err == io.EOF {
			return out.Bytes(), nil
		}
		if err != nil {
			return out.Bytes(), err
		}
	}
}

// testFile is one file part of a multipart test body.
type testFile struct {
	field, filename, contentType string
	content                      []byte
}

// buildMultipart writes a multipart/form-data body with the given boundary:
// the first half of the fields (sorted by name), then the files, then the
// rest of the fields, so text fields appear on both sides of file parts.
func buildMultipart(t testing.TB, boundary string, fields map[string]string, files []testFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	if err := w.SetBoundary(boundary); err != nil {
		t.Fatalf("boundary %q: %v", boundary, err)
	}
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	half := len(names) / 2
	writeFields := func(names []string) {
		for _, k := range names {
			if err := w.WriteField(k, fields[k]); err != nil {
				t.Fatal(err)
			}
		}
	}
	writeFields(names[:half])
	for _, f := range files {
		h := make(map[string][]string)
		h["Content-Disposition"] = []string{`form-data; name="` + f.field + `"; filename="` + f.filename + `"`}
		h["Content-Type"] = []string{f.contentType}
		pw, err := w.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pw.Write(f.content); err != nil {
			t.Fatal(err)
		}
	}
	writeFields(names[half:])
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// waitGoroutines fails the test if the number of goroutines does not come
// back to at most base within a few seconds.
func waitGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			n := runtime.Stack(buf, true)
			t.Fatalf("goroutines: %d, want <= %d\n%s", runtime.NumGoroutine(), base, buf[:n])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// finishWithin calls tee.Finish and fails the test if it does not return
// within a few seconds.
func finishWithin(t *testing.T, tee *BodyTee, p *Params) bool {
	t.Helper()
	got := make(chan bool, 1)
	go func() { got <- tee.Finish(p) }()
	select {
	case c := <-got:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("Finish did not return")
		return false
	}
}

// errAbort stands for a client that went away mid-upload.
var errAbort = errors.New("client aborted")

// abortingReader returns data and then errAbort.
func abortingReader(data []byte) io.ReadCloser {
	return io.NopCloser(io.MultiReader(bytes.NewReader(data), errorReader{errAbort}))
}

// paramList renders p as name=value pairs, for comparisons.
func paramList(p *Params) []string {
	out := make([]string, 0, p.Len())
	for _, kv := range p.list {
		out = append(out, kv.name+"="+kv.value)
	}
	return out
}
