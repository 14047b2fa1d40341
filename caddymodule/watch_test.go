package caddymodule_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/caddymodule"
	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/events"
	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/internal/echo3dtest"
	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/store"
	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/watch"
)

// Credentials of the watch tests: the uploader's (sent only in request
// bodies, so nothing but the plugin could put them in a log) and the
// operator's, configured through {env.*}. None may reach a log or Badger.
const (
	upEmail    = "uploader-watch@example.com"
	upUserKey  = "uk_W4tchUpl0ad_s3cret"
	upSecKey   = "sk_W4tchUpl0ad_s3cret"
	envEmail   = "operator-env@example.com"
	envUserKey = "uk_Env0perat0r_s3cret"
	envSecKey  = "sk_Env0perat0r_s3cret"
)

// secrets lists every credential value of the watch tests, as is and
// percent-encoded (as a query string or form body would carry it).
var secrets = func() []string {
	var out []string
	for _, s := range []string{upEmail, upUserKey, upSecKey, envEmail, envUserKey, envSecKey} {
		out = append(out, s)
		if enc := url.QueryEscape(s); enc != s {
			out = append(out, enc)
		}
	}
	return out
}()

// viaHeader is set by the test site's reverse_proxy: a request carrying it
// went through the same proxy, with the same settings, as the traffic.
const viaHeader = "X-Via-Proxy"

// fakeClock is the fake echo3D's clock: processing finishes when the test
// advances it.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := new(fakeClock)
	c.ns.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// seenQuery is one /query the upstream received.
type seenQuery struct {
	Method, RawQuery, Host, Via, UserAgent string
	Form                                   url.Values // urlencoded body
}

// fromPlugin reports whether the plugin sent it (a poll).
func (q seenQuery) fromPlugin() bool { return strings.HasPrefix(q.UserAgent, "caddy-echo3d-webhooks/") }

// watchUpstream wraps the fake echo3D API (processing takes an hour of its
// clock; userKey required). It records every /query, and can answer a
// waited /upload before processing (as when echo3D's five-minute wait
// expires) and a /delete without deleting (a listing that lags behind).
type watchUpstream struct {
	fake       *echo3dtest.Server
	expireWait atomic.Bool
	lazyDelete atomic.Bool

	mu      sync.Mutex
	queries []seenQuery
	notify  chan struct{}
}

func (u *watchUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch strings.ToLower(r.URL.Path) {
	case "/query":
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		form := url.Values{}
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
			form, _ = url.ParseQuery(string(body))
		}
		u.mu.Lock()
		u.queries = append(u.queries, seenQuery{
			Method: r.Method, RawQuery: r.URL.RawQuery, Host: r.Host,
			Via: r.Header.Get(viaHeader), UserAgent: r.UserAgent(), Form: form,
		})
		u.mu.Unlock()
		defer func() {
			select {
			case u.notify <- struct{}{}:
			default:
			}
		}()
	case "/upload":
		if u.expireWait.Load() {
			q := r.URL.Query()
			q.Set("noProcessingWait", "true")
			r.URL.RawQuery = q.Encode()
		}
	case "/delete":
		if u.lazyDelete.Load() {
			_, _ = io.Copy(io.Discard, r.Body)
			_, _ = io.WriteString(w, "Entry deleted")
			return
		}
	}
	u.fake.ServeHTTP(w, r)
}

// polls returns the polls received so far, optionally only for one entry.
func (u *watchUpstream) polls(entry string) []seenQuery {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []seenQuery
	for _, q := range u.queries {
		if q.fromPlugin() && (entry == "" || q.Form.Get("entry") == entry) {
			out = append(out, q)
		}
	}
	return out
}

// waitPolls waits until at least n polls (for entry, or any) arrived.
func (u *watchUpstream) waitPolls(t *testing.T, entry string, n int) []seenQuery {
	t.Helper()
	deadline := time.After(waitWithin)
	for {
		if got := u.polls(entry); len(got) >= n {
			return got
		}
		select {
		case <-u.notify:
		case <-deadline:
			t.Fatalf("upstream got %d polls for %q, want %d", len(u.polls(entry)), entry, n)
		}
	}
}

