package caddymodule

import (
	"bytes"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/events"
	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/sink"
	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/store"
)

// benchWriter is a response writer that keeps nothing, so that a benchmark
// counts the handler's allocations only.
type benchWriter struct {
	header http.Header
	status int
}

func (w *benchWriter) Header() http.Header         { return w.header }
func (w *benchWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *benchWriter) WriteHeader(code int)        { w.status = code }

// benchUpstream answers like the bench's fake echo3D: /post echoes the
// value, /upload returns a processed entry, anything else a /query listing.
var benchUpstream = caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
	}
	switch r.URL.Path {
	case "/upload":
		w.Header()["Content-Type"] = jsonContentType
		_, _ = w.Write(benchEntry)
	case "/post":
		_, _ = io.WriteString(w, "v")
	default:
		w.Header()["Content-Type"] = jsonContentType
		_, _ = w.Write(benchListing)
	}
	return nil
})

var (
	jsonContentType = []string{"application/json"}
	benchEntry      = []byte(`{"id":"bench-entry","target":{"id":"t","type":"BRICK_TARGET","holograms":["h"]},"hologram":{"id":"h","type":"MODEL_HOLOGRAM","filename":"m.glb","storageID":"s"},"additionalData":{"glbHologramStorageID":"s.glb"}}`)
	benchListing    = []byte(`{"apiKey":"bench-key","db":{}}`)
)

// newBenchHandler returns a provisioned-like handler whose app has a store
// in dir (the in-memory store when dir is "") and an unstarted dispatcher.
// When subscribe is set, a webhook of collection bench-key subscribes to
// every trigger, so that enqueuing writes deliveries.
func newBenchHandler(b *testing.B, dir string, subscribe bool) *Handler {
	b.Helper()
	rules, err := events.NewRuleSet(events.DefaultRules(), events.Overrides{})
	if err != nil {
		b.Fatal(err)
	}
	handle := &storeHandle{dir: dir, inMemory: dir == "", logger: zap.NewNop()}
	handle.minFree.Store(1) // checked like in production, never refused
	b.Cleanup(func() { _ = handle.Destruct() })
	app := &App{handle: handle, logger: zap.NewNop()}
	app.dispatcher = sink.New(sink.Config{Outbox: lazyOutbox{handle}, Logger: zap.NewNop()})
	if subscribe {
		st, err := handle.open()
		if err != nil {
			b.Fatal(err)
		}
		triggers := make([]string, 0, len(events.AllTriggers))
		for _, t := range events.AllTriggers {
			triggers = append(triggers, string(t))
		}
		now := time.Now()
		if err := st.CreateWebhook(store.Webhook{
			ID: "wh_bench", Name: "bench", URL: "https://receiver.example/hook", APIKey: "bench-key",
			Triggers: triggers, Enabled: true, Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", CreatedAt: now, UpdatedAt: now,
		}); err != nil {
			b.Fatal(err)
		}
	}
	return &Handler{
		rules:           rules,
		app:             app,
		logger:          zap.NewNop(),
		MaxResponseSize: defaultMaxResponseSize,
		LookupTimeout:   caddy.Duration(defaultLookupTimeout),
	}
}

// benchServe sends req through h to benchUpstream b.N times; body, when
// set, is the request body of each call.
func benchServe(b *testing.B, h *Handler, req *http.Request, body []byte) {
	b.Helper()
	w := &benchWriter{header: make(http.Header, 4)}
	var rd bytes.Reader
	rc := io.NopCloser(&rd)
	if body != nil {
		b.SetBytes(int64(len(body)))
	}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.header)
		w.status = 0
		if body != nil {
			rd.Reset(body)
			req.Body = rc
		}
		if err := h.ServeHTTP(w, req, benchUpstream); err != nil {
			b.Fatal(err)
		}
	}
}

func benchRequest(method, target string) *http.Request {
	u, _ := url.ParseRequestURI(target)
	return &http.Request{Method: method, URL: u, Header: http.Header{}, Body: http.NoBody, Host: "proxy.example"}
}

// BenchmarkHandlerMiss is a request no rule matches: it must cost a path
// check and allocate nothing.
func BenchmarkHandlerMiss(b *testing.B) {
	h := newBenchHandler(b, "", false)
	benchServe(b, h, benchRequest(http.MethodGet, "/get?key=bench-key&entry=e1&data=n"), nil)
}

// BenchmarkHandlerQuery is `GET /query` while no upload is watched: the
// observe rule matches, then steps aside.
func BenchmarkHandlerQuery(b *testing.B) {
	h := newBenchHandler(b, "", false)
	benchServe(b, h, benchRequest(http.MethodGet, "/query?key=bench-key&entry=e1"), nil)
}

// BenchmarkHandlerPostNoWebhook is an event call for a collection without
// webhooks: everything but the store's writes.
func BenchmarkHandlerPostNoWebhook(b *testing.B) {
	h := newBenchHandler(b, "", false)
	benchServe(b, h, benchRequest(http.MethodPost, "/post?key=bench-key&data=n&value=v"), nil)
}

// BenchmarkHandlerPost is an event call whose event is written to a
// subscribed webhook's queue in an on-disk store, as in production.
func BenchmarkHandlerPost(b *testing.B) {
	h := newBenchHandler(b, b.TempDir(), true)
	benchServe(b, h, benchRequest(http.MethodPost, "/post?key=bench-key&data=n&value=v"), nil)
}

// BenchmarkHandlerPostForm is BenchmarkHandlerPostNoWebhook with the
// parameters in an urlencoded body.
func BenchmarkHandlerPostForm(b *testing.B) {
	h := newBenchHandler(b, "", false)
	req := benchRequest(http.MethodPost, "/post")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	benchServe(b, h, req, []byte("key=bench-key&email=bench%40example.com&userKey=uk&secKey=sk&entry=e1&data=n&value=v"))
}

// BenchmarkHandlerUpload is a 1 MiB multipart upload for a collection
// without webhooks: the streaming multipart capture and the response
// parse.
func BenchmarkHandlerUpload(b *testing.B) {
	h := newBenchHandler(b, "", false)
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("key", "bench-key")
	_ = mw.WriteField("email", "bench@example.com")
	fw, _ := mw.CreateFormFile("file", "model.glb")
	_, _ = fw.Write(bytes.Repeat([]byte("glTF"), 1<<18))
	_ = mw.Close()
	req := benchRequest(http.MethodPost, "/upload")
	req.Header.Set("Content-Type", mw.FormDataContentType())
	benchServe(b, h, req, buf.Bytes())
}

// TestHandlerMissAllocs pins the promise that a request no rule matches
// pays for a path check and nothing else, and that a /query steps aside
// without allocating while nothing is watched.
func TestHandlerMissAllocs(t *testing.T) {
	rules, err := events.NewRuleSet(events.DefaultRules(), events.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	h := &Handler{rules: rules, app: &App{}, logger: zap.NewNop()}
	w := &benchWriter{header: make(http.Header)}
	for _, target := range []string{"/get?key=k&entry=e", "/query?key=k", "/static/app.js"} {
		req := benchRequest(http.MethodGet, target)
		if n := testing.AllocsPerRun(100, func() {
			_ = h.ServeHTTP(w, req, benchUpstream)
		}); n != 0 {
			t.Errorf("GET %s: %v allocations per request, want 0", target, n)
		}
	}
}
