package caddymodule_test

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/caddymodule"
	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/events"
)

// hostileKey is the collection every hostile call names.
const hostileKey = "hostile-key-0001"

// upstreamReply is what the hostile upstream answers to one call.
type upstreamReply struct {
	status int
	header map[string]string
	body   []byte
}

// hostileUpstream records the size and SHA-256 of every request body it
// gets and answers with the reply set for the current case.
type hostileUpstream struct {
	mu    sync.Mutex
	reply upstreamReply
	got   []string // "<method> <path>?<query> <len> <sha256>"
}

func (u *hostileUpstream) set(r upstreamReply) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.reply, u.got = r, nil
}

func (u *hostileUpstream) received() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.got...)
}

func (u *hostileUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	n, _ := io.Copy(h, r.Body)
	u.mu.Lock()
	u.got = append(u.got, fmt.Sprintf("%s %s?%s %d %x", r.Method, r.URL.Path, r.URL.RawQuery, n, h.Sum(nil)))
	reply := u.reply
	u.mu.Unlock()
	for k, v := range reply.header {
		w.Header().Set(k, v)
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(reply.body)))
	if reply.status == 0 {
		reply.status = http.StatusOK
	}
	w.WriteHeader(reply.status)
	_, _ = w.Write(reply.body)
}

// digest renders a body as the upstream records it.
func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return fmt.Sprintf("%d %s", len(b), hex.EncodeToString(sum[:]))
}

// hostileCase is one hostile call: the request the client sends, what the
// upstream answers, the events the webhook must get and the skips counted.
type hostileCase struct {
	name        string
	method      string
	path        string // with the query string
	contentType string
	body        []byte
	reply       upstreamReply
	want        []events.Payload
	skips       map[string]uint64
}

// rawMultipart assembles a multipart body by hand, so it can be broken.
func rawMultipart(boundary string, parts ...string) []byte {
	var b strings.Builder
	for _, p := range parts {
		b.WriteString("--" + boundary + "\r\n" + p + "\r\n")
	}
	return []byte(b.String())
}

func textPart(name, value string) string {
	return `Content-Disposition: form-data; name="` + name + `"` + "\r\n\r\n" + value
}

// gzipped compresses b.
func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// gzipBomb returns a small gzip stream that inflates to size zero bytes
// inside a JSON string, so a reader that trusted it would hold it all.
func gzipBomb(t *testing.T, size int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	_, _ = io.WriteString(zw, `{"id":"bomb","pad":"`)
	zeros := make([]byte, 1<<20)
	for i := range zeros {
		zeros[i] = '0'
	}
	for written := 0; written < size; written += len(zeros) {
		_, _ = zw.Write(zeros)
	}
	_, _ = io.WriteString(zw, `"}`)
	_ = zw.Close()
	return buf.Bytes()
}