// noPollWithin fails if a poll arrives within d: a negative check, so it
// has to wait out d.
func (u *watchUpstream) noPollWithin(t *testing.T, d time.Duration) {
	t.Helper()
	before := len(u.polls(""))
	deadline := time.After(d)
	for {
		select {
		case <-u.notify:
			if n := len(u.polls("")); n > before {
				t.Fatalf("the plugin polled (%d polls, was %d): %+v", n, before, u.polls("")[before:])
			}
		case <-deadline:
			return
		}
	}
}

// watchEnv is the world of one watch test: the fake upstream, its clock
// and an HTTPS receiver.
type watchEnv struct {
	up    *watchUpstream
	clock *fakeClock
	rc    *receiver
	addr  string
	ca    string
}

func newWatchEnv(t *testing.T) *watchEnv {
	t.Helper()
	clock := newFakeClock()
	up := &watchUpstream{
		fake:   echo3dtest.NewServer(echo3dtest.Options{ProcessingDelay: time.Hour, RequireKey: true, Now: clock.Now}),
		notify: make(chan struct{}, 1),
	}
	srv := httptest.NewServer(up)
	t.Cleanup(srv.Close)
	rc := newReceiver(t)
	return &watchEnv{up: up, clock: clock, rc: rc, addr: srv.Listener.Addr().String(), ca: writeCA(t, rc)}
}

// config returns a Caddyfile with the plugin in front of the fake, the
// app options given plus the test defaults, and, when logFile is set,
// every log line at DEBUG level written to it as JSON. The site answers on
// localhost and 127.0.0.1.
func (e *watchEnv) config(opts, logFile string) string {
	logBlock := ""
	if logFile != "" {
		logBlock = fmt.Sprintf("\n\tlog {\n\t\toutput file %s\n\t\tformat json\n\t\tlevel DEBUG\n\t}", logFile)
	}
	return fmt.Sprintf(`{
	%s%s
	echo3d_webhooks {
		retry 50ms
		allow_private_targets
		trusted_ca_file %s
%s
	}
}
%s, http://127.0.0.1:%d {
	echo3d_webhooks
	reverse_proxy %s {
		header_up %s echo3d-watch-test
	}
}
`, globalHead(), logBlock, e.ca, opts, proxyURL, httpPort, e.addr, viaHeader)
}

