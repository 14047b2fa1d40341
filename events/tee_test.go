package events

import (
	"bytes"
	"io"
	"net/http"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
)

const testBoundary = "----echo3dTestBoundary"

var testMultipartType = "multipart/form-data; boundary=" + testBoundary

func TestBodyTeePassThrough(t *testing.T) {
	mp := buildMultipart(t, testBoundary,
		map[string]string{"key": "k1", "data": "a:b;c:d", "entryId": "e1"},
		[]testFile{{"file", "x.glb", "model/gltf-binary", bytes.Repeat([]byte("0123456789"), 5000)}})
	tests := []struct {
		name        string
		contentType string
		body        []byte
		want        []string
		complete    bool
	}{
		{"opaque json", "application/json", []byte(`{"key":"k1"}`), []string{}, true},
		{"no content type", "", []byte("key=k1"), []string{}, true},
		{"urlencoded", "application/x-www-form-urlencoded; charset=UTF-8", []byte("key=k1&data=a%3Bb&x"), []string{"key=k1", "data=a;b", "x="}, true},
		{"urlencoded upper case type", "Application/X-WWW-Form-Urlencoded", []byte("key=k1"), []string{"key=k1"}, true},
		{"multipart", testMultipartType, mp, []string{"data=a:b;c:d", "entryId=e1", "key=k1"}, true},
		{"multipart without boundary", "multipart/form-data", mp, []string{}, false},
		{"empty urlencoded", "application/x-www-form-urlencoded", nil, []string{}, true},
		{"empty multipart", testMultipartType, nil, []string{}, true},
	}
	readers := []struct {
		name string
		wrap func(io.Reader) io.Reader
	}{
		{"one byte", iotest.OneByteReader},
		{"half", iotest.HalfReader},
		{"data and EOF", iotest.DataErrReader},
		{"plain", func(r io.Reader) io.Reader { return r }},
	}
	for _, tt := range tests {
		for _, rd := range readers {
			t.Run(tt.name+"/"+rd.name, func(t *testing.T) {
				tee := NewBodyTee(io.NopCloser(rd.wrap(bytes.NewReader(tt.body))), tt.contentType, Limits{})
				got, err := readChunked(tee, 4096)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, tt.body) {
					t.Fatalf("passed %d bytes, want the %d sent, unchanged", len(got), len(tt.body))
				}
				var p Params
				complete := finishWithin(t, tee, &p)
				if complete != tt.complete {
					t.Errorf("complete = %v, want %v", complete, tt.complete)
				}
				if got := paramList(&p); !reflect.DeepEqual(got, tt.want) {
					t.Errorf("params = %q, want %q", got, tt.want)
				}
			})
		}
	}
}

// patternReader yields n bytes of a repeating pattern without holding them.
type patternReader struct{ n int64 }

// Read fills p with the pattern.
func (r *patternReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.n {
		p = p[:r.n]
	}
	for i := range p {
		p[i] = byte('a' + i%26)
	}
	r.n -= int64(len(p))
	return len(p), nil
}

// streamedUpload returns a multipart body with text fields around a file
// part of size bytes, generated on the fly.
func streamedUpload(size int64) io.Reader {
	head := "--" + testBoundary + "\r\n" +
		"Content-Disposition: form-data; name=\"key\"\r\n\r\nquiet-river-1234\r\n" +
		"--" + testBoundary + "\r\n" +
		"Content-Disposition: form-data; name=\"file\"; filename=\"big.glb\"\r\n" +
		"Content-Type: application/octet-stream\r\n\r\n"
	tail := "\r\n--" + testBoundary + "\r\n" +
		"Content-Disposition: form-data; name=\"entryId\"\r\n\r\ne-42\r\n" +
		"--" + testBoundary + "--\r\n"
	return io.MultiReader(strings.NewReader(head), &patternReader{n: size}, strings.NewReader(tail))
}