// TestHostileTrafficThroughCaddy sends malformed, truncated, oversized,
// duplicated and mis-encoded calls through a real Caddy with the plugin in
// front of an upstream that answers with broken, huge and bomb-like bodies.
// Every call must reach the upstream byte for byte and come back to the
// client unchanged; the webhook must get exactly the right events (often
// none), and the skip counter must name what was skipped and why.
func TestHostileTrafficThroughCaddy(t *testing.T) {
	up := &hostileUpstream{}
	upstream := httptest.NewServer(up)
	defer upstream.Close()
	rc := newReceiver(t)
	tester := newTester(t)
	load(t, tester, siteConfig(`
		storage memory
		retry 50ms
		allow_private_targets
		trusted_ca_file `+writeCA(t, rc), upstream.Listener.Addr().String()))
	hook := createWebhook(t, "hostile", rc.url("/hostile"), hostileKey, allTriggers()...)

	const bnd = "hostileBoundary"
	mp := "multipart/form-data; boundary=" + bnd
	okID := func(id string) upstreamReply {
		return upstreamReply{header: map[string]string{"Content-Type": "application/json"}, body: []byte(`{"id":"` + id + `"}`)}
	}
	text := upstreamReply{header: map[string]string{"Content-Type": "text/plain"}, body: []byte("ok")}
	form := "application/x-www-form-urlencoded"

	manyIDs := make([]string, 6000) // 48 KiB: under max_field_size
	for i := range manyIDs {
		manyIDs[i] = fmt.Sprintf("id%05d", i)
	}
	tooManyFields := "key=" + hostileKey + "&entry=z" + strings.Repeat("&f=1", 10000)
	hugeJSON := []byte(`{"id":"huge","pad":"` + strings.Repeat("p", 3<<20) + `"}`)

	cases := []hostileCase{
		{
			name: "malformed multipart: broken part header after the key", method: "POST", path: "/upload", contentType: mp,
			body:  append(rawMultipart(bnd, textPart("key", hostileKey), "no-colon-header\r\n\r\nx"), []byte("--"+bnd+"--\r\n")...),
			reply: okID("m1"),
			want:  []events.Payload{{Event: events.Upload, APIKey: hostileKey, EntryIDs: []string{"m1"}}},
			skips: map[string]uint64{"request_incomplete": 1},
		},
		{
			name: "truncated multipart: the key was never sent", method: "POST", path: "/upload", contentType: mp,
			body:  []byte("--" + bnd + "\r\n" + `Content-Disposition: form-data; name="file"; filename="a.glb"` + "\r\n\r\nglTF..."),
			reply: okID("t1"),
			skips: map[string]uint64{"request_incomplete": 1},
		},
		{
			name: "multipart without a boundary", method: "POST", path: "/upload?key=" + hostileKey, contentType: "multipart/form-data",
			body:  []byte("--x\r\n\r\n"),
			reply: okID("nb1"),
			want:  []events.Payload{{Event: events.Upload, APIKey: hostileKey, EntryIDs: []string{"nb1"}}},
			skips: map[string]uint64{"request_incomplete": 1},
		},
		{
			name: "enormous text field: the key over max_field_size is dropped", method: "POST", path: "/upload", contentType: mp,
			body:  append(rawMultipart(bnd, textPart("key", hostileKey+strings.Repeat("k", 8<<20))), []byte("--"+bnd+"--\r\n")...),
			reply: okID("e1"),
			skips: map[string]uint64{"request_incomplete": 1},
		},
		{
			name: "invalid UTF-8 metadata key", method: "POST", path: "/post?key=" + hostileKey + "&data=%ff%fe&value=v",
			reply: text,
			skips: map[string]uint64{"invalid_utf8": 1},
		},
		{
			name: "invalid UTF-8 entry id", method: "GET", path: "/delete?key=" + hostileKey + "&entry=ok,%C0%AF",
			reply: text,
			skips: map[string]uint64{"invalid_utf8": 1},
		},
		{
			name: "broken JSON response", method: "POST", path: "/upload?key=" + hostileKey,
			reply: upstreamReply{header: map[string]string{"Content-Type": "application/json"}, body: []byte(`{"id":"b1"`)},
			skips: map[string]uint64{"response_invalid": 1},
		},
		{
			name: "JSON array response", method: "POST", path: "/upload?key=" + hostileKey,
			reply: upstreamReply{body: []byte(`[{"id":"b2"}]`)},
			skips: map[string]uint64{"response_invalid": 1},
		},
		{
			name: "huge JSON response over max_response_size", method: "POST", path: "/upload?key=" + hostileKey,
			reply: upstreamReply{header: map[string]string{"Content-Type": "application/json"}, body: hugeJSON},
			skips: map[string]uint64{"response_too_large": 1},
		},
		{
			name: "gzip bomb response", method: "POST", path: "/upload?key=" + hostileKey,
			reply: upstreamReply{header: map[string]string{"Content-Type": "application/json", "Content-Encoding": "gzip"}, body: gzipBomb(t, 64<<20)},
			skips: map[string]uint64{"response_too_large": 1},
		},
		{
			name: "gzip response, well formed", method: "POST", path: "/upload?key=" + hostileKey,
			reply: upstreamReply{header: map[string]string{"Content-Encoding": "gzip"}, body: gzipped(t, []byte(`{"id":"gz1"}`))},
			want:  []events.Payload{{Event: events.Upload, APIKey: hostileKey, EntryIDs: []string{"gz1"}}},
		},
		{
			name: "corrupt gzip response", method: "POST", path: "/upload?key=" + hostileKey,
			reply: upstreamReply{header: map[string]string{"Content-Encoding": "gzip"}, body: []byte("\x1f\x8b\x08\x00garbage")},
			skips: map[string]uint64{"response_encoding": 1},
		},
		{
			name: "unsupported response encoding", method: "POST", path: "/upload?key=" + hostileKey,
			reply: upstreamReply{header: map[string]string{"Content-Encoding": "br"}, body: []byte{0x1b, 0x03, 0x00}},
			skips: map[string]uint64{"response_encoding": 1},
		},
		{
			name: "duplicated parameters: first key wins, ids once each", method: "GET",
			path:  "/delete?key=" + hostileKey + "&key=someone-else&entry=a&entry=b&entry=a&id=c&entries=b",
			reply: text,
			want:  []events.Payload{{Event: events.Delete, APIKey: hostileKey, EntryIDs: []string{"a", "b", "c"}}},
		},
		{
			name: "duplicated parameters across query and body", method: "POST", path: "/post?key=" + hostileKey + "&data=color",
			contentType: form, body: []byte("key=evil&data=size&value=red&value=blue"),
			reply: text,
			want:  []events.Payload{{Event: events.CollectionMetadataAdd, APIKey: hostileKey, MetadataKeys: []string{"color"}, MetadataValues: []string{"red"}}},
		},
		{
			// Caddy refuses request lines over 16 KiB (431) before the
			// plugin sees them, so the query holds a 12 000-comma list...
			name: "absurd comma list in the query", method: "GET",
			path:  "/delete?key=" + hostileKey + "&entries=" + strings.Repeat(",", 12000) + "x,,y,%20x%20," + strings.Repeat("%20,", 300) + "y",
			reply: text,
			want:  []events.Payload{{Event: events.Delete, APIKey: hostileKey, EntryIDs: []string{"x", "y"}}},
		},
		{
			// ...and the body one just under max_field_size.
			name: "absurd comma list in the body", method: "POST", path: "/delete",
			contentType: form, body: []byte("key=" + hostileKey + "&entries=" + strings.Repeat(",", 50000) + "x,,y,+x+," + strings.Repeat("+,", 5000) + "y"),
			reply: text,
			want:  []events.Payload{{Event: events.Delete, APIKey: hostileKey, EntryIDs: []string{"x", "y"}}},
		},
		{
			name: "6000 distinct ids", method: "POST", path: "/delete",
			contentType: form, body: []byte("key=" + hostileKey + "&entries=" + strings.Join(manyIDs, ",")),
			reply: text,
			want:  []events.Payload{{Event: events.Delete, APIKey: hostileKey, EntryIDs: manyIDs}},
		},
		{
			name: "too many fields: the first ones still count", method: "POST", path: "/delete",
			contentType: form, body: []byte(tooManyFields),
			reply: text,
			want:  []events.Payload{{Event: events.Delete, APIKey: hostileKey, EntryIDs: []string{"z"}}},
			skips: map[string]uint64{"request_incomplete": 1},
		},
		{
			name: "form over max_form_size: ids past the limit unseen", method: "POST", path: "/delete",
			contentType: form, body: []byte("key=" + hostileKey + "&pad=" + strings.Repeat("p", 2<<20) + "&entry=late"),
			reply: text,
			skips: map[string]uint64{"request_incomplete": 1},
		},
		{
			name: "truncated urlencoded value", method: "POST", path: "/remove",
			contentType: form, body: []byte("key=" + hostileKey + "&data=%"),
			reply: upstreamReply{status: http.StatusOK, body: []byte("x")},
		},
		{
			name: "non-2xx answers derive and count nothing", method: "POST", path: "/upload", contentType: mp,
			body:  []byte("--" + bnd + "\r\ngarbage"),
			reply: upstreamReply{status: http.StatusBadRequest, body: []byte(`{"id":"nope"`)},
		},
	}

	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DisableCompression: true}}
	delivered := 0
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up.set(tc.reply)
			before := caddymodule.Skips()
			var body io.Reader
			if tc.body != nil {
				body = bytes.NewReader(tc.body)
			}
			req, err := http.NewRequest(tc.method, proxyURL+tc.path, body)
			if err != nil {
				t.Fatal(err)
			}
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			req.Header.Set("Accept-Encoding", "gzip, br")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			wantStatus := tc.reply.status
			if wantStatus == 0 {
				wantStatus = http.StatusOK
			}
			if resp.StatusCode != wantStatus || !bytes.Equal(got, tc.reply.body) {
				t.Errorf("client got %d and %s, want %d and %s", resp.StatusCode, digest(got), wantStatus, digest(tc.reply.body))
			}
			if enc := tc.reply.header["Content-Encoding"]; resp.Header.Get("Content-Encoding") != enc {
				t.Errorf("Content-Encoding %q, want %q", resp.Header.Get("Content-Encoding"), enc)
			}
			u, _ := url.Parse(proxyURL + tc.path)
			wantUp := []string{fmt.Sprintf("%s %s?%s %s", tc.method, u.Path, u.RawQuery, digest(tc.body))}
			if gotUp := up.received(); len(gotUp) < 1 || gotUp[len(gotUp)-1] != wantUp[0] {
				t.Errorf("upstream got %.300q, want last %.300q", gotUp, wantUp)
			}

			// Skips are counted after the response is written: poll.
			deadline := time.Now().Add(5 * time.Second)
			for !skipsReached(before, caddymodule.Skips(), tc.skips) && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond) // polling a counter with a deadline
			}

			// A test event sent now is delivered after anything this call
			// derived, so it bounds what to wait for.
			if status, out := adminCall(t, http.MethodPost, "/echo3d/webhooks/"+hook.ID+"/test", nil); status != http.StatusAccepted {
				t.Fatalf("test event: %d %s", status, out)
			}
			want := append(append([]events.Payload(nil), tc.want...), events.Payload{Event: "Test", APIKey: hostileKey})
			all := rc.waitFor(t, delivered+len(want), waitWithin)
			checkDeliveries(t, hook.Secret, all[delivered:], want)
			delivered = len(all)

			after := caddymodule.Skips()
			for _, reason := range caddymodule.SkipReasons {
				if d := after[reason] - before[reason]; d != tc.skips[reason] {
					t.Errorf("skip counter %s went up by %d, want %d", reason, d, tc.skips[reason])
				}
			}
		})
	}

	// The proxy is still healthy: a plain call still derives its event.
	up.set(text)
	postMetadata(t, hostileKey, "after", "all")
	adminCall(t, http.MethodPost, "/echo3d/webhooks/"+hook.ID+"/test", nil)
	all := rc.waitFor(t, delivered+2, waitWithin)
	checkDeliveries(t, hook.Secret, all[delivered:], []events.Payload{
		{Event: events.CollectionMetadataAdd, APIKey: hostileKey, MetadataKeys: []string{"after"}, MetadataValues: []string{"all"}},
		{Event: "Test", APIKey: hostileKey},
	})

	// The counters are the Prometheus counter Caddy serves.
	scraped := scrapeSkips(t)
	for reason, n := range caddymodule.Skips() {
		if scraped[reason] != n {
			t.Errorf("/metrics says %d %s skips, the counter %d", scraped[reason], reason, n)
		}
	}
}