// uploadEntry uploads a small model through the proxy, the credentials in
// the multipart body, and returns the new entry's id.
func uploadEntry(t *testing.T, key string, noWait bool) string {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fields := [][2]string{{"key", key}, {"email", upEmail}, {"userKey", upUserKey}, {"secKey", upSecKey}}
	if noWait {
		fields = append(fields, [2]string{"noProcessingWait", "true"})
	}
	for _, f := range fields {
		if err := mw.WriteField(f[0], f[1]); err != nil {
			t.Fatal(err)
		}
	}
	fw, err := mw.CreateFormFile("file", "lamp.fbx")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = fw.Write([]byte("Kaydara FBX Binary  \x00\x1a\x00"))
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(proxyURL+"/upload", mw.FormDataContentType(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var entry struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&entry); err != nil || resp.StatusCode != http.StatusOK || entry.ID == "" {
		t.Fatalf("upload: status %d, %v", resp.StatusCode, err)
	}
	return entry.ID
}

// clientCall sends a request through the proxy to host (proxyURL's when
// empty), with the credentials added to the form (a POST body) or, for
// GET, to the query string. It returns the status and body.
func clientCall(t *testing.T, method, host, path string, params url.Values) (int, []byte) {
	t.Helper()
	base := proxyURL
	if host != "" {
		base = "http://" + host
	}
	var body io.Reader
	target := base + path
	if method == http.MethodGet {
		target += "?" + params.Encode()
	} else {
		body = strings.NewReader(params.Encode())
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// creds returns the uploader's credentials for key plus kv pairs.
func creds(key string, kv ...string) url.Values {
	v := url.Values{"key": {key}, "email": {upEmail}, "userKey": {upUserKey}, "secKey": {upSecKey}}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v
}

// payload is an event with one entry id.
func payload(tr events.Trigger, key, id string) events.Payload {
	return events.Payload{Event: tr, APIKey: key, EntryIDs: []string{id}}
}

// sendTestEvent asks for a test delivery, which must then be the next
// delivery: proof that nothing else was queued before it.
func sendTestEvent(t *testing.T, hook webhook) events.Payload {
	t.Helper()
	if status, body := adminCall(t, http.MethodPost, "/echo3d/webhooks/"+hook.ID+"/test", nil); status != http.StatusAccepted {
		t.Fatalf("test event: %d %s", status, body)
	}
	return events.Payload{Event: "Test", APIKey: hook.APIKey}
}

// waitStats waits until the watch counters of the store poolKey satisfy
// cond, polling them with a deadline.
func waitStats(t *testing.T, poolKey, what string, cond func(watch.Stats) bool) watch.Stats {
	t.Helper()
	deadline := time.Now().Add(waitWithin)
	for {
		s, ok := caddymodule.WatchStats(poolKey)
		if ok && cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("watch stats %+v (hub found: %v): want %s", s, ok, what)
		}
		time.Sleep(10 * time.Millisecond) // polling counters with a deadline
	}
}

// TestProcessedPollPath: after a noProcessingWait upload, Upload is
// delivered at once and the entry is polled, through the same proxy, with
// the uploader's credentials in a POST body and backing off, until the
// fake upstream shows it processed; then Processed follows.
func TestProcessedPollPath(t *testing.T) {
	e := newWatchEnv(t)
	tester := newTester(t)
	load(t, tester, e.config("storage memory\n\t\tprocessed_poll 20ms 50ms 1m", ""))
	const key = "watch-poll-0001"
	hook := createWebhook(t, "poll", e.rc.url("/poll"), key, "Upload", "Processed")

	start := time.Now()
	id := uploadEntry(t, key, true)
	checkDeliveries(t, hook.Secret, e.rc.waitFor(t, 1, waitWithin), []events.Payload{payload(events.Upload, key, id)})

	polls := e.up.waitPolls(t, id, 3)
	took := time.Since(start)
	if got := e.rc.deliveries(); len(got) != 1 {
		t.Fatalf("%d deliveries while the entry is still processing, want only Upload", len(got))
	}
	for i, q := range polls {
		want := url.Values{"key": {key}, "entry": {id}, "email": {upEmail}, "userKey": {upUserKey}, "secKey": {upSecKey}}
		if q.Method != http.MethodPost || q.RawQuery != "" || !equalForms(q.Form, want) {
			t.Errorf("poll %d: %s ?%s body %v; want POST, nothing in the URL, body %v", i, q.Method, q.RawQuery, q.Form, want)
		}
		if q.Via == "" || q.Host != strings.TrimPrefix(proxyURL, "http://") {
			t.Errorf("poll %d did not travel like the traffic: %s=%q Host=%q", i, viaHeader, q.Via, q.Host)
		}
	}
	// With the interval doubling from 20ms (jitter -20 % at most) the third
	// poll comes at least 16+29+40 ms after the upload; at a fixed 20ms it
	// would come at 60ms.
	if took < 80*time.Millisecond {
		t.Errorf("3 polls within %s of the upload: no backoff", took)
	}

	e.clock.Advance(time.Hour)
	checkDeliveries(t, hook.Secret, e.rc.waitFor(t, 2, waitWithin), []events.Payload{
		payload(events.Upload, key, id),
		payload(events.Processed, key, id),
	})
	waitStats(t, "memory", "one resolved by poll, none left", func(s watch.Stats) bool {
		return s.ProcessedByPoll == 1 && s.Active == 0
	})
}

// equalForms compares url.Values ignoring order.
func equalForms(a, b url.Values) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// TestProcessedWaitedUploadFallback: a waited upload answered with the
// processed entry gives Upload then Processed and starts no watch; one
// answered before processing finished (echo3D's wait expired) falls back to
// a watch.
func TestProcessedWaitedUploadFallback(t *testing.T) {
	e := newWatchEnv(t)
	tester := newTester(t)
	load(t, tester, e.config("storage memory\n\t\tprocessed_poll 20ms 50ms 1m", ""))
	const key = "watch-waited-0001"
	hook := createWebhook(t, "waited", e.rc.url("/waited"), key, "Upload", "Processed")

	done := uploadEntry(t, key, false)
	want := []events.Payload{payload(events.Upload, key, done), payload(events.Processed, key, done)}
	checkDeliveries(t, hook.Secret, e.rc.waitFor(t, 2, waitWithin), want)
	if s, _ := caddymodule.WatchStats("memory"); s.Active != 0 {
		t.Fatalf("a processed upload started a watch: %+v", s)
	}

	e.up.expireWait.Store(true)
	late := uploadEntry(t, key, false)
	want = append(want, payload(events.Upload, key, late))
	checkDeliveries(t, hook.Secret, e.rc.waitFor(t, 3, waitWithin), want)
	e.up.waitPolls(t, late, 1)
	e.clock.Advance(time.Hour)
	want = append(want, payload(events.Processed, key, late))
	checkDeliveries(t, hook.Secret, e.rc.waitFor(t, 4, waitWithin), want)
	if n := len(e.up.polls(done)); n != 0 {
		t.Errorf("the processed upload was polled %d times", n)
	}
}

// TestProcessedPassivePath: /query responses that pass through (GET with
// the key in the URL, POST with it in the body, single entry or the whole
// collection) resolve watched entries they show processed, with no poll
// made; the client gets the upstream's answer unchanged.
func TestProcessedPassivePath(t *testing.T) {
	e := newWatchEnv(t)
	tester := newTester(t)
	load(t, tester, e.config("storage memory\n\t\tprocessed_poll 1h", ""))
	const key = "watch-passive-0001"
	hook := createWebhook(t, "passive", e.rc.url("/passive"), key, "Upload", "Processed")

	id1 := uploadEntry(t, key, true)
	id2 := uploadEntry(t, key, true)
	want := []events.Payload{payload(events.Upload, key, id1), payload(events.Upload, key, id2)}
	checkDeliveries(t, hook.Secret, e.rc.waitFor(t, 2, waitWithin), want)

	// Still processing: nothing.
	if status, _ := clientCall(t, http.MethodGet, "", "/query", creds(key, "entry", id1)); status != http.StatusOK {
		t.Fatalf("query: %d", status)
	}
	e.clock.Advance(time.Hour)

	// POST, key in the body, one entry.
	status, body := clientCall(t, http.MethodPost, "", "/query", creds(key, "entries", id1))
	entry, ok := events.QueryEntry(body, id1)
	if status != http.StatusOK || !ok || !events.EntryProcessed(entry) {
		t.Fatalf("client got %d %s, want the processed entry", status, body)
	}
	want = append(want, payload(events.Processed, key, id1))
	checkDeliveries(t, hook.Secret, e.rc.waitFor(t, 3, waitWithin), want)

	// GET, the whole collection.
	if status, _ := clientCall(t, http.MethodGet, "", "/query", creds(key)); status != http.StatusOK {
		t.Fatalf("listing: %d", status)
	}
	want = append(want, payload(events.Processed, key, id2))
	checkDeliveries(t, hook.Secret, e.rc.waitFor(t, 4, waitWithin), want)

	if polls := e.up.polls(""); len(polls) != 0 {
		t.Errorf("the plugin polled %d times; the first poll is an hour away", len(polls))
	}
	if s, _ := caddymodule.WatchStats("memory"); s.ProcessedPassive != 2 || s.Active != 0 {
		t.Errorf("stats %+v, want 2 resolved passively", s)
	}
	// Seen again: nothing more.
	clientCall(t, http.MethodGet, "", "/query", creds(key))
	want = append(want, sendTestEvent(t, hook))
	checkDeliveries(t, hook.Secret, e.rc.waitFor(t, 5, waitWithin), want)
}

// TestProcessedGiveUp: a watch whose entry never shows processed gives up
// at its deadline, with a warning and a count, and emits nothing, even when
// processing is seen later.
func TestProcessedGiveUp(t *testing.T) {
	e := newWatchEnv(t)
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	tester := newTester(t)
	// A give-up time of 2s leaves room for several polls even on a loaded
	// machine (the check below wants at least two).
	load(t, tester, e.config("storage memory\n\t\tprocessed_poll 20ms 40ms 2s", logFile))
	const key = "watch-giveup-0001"
	hook := createWebhook(t, "giveup", e.rc.url("/giveup"), key, "Upload", "Processed")
	before := caddymodule.WatchesEnded(watch.GaveUp)

	id := uploadEntry(t, key, true)
	waitStats(t, "memory", "one given up", func(s watch.Stats) bool { return s.GaveUp == 1 && s.Active == 0 })
	// The manager counts a watch as ended when it removes it; the warning
	// and then the process-wide count (its Ended hook) follow.
	waitUntil(t, "the process-wide give-up count", 10*time.Second, func() bool {
		return caddymodule.WatchesEnded(watch.GaveUp) > before
	})
	if got := caddymodule.WatchesEnded(watch.GaveUp) - before; got != 1 {
		t.Errorf("process-wide give-up count rose by %d, want 1", got)
	}
	if n := len(e.up.polls(id)); n < 2 {
		t.Errorf("gave up after %d polls", n)
	}
	logs := readLog(t, logFile)
	if !strings.Contains(logs, "gave up waiting") || !strings.Contains(logs, id) {
		t.Errorf("no warning naming %s in the log:\n%s", id, logs)
	}

	e.clock.Advance(time.Hour)
	clientCall(t, http.MethodGet, "", "/query", creds(key, "entry", id))
	testEvent := sendTestEvent(t, hook)
	checkDeliveries(t, hook.Secret, e.rc.waitFor(t, 2, waitWithin), []events.Payload{
		payload(events.Upload, key, id),
		testEvent,
	})
}

// TestProcessedDeletePath: a Delete of a watched entry ends its watch
// without Processed: no more polls, and a listing that still shows it
// processed resolves nothing.
func TestProcessedDeletePath(t *testing.T) {
	e := newWatchEnv(t)
	e.up.lazyDelete.Store(true)
	tester := newTester(t)
	load(t, tester, e.config("storage memory\n\t\tprocessed_poll 20ms 40ms 1m", ""))
	const key = "watch-delete-0001"
	hook := createWebhook(t, "delete", e.rc.url("/delete"), key, "Upload", "Processed", "Delete")

	gone := uploadEntry(t, key, true)
	e.up.waitPolls(t, gone, 1)
	if status, _ := clientCall(t, http.MethodDelete, "", "/delete", creds(key, "id", gone)); status != http.StatusOK {
		t.Fatalf("delete: %d", status)
	}
	want := []events.Payload{payload(events.Upload, key, gone), payload(events.Delete, key, gone)}
	checkDeliveries(t, hook.Secret, e.rc.waitFor(t, 2, waitWithin), want)
	waitStats(t, "memory", "one deleted", func(s watch.Stats) bool { return s.Deleted == 1 && s.Active == 0 })
	pollsOfGone := len(e.up.polls(gone))

	// The upstream now shows the deleted entry processed. Another upload's
	// polls prove the scheduler keeps running.
	e.clock.Advance(time.Hour)
	other := uploadEntry(t, key, true)
	e.up.waitPolls(t, other, 2)
	if n := len(e.up.polls(gone)); n != pollsOfGone {
		t.Errorf("the deleted entry was polled %d more times", n-pollsOfGone)
	}
	clientCall(t, http.MethodGet, "", "/query", creds(key, "entries", gone))
	e.clock.Advance(time.Hour)
	want = append(want, payload(events.Upload, key, other), payload(events.Processed, key, other))
	checkDeliveries(t, hook.Secret, e.rc.waitFor(t, 4, waitWithin), want)
}

// TestProcessedEviction: beyond max_watches the oldest watch gives up with
// a warning and a count; only the newer entry gets Processed.
func TestProcessedEviction(t *testing.T) {
	e := newWatchEnv(t)
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	tester := newTester(t)
	load(t, tester, e.config("storage memory\n\t\tprocessed_poll 1h\n\t\tmax_watches 1", logFile))
	const key = "watch-evict-0001"
	hook := createWebhook(t, "evict", e.rc.url("/evict"), key, "Upload", "Processed")
	before := caddymodule.WatchesEnded(watch.Evicted)
	metricBefore := evictedMetric(t)

	oldest := uploadEntry(t, key, true)
	newest := uploadEntry(t, key, true)
	waitStats(t, "memory", "one evicted", func(s watch.Stats) bool { return s.Evicted == 1 && s.Active == 1 })
	if got := caddymodule.WatchesEnded(watch.Evicted) - before; got != 1 {
		t.Errorf("process-wide eviction count rose by %d, want 1", got)
	}
	if got := evictedMetric(t) - metricBefore; got != 1 {
		t.Errorf("caddy_echo3d_webhooks_watches_evicted_total rose by %v, want 1", got)
	}
	if logs := readLog(t, logFile); !strings.Contains(logs, "too many entries") || !strings.Contains(logs, oldest) {
		t.Errorf("no eviction warning naming %s:\n%s", oldest, logs)
	}

	e.clock.Advance(time.Hour)
	clientCall(t, http.MethodGet, "", "/query", creds(key))
	testEvent := sendTestEvent(t, hook)
	checkDeliveries(t, hook.Secret, e.rc.waitFor(t, 4, waitWithin), []events.Payload{
		payload(events.Upload, key, oldest),
		payload(events.Upload, key, newest),
		payload(events.Processed, key, newest),
		testEvent,
	})
}

// TestProcessedSurvivesReload: a `caddy reload` keeps the watches and the
// uploader's in-memory credentials (the hub outlives the config); the new
// config polls through its own handler chain once a request has passed.
func TestProcessedSurvivesReload(t *testing.T) {
	e := newWatchEnv(t)
	tester := newTester(t)
	load(t, tester, e.config("storage memory\n\t\tprocessed_poll 20ms 40ms 1m", ""))
	const key = "watch-reload-0001"
	hook := createWebhook(t, "reload", e.rc.url("/reload"), key, "Upload", "Processed")
	id := uploadEntry(t, key, true)
	e.up.waitPolls(t, id, 1)

	tester.InitServer(e.config("storage memory\n\t\tprocessed_poll 20ms 40ms 2m", ""), "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	waitStats(t, "memory", "the watch kept", func(s watch.Stats) bool { return s.Active == 1 })
	before := len(e.up.polls(id))
	clientCall(t, http.MethodGet, "", "/get", url.Values{"key": {key}, "data": {"nothing"}})
	polls := e.up.waitPolls(t, id, before+1)
	wantForm := url.Values{"key": {key}, "entry": {id}, "email": {upEmail}, "userKey": {upUserKey}, "secKey": {upSecKey}}
	if q := polls[len(polls)-1]; !equalForms(q.Form, wantForm) || q.Via == "" {
		t.Errorf("poll after reload: body %v via %q; want the uploader's credentials through the proxy", q.Form, q.Via)
	}
	e.clock.Advance(time.Hour)
	checkDeliveries(t, hook.Secret, e.rc.waitFor(t, 2, waitWithin), []events.Payload{
		payload(events.Upload, key, id),
		payload(events.Processed, key, id),
	})
}

// TestProcessedRestartAndNoCredentialLeaks restarts the plugin (the store
// is closed and every in-memory credential dropped) with two uploads still
// processing. Their watches come back from Badger: while no poll can be
// made (no request through their host yet) one resolves passively; a
// request through the host then resumes polling, with the credentials the
// operator configured through {env.*}, and the other resolves. Badger's
// files and the DEBUG log of the whole run never hold a credential.
func TestProcessedRestartAndNoCredentialLeaks(t *testing.T) {
	t.Setenv("ECHO3D_TEST_EMAIL", envEmail)
	t.Setenv("ECHO3D_TEST_USER_KEY", envUserKey)
	t.Setenv("ECHO3D_TEST_SEC_KEY", envSecKey)
	e := newWatchEnv(t)
	dir := filepath.Join(t.TempDir(), "store")
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	poolKey := "dir:" + dir
	const key = "watch-restart-0001"
	opts := "storage " + dir + "\n\t\tprocessed_poll 20ms 40ms 1h"
	tester := newTester(t)
	load(t, tester, e.config(opts, logFile))
	hook := createWebhook(t, "restart", e.rc.url("/restart"), key, "Upload", "Processed")

	// Before the restart: two uploads, processed at +1h and +1h30 of the
	// fake clock, polled with the uploader's credentials.
	first := uploadEntry(t, key, true)
	e.clock.Advance(30 * time.Minute)
	second := uploadEntry(t, key, true)
	want := []events.Payload{payload(events.Upload, key, first), payload(events.Upload, key, second)}
	checkDeliveries(t, hook.Secret, e.rc.waitFor(t, 2, waitWithin), want)
	e.up.waitPolls(t, second, 2)

	// Restart.
	tester.InitServer(baseConfig(), "caddyfile")
	checkBadger(t, dir, first)

	load(t, tester, e.config(opts+`
		collection `+key+` {
			email {env.ECHO3D_TEST_EMAIL}
			user_key {env.ECHO3D_TEST_USER_KEY}
			sec_key {env.ECHO3D_TEST_SEC_KEY}
		}`, logFile))
	waitStats(t, poolKey, "both watches restored", func(s watch.Stats) bool { return s.Active == 2 })
	e.clock.Advance(40 * time.Minute) // first processed, second not yet
	e.up.noPollWithin(t, 200*time.Millisecond)

	// A listing through the other host shows the first processed: it
	// resolves passively, and still no poll is made (no request through
	// the watches' host yet).
	altHost := fmt.Sprintf("127.0.0.1:%d", httpPort)
	if status, body := clientCall(t, http.MethodPost, altHost, "/query", creds(key, "entry", first)); status != http.StatusOK {
		t.Fatalf("query through %s: %d %s", altHost, status, body)
	}
	want = append(want, payload(events.Processed, key, first))
	checkDeliveries(t, hook.Secret, e.rc.waitFor(t, 3, waitWithin), want)
	e.up.noPollWithin(t, 100*time.Millisecond)

	// Any request through the watches' host gives the route back: polling
	// resumes with the operator's credentials.
	pollsBefore := len(e.up.polls(second))
	if status, _ := clientCall(t, http.MethodGet, "", "/get", url.Values{"key": {key}, "data": {"nothing"}}); status == 0 {
		t.Fatal("no answer")
	}
	polls := e.up.waitPolls(t, second, pollsBefore+1)
	wantForm := url.Values{"key": {key}, "entry": {second}, "email": {envEmail}, "userKey": {envUserKey}, "secKey": {envSecKey}}
	if q := polls[len(polls)-1]; !equalForms(q.Form, wantForm) || q.RawQuery != "" || q.Via == "" {
		t.Errorf("resumed poll: ?%s body %v via %q; want body %v through the proxy", q.RawQuery, q.Form, q.Via, wantForm)
	}
	e.clock.Advance(time.Hour)
	want = append(want, payload(events.Processed, key, second))
	checkDeliveries(t, hook.Secret, e.rc.waitFor(t, 4, waitWithin), want)
	s := waitStats(t, poolKey, "one passive, one polled", func(s watch.Stats) bool {
		return s.ProcessedPassive == 1 && s.ProcessedByPoll == 1 && s.Active == 0
	})
	if s.Evicted+s.GaveUp+s.Deleted != 0 {
		t.Errorf("stats %+v", s)
	}

	// Stop, then look at everything written to disk and to the log.
	tester.InitServer(baseConfig(), "caddyfile")
	checkBadger(t, dir, first)
	logs := readLog(t, logFile)
	for _, secret := range secrets {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds the credential %q", secret)
		}
	}
	if !strings.Contains(logs, "watching an uploaded entry") || !strings.Contains(logs, second) {
		t.Errorf("the log lacks the plugin's DEBUG lines, so it proves nothing:\n%.2000s", logs)
	}
}

// checkBadger asserts that no credential is in the closed store at dir,
// neither in the raw bytes of its files (the write-ahead and value logs are
// plain) nor in any key or value Badger returns (its tables are
// compressed, so only reading them through Badger is conclusive). present
// must be in some record, proving that the scan sees the data.
func checkBadger(t *testing.T, dir, present string) {
	t.Helper()
	var raw bytes.Buffer
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		raw.Write(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range secrets {
		if bytes.Contains(raw.Bytes(), []byte(secret)) {
			t.Errorf("Badger's files hold the credential %q", secret)
		}
	}
	if raw.Len() == 0 {
		t.Errorf("no Badger files in %s", dir)
	}

	st, err := store.Open(store.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	records, found := 0, false
	err = st.DB().View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, AllVersions: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			val, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			records++
			found = found || bytes.Contains(val, []byte(present))
			for _, secret := range secrets {
				if bytes.Contains(item.Key(), []byte(secret)) || bytes.Contains(val, []byte(secret)) {
					t.Errorf("Badger record %q holds the credential %q", item.Key(), secret)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Errorf("none of the store's %d records holds %q: the scan proves nothing", records, present)
	}
}

// evictedMetric reads caddy_echo3d_webhooks_watches_evicted_total from the
// admin endpoint's /metrics.
func evictedMetric(t *testing.T) float64 {
	t.Helper()
	const name = "caddy_echo3d_webhooks_watches_evicted_total "
	resp, err := http.Get(adminURL + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics lacks %s", strings.TrimSpace(name))
	return 0
}

// readLog returns the log file's content.
func readLog(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
