package events

import (
	"bytes"
	"io"
	"mime/multipart"
	"reflect"
	"runtime"
	"testing"
	"time"
)

// FuzzBodyTeeMultipart checks, for arbitrary bodies and read sizes, that
// the tee passes every byte unchanged, that Finish returns, and that a
// capture reported complete holds exactly the text fields the standard
// library's form parser finds.
func FuzzBodyTeeMultipart(f *testing.F) {
	f.Add(buildMultipart(f, testBoundary, map[string]string{"key": "k", "entry": "e1"},
		[]testFile{{"file", "a.bin", "application/octet-stream", []byte("--" + testBoundary + "x\r\n")}}), uint8(7))
	f.Add([]byte("--"+testBoundary+"\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--"+testBoundary+"--"), uint8(1))
	f.Add([]byte("garbage"), uint8(3))
	f.Fuzz(func(t *testing.T, body []byte, chunk uint8) {
		tee := NewBodyTee(io.NopCloser(bytes.NewReader(body)), testMultipartType, Limits{})
		var (
			got  []byte
			err  error
			read = make(chan struct{})
		)
		go func() {
			defer close(read)
			got, err = readChunked(tee, int(chunk)+1)
		}()
		select {
		case <-read:
		case <-time.After(10 * time.Second):
			buf := make([]byte, 1<<20)
			t.Fatalf("Read blocked on %q (chunk %d)\n%s", body, int(chunk)+1, buf[:runtime.Stack(buf, true)])
		}
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("passed %q (err %v), want %q", got, err, body)
		}
		var p Params
		if !finishWithin(t, tee, &p) || len(body) == 0 {
			return
		}
		form, err := multipart.NewReader(bytes.NewReader(body), testBoundary).ReadForm(1 << 20)
		if err != nil {
			t.Fatalf("tee complete but ReadForm fails: %v", err)
		}
		defer form.RemoveAll()
		want := map[string][]string{}
		for k, v := range form.Value {
			want[k] = v
		}
		have := map[string][]string{}
		for _, kv := range p.list {
			have[kv.name] = append(have[kv.name], kv.value)
		}
		if !reflect.DeepEqual(have, want) {
			t.Fatalf("tee fields %q, ReadForm %q", have, want)
		}
	})
}