// scrapeSkips reads caddy_echo3d_webhooks_events_skipped_total from the
// admin endpoint's /metrics, by reason.
func scrapeSkips(t *testing.T) map[string]uint64 {
	t.Helper()
	status, body := adminCall(t, http.MethodGet, "/metrics", nil)
	if status != http.StatusOK {
		t.Fatalf("/metrics: %d", status)
	}
	out := map[string]uint64{}
	const prefix = `caddy_echo3d_webhooks_events_skipped_total{reason="`
	for _, line := range strings.Split(string(body), "\n") {
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		reason, value, _ := strings.Cut(rest, `"} `)
		var n float64
		if _, err := fmt.Sscan(value, &n); err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		out[reason] = uint64(n)
	}
	if len(out) == 0 {
		t.Fatalf("/metrics has no %s... series", prefix)
	}
	return out
}

// skipsReached reports whether every expected counter delta is reached.
func skipsReached(before, now, want map[string]uint64) bool {
	for reason, d := range want {
		if now[reason]-before[reason] < d {
			return false
		}
	}
	return true
}

// TestEnormousFieldMemoryBounded streams a 64 MiB multipart text field
// through Caddy and checks that the plugin does not hold it: the whole
// process (client, Caddy and upstream together) allocates far less than
// the field's size, and the upstream receives every byte.
func TestEnormousFieldMemoryBounded(t *testing.T) {
	up := &hostileUpstream{}
	upstream := httptest.NewServer(up)
	defer upstream.Close()
	tester := newTester(t)
	load(t, tester, siteConfig("\t\tstorage memory", upstream.Listener.Addr().String()))
	up.set(upstreamReply{body: []byte(`{"id":"big"}`)})

	const size = 64 << 20
	const bnd = "memBoundary"
	head := "--" + bnd + "\r\n" + textPart("key", hostileKey) + "\r\n--" + bnd + "\r\n" + `Content-Disposition: form-data; name="data"` + "\r\n\r\n"
	tail := "\r\n--" + bnd + "--\r\n"
	h := sha256.New()
	body := io.TeeReader(io.MultiReader(strings.NewReader(head), io.LimitReader(repeatReader('v'), size), strings.NewReader(tail)), h)

	before := caddymodule.Skipped("request_incomplete")
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	resp, err := http.Post(proxyURL+"/upload", "multipart/form-data; boundary="+bnd, body)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	runtime.ReadMemStats(&m1)

	total := int64(len(head)) + size + int64(len(tail))
	if got := up.received(); len(got) != 1 || !strings.HasSuffix(got[0], fmt.Sprintf(" %d %x", total, h.Sum(nil))) {
		t.Fatalf("upstream got %q, want %d bytes with the client's digest", got, total)
	}
	if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > size/4 {
		t.Errorf("the process allocated %d MiB to stream a %d MiB field", alloc>>20, size>>20)
	} else {
		t.Logf("allocated %d KiB in all to stream a %d MiB field", alloc>>10, size>>20)
	}
	deadline := time.Now().Add(5 * time.Second)
	for caddymodule.Skipped("request_incomplete") == before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // polling a counter with a deadline
	}
	if caddymodule.Skipped("request_incomplete") != before+1 {
		t.Error("the dropped field was not counted")
	}
}

// repeatReader yields c forever.
type repeatReader byte

func (r repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}