func TestBodyTeeLargeFileMemory(t *testing.T) {
	const size = 20 << 20
	buf := make([]byte, 32<<10)
	run := func() (kept []string, complete bool, total int64) {
		tee := NewBodyTee(io.NopCloser(streamedUpload(size)), testMultipartType, Limits{})
		for {
			n, err := tee.Read(buf)
			total += int64(n)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		var p Params
		complete = tee.Finish(&p)
		return paramList(&p), complete, total
	}
	run() // warm up pools

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	kept, complete, total := run()
	runtime.ReadMemStats(&after)

	if total < size {
		t.Fatalf("passed %d bytes, want more than %d", total, size)
	}
	if !complete {
		t.Error("complete = false, want true")
	}
	if want := []string{"key=quiet-river-1234", "entryId=e-42"}; !reflect.DeepEqual(kept, want) {
		t.Errorf("params = %q, want %q", kept, want)
	}
	t.Logf("TotalAlloc grew %d bytes", after.TotalAlloc-before.TotalAlloc)
	const bound = 256 << 10
	if grew := after.TotalAlloc - before.TotalAlloc; grew > bound {
		t.Errorf("allocated %d bytes for a %d-byte body, want at most %d", grew, size, bound)
	}
}

func TestBodyTeeLimits(t *testing.T) {
	big := strings.Repeat("v", 100)
	tests := []struct {
		name     string
		lim      Limits
		fields   map[string]string
		want     []string
		complete bool
	}{
		{
			name:     "field too long is dropped",
			lim:      Limits{MaxFieldBytes: 99},
			fields:   map[string]string{"a": "1", "big": big, "z": "2"},
			want:     []string{"a=1", "z=2"},
			complete: false,
		},
		{
			name:     "field at the limit is kept",
			lim:      Limits{MaxFieldBytes: 100},
			fields:   map[string]string{"a": "1", "big": big},
			want:     []string{"a=1", "big=" + big},
			complete: true,
		},
		{
			name:     "too many fields",
			lim:      Limits{MaxFields: 2},
			fields:   map[string]string{"a": "1", "b": "2", "c": "3"},
			want:     []string{"a=1", "b=2"},
			complete: false,
		},
		{
			name:     "total text bytes",
			lim:      Limits{MaxFormBytes: 3},
			fields:   map[string]string{"a": "12", "b": "34", "c": "5"},
			want:     []string{"a=12", "c=5"},
			complete: false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := buildMultipart(t, testBoundary, tt.fields, nil)
			tee := NewBodyTee(io.NopCloser(bytes.NewReader(body)), testMultipartType, tt.lim)
			if _, err := readChunked(tee, 5); err != nil {
				t.Fatal(err)
			}
			var p Params
			if complete := finishWithin(t, tee, &p); complete != tt.complete {
				t.Errorf("complete = %v, want %v", complete, tt.complete)
			}
			if got := paramList(&p); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("params = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestBodyTeeIncomplete(t *testing.T) {
	full := buildMultipart(t, testBoundary,
		map[string]string{"a": "1", "b": "2", "key": "k", "z": "9"},
		[]testFile{{"file", "f.bin", "application/octet-stream", bytes.Repeat([]byte{7}, 10000)}})
	cut := bytes.Index(full, []byte("f.bin")) + 2000 // inside the file part
	form := []byte("key=k1&data=color&value=re")

	tests := []struct {
		name        string
		contentType string
		body        io.ReadCloser
		lim         Limits
		readLimit   int // bytes the proxy reads before giving up; -1 = to the end
		want        []string
		wantGone    bool // the parser goroutine must be gone before Finish
	}{
		{"multipart truncated at EOF", testMultipartType, io.NopCloser(bytes.NewReader(full[:cut])), Limits{}, -1, []string{"a=1", "b=2"}, true},
		{"multipart client abort", testMultipartType, abortingReader(full[:cut]), Limits{}, -1, []string{"a=1", "b=2"}, false},
		{"multipart never read to EOF", testMultipartType, io.NopCloser(bytes.NewReader(full)), Limits{}, cut, []string{"a=1", "b=2"}, false},
		{"multipart never read", testMultipartType, io.NopCloser(bytes.NewReader(full)), Limits{}, 0, []string{}, true},
		{"multipart garbage", testMultipartType, io.NopCloser(strings.NewReader(strings.Repeat("garbage\r\n", 5000))), Limits{}, -1, []string{}, true},
		{"urlencoded never read to EOF", formType, io.NopCloser(bytes.NewReader(form)), Limits{}, 12, []string{"key=k1"}, true},
		{"urlencoded client abort", formType, abortingReader(form), Limits{}, -1, []string{"key=k1", "data=color"}, true},
		{"urlencoded over the limit", formType, io.NopCloser(bytes.NewReader(form)), Limits{MaxFormBytes: 20}, -1, []string{"key=k1", "data=color"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := runtime.NumGoroutine()
			tee := NewBodyTee(tt.body, tt.contentType, tt.lim)
			switch {
			case tt.readLimit < 0:
				_, _ = readChunked(tee, 64)
			case tt.readLimit > 0:
				_, _ = readChunked(io.LimitReader(tee, int64(tt.readLimit)), 64)
			}
			if tt.wantGone {
				waitGoroutines(t, base)
			}
			var p Params
			if finishWithin(t, tee, &p) {
				t.Error("complete = true, want false")
			}
			if got := paramList(&p); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("params = %q, want %q", got, tt.want)
			}
			if tee.Finish(&p) {
				t.Error("second Finish: complete = true, want false")
			}
			waitGoroutines(t, base)
		})
	}
}

func TestBodyTeeCloseEndsParser(t *testing.T) {
	body := buildMultipart(t, testBoundary, map[string]string{"key": "k"},
		[]testFile{{"file", "f.bin", "application/octet-stream", make([]byte, 50000)}})
	base := runtime.NumGoroutine()
	tee := NewBodyTee(io.NopCloser(bytes.NewReader(body)), testMultipartType, Limits{})
	if _, err := io.ReadFull(tee, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if runtime.NumGoroutine() <= base {
		t.Fatal("no parser goroutine after the first read")
	}
	if err := tee.Close(); err != nil {
		t.Fatal(err)
	}
	waitGoroutines(t, base) // without Finish
	var p Params
	if finishWithin(t, tee, &p) {
		t.Error("complete = true after Close before EOF")
	}
}

func TestBodyTeeConcurrentFinish(t *testing.T) {
	// The transport may still be reading the body when the handler calls
	// Finish; neither side may block or race.
	for i := 0; i < 50; i++ {
		base := runtime.NumGoroutine()
		pr, pw := io.Pipe()
		tee := NewBodyTee(pr, testMultipartType, Limits{})
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, _ = io.Copy(io.Discard, tee)
		}()
		go func() {
			defer wg.Done()
			defer pw.Close()
			_, _ = pw.Write([]byte("--" + testBoundary + "\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nk\r\n"))
			for j := 0; j < 20; j++ {
				if _, err := pw.Write(make([]byte, 1000)); err != nil {
					return
				}
			}
		}()
		var p Params
		finishWithin(t, tee, &p)
		_ = pr.CloseWithError(errAbort) // end the writer if still going
		wg.Wait()
		waitGoroutines(t, base)
	}
}

func TestBodyTeeEpilogueDoesNotBlock(t *testing.T) {
	// After the closing boundary the parser stops; the bytes that follow
	// must still pass without blocking.
	body := buildMultipart(t, testBoundary, map[string]string{"key": "k"}, nil)
	body = append(body, bytes.Repeat([]byte("epilogue "), 20000)...)
	tee := NewBodyTee(io.NopCloser(bytes.NewReader(body)), testMultipartType, Limits{})
	got, err := readChunked(tee, 512)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("passed %d bytes (err %v), want %d", len(got), err, len(body))
	}
	var p Params
	if !finishWithin(t, tee, &p) || p.Get("key") != "k" {
		t.Fatalf("params %q", paramList(&p))
	}
}

func TestBodyTeeOpaqueReadAllocs(t *testing.T) {
	src := &patternReader{n: 1 << 40}
	tee := NewBodyTee(io.NopCloser(src), "application/octet-stream", Limits{})
	buf := make([]byte, 32<<10)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := tee.Read(buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("opaque Read allocates %.1f times, want 0", allocs)
	}
	if tee.form != nil || tee.pw != nil {
		t.Error("opaque tee captured something")
	}
}

func TestBodyTeeNilBody(t *testing.T) {
	tee := NewBodyTee(nil, "application/x-www-form-urlencoded", Limits{})
	if n, err := tee.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Fatalf("Read = %d, %v; want 0, EOF", n, err)
	}
	var p Params
	if !tee.Finish(&p) || p.Len() != 0 {
		t.Fatal("nil body: want complete with no params")
	}
}

func TestBodyTeeNoBodyUnread(t *testing.T) {
	// The transport never reads http.NoBody; the capture is still complete.
	for _, ct := range []string{formType, testMultipartType, "text/plain"} {
		tee := NewBodyTee(http.NoBody, ct, Limits{})
		var p Params
		if !tee.Finish(&p) || p.Len() != 0 {
			t.Errorf("%s: want complete with no params", ct)
		}
		replay, complete, err := PreRead(http.NoBody, ct, Limits{}, &p)
		if replay != http.NoBody || !complete || err != nil {
			t.Errorf("%s: PreRead(NoBody) = %v, %v, %v; want NoBody, true, nil", ct, replay, complete, err)
		}
	}
}

func TestBodyTeeFormLimits(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		lim      Limits
		want     []string
		complete bool
	}{
		{"within limits", "a=1&b=22", Limits{MaxFieldBytes: 2, MaxFields: 2}, []string{"a=1", "b=22"}, true},
		{"value too long", "a=1&b=333&c=4", Limits{MaxFieldBytes: 2}, []string{"a=1", "c=4"}, false},
		{"decoded length counts", "b=%41%41", Limits{MaxFieldBytes: 2}, []string{"b=AA"}, true},
		{"too many fields", "a=1&b=2&c=3", Limits{MaxFields: 2}, []string{"a=1", "b=2"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tee := NewBodyTee(io.NopCloser(strings.NewReader(tt.body)), formType, tt.lim)
			if _, err := readChunked(tee, 3); err != nil {
				t.Fatal(err)
			}
			var p Params
			if complete := tee.Finish(&p); complete != tt.complete {
				t.Errorf("tee: complete = %v, want %v", complete, tt.complete)
			}
			if got := paramList(&p); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("tee: params = %q, want %q", got, tt.want)
			}

			var q Params
			_, complete, err := PreRead(io.NopCloser(strings.NewReader(tt.body)), formType, tt.lim, &q)
			if err != nil || complete != tt.complete {
				t.Errorf("PreRead: complete = %v (err %v), want %v", complete, err, tt.complete)
			}
			if got := paramList(&q); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("PreRead: params = %q, want %q", got, tt.want)
			}
		})
	}
}
