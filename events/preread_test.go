package events

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// closeRecorder records whether Close was called.
type closeRecorder struct {
	io.Reader
	closed bool
}

// Close records the call.
func (c *closeRecorder) Close() error {
	c.closed = true
	return nil
}

func TestPreRead(t *testing.T) {
	form := "key=k1&email=a%40b.c&data=color&entry=e1"
	long := form + "&pad=" + strings.Repeat("x", 100)
	mp := buildMultipart(t, testBoundary, map[string]string{"key": "k1", "data": "color"}, nil)
	tests := []struct {
		name        string
		contentType string
		body        string
		lim         Limits
		want        []string
		complete    bool
		unread      bool // the body must be returned without reading it
	}{
		{"urlencoded", formType, form, Limits{}, []string{"key=k1", "email=a@b.c", "data=color", "entry=e1"}, true, false},
		{"urlencoded at the limit", formType, form, Limits{MaxFormBytes: int64(len(form))}, []string{"key=k1", "email=a@b.c", "data=color", "entry=e1"}, true, false},
		{"urlencoded over the limit", formType, long, Limits{MaxFormBytes: int64(len(form)) + 3}, []string{"key=k1", "email=a@b.c", "data=color", "entry=e1"}, false, false},
		{"urlencoded cut in a value", formType, form, Limits{MaxFormBytes: 10}, []string{"key=k1"}, false, false},
		{"multipart", testMultipartType, string(mp), Limits{}, []string{"data=color", "key=k1"}, true, false},
		// The closing delimiter of "key" is cut off, so its value may be cut too.
		{"multipart over the limit", testMultipartType, string(mp), Limits{MaxFormBytes: int64(len(mp)) - 10}, []string{"data=color"}, false, false},
		{"opaque", "text/plain", form, Limits{}, []string{}, true, true},
		{"empty", formType, "", Limits{}, []string{}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := strings.NewReader(tt.body)
			body := &closeRecorder{Reader: iotest.HalfReader(src)}
			var p Params
			replay, complete, err := PreRead(body, tt.contentType, tt.lim, &p)
			if err != nil {
				t.Fatal(err)
			}
			if tt.unread && src.Len() != len(tt.body) {
				t.Error("opaque body was read")
			}
			if complete != tt.complete {
				t.Errorf("complete = %v, want %v", complete, tt.complete)
			}
			if got := paramList(&p); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("params = %q, want %q", got, tt.want)
			}
			got, err := readChunked(replay, 3)
			if err != nil || string(got) != tt.body {
				t.Fatalf("replay = %q (err %v), want %q", got, err, tt.body)
			}
			if err := replay.Close(); err != nil || !body.closed {
				t.Errorf("replay Close: err %v, body closed %v", err, body.closed)
			}
		})
	}
}

func TestPreReadError(t *testing.T) {
	sent := "key=k1&data=color&val"
	var p Params
	replay, complete, err := PreRead(abortingReader([]byte(sent)), formType, Limits{}, &p)
	if !errors.Is(err, errAbort) {
		t.Fatalf("err = %v, want %v", err, errAbort)
	}
	if complete {
		t.Error("complete = true after a read error")
	}
	if got := paramList(&p); !reflect.DeepEqual(got, []string{"key=k1", "data=color"}) {
		t.Errorf("params = %q", got)
	}
	got, rerr := readChunked(replay, 4)
	if string(got) != sent || !errors.Is(rerr, errAbort) {
		t.Fatalf("replay = %q, %v; want %q, %v", got, rerr, sent, errAbort)
	}
}

func TestPreReadLargeBodyReadsOnlyPrefix(t *testing.T) {
	src := &patternReader{n: 10 << 20}
	var p Params
	replay, complete, err := PreRead(io.NopCloser(src), formType, Limits{MaxFormBytes: 1000}, &p)
	if err != nil || complete {
		t.Fatalf("complete %v, err %v; want false, nil", complete, err)
	}
	if read := 10<<20 - src.n; read != 1001 {
		t.Errorf("read %d bytes before forwarding, want 1001", read)
	}
	n, err := io.Copy(io.Discard, replay)
	if err != nil || n != 10<<20 {
		t.Errorf("replayed %d bytes (err %v), want %d", n, err, 10<<20)
	}
}
