package sink

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/store"
)

// testClock is the real time shifted by an offset the test can advance.
type testClock struct{ off atomic.Int64 }

func (c *testClock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *testClock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// resultLog collects what the dispatcher reports through OnResult.
type resultLog struct {
	mu   sync.Mutex
	list []Result
}

func (r *resultLog) add(res Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, res)
}

func (r *resultLog) of(deliveryID string) []Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Result
	for _, res := range r.list {
		if res.DeliveryID == deliveryID {
			out = append(out, res)
		}
	}
	return out
}

func (r *resultLog) ofWebhook(webhookID string) []Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Result
	for _, res := range r.list {
		if res.WebhookID == webhookID {
			out = append(out, res)
		}
	}
	return out
}

type harness struct {
	t     *testing.T
	st    *store.Store
	clock *testClock
	res   *resultLog
	logs  *observer.ObservedLogs
	pool  *x509.CertPool
	cfg   Config
	d     *Dispatcher
	seq   atomic.Int64
}

// testPool returns a pool trusting httptest's TLS servers (they all share
// one certificate).
func testPool(t *testing.T) *x509.CertPool {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	return certPool(srv)
}

// newHarness opens an in-memory store and builds (without starting) a
// dispatcher on it: private targets allowed, the test servers' CA trusted,
// retries after 5 ms.
func newHarness(t *testing.T, mod func(h *harness, c *Config)) *harness {
	t.Helper()
	st, err := store.Open(store.Options{InMemory: true})
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("store Close: %v", err)
		}
	})
	core, logs := observer.New(zapcore.DebugLevel)
	h := &harness{t: t, st: st, clock: &testClock{}, res: &resultLog{}, logs: logs, pool: testPool(t)}
	h.cfg = Config{
		Outbox: st,
		// The transport the app uses by default (versions 1.1).
		Client:    NewClient(ClientOptions{Policy: Policy{AllowPrivate: true}, RootCAs: h.pool, HTTP1Only: true}),
		Schedule:  Schedule{5 * time.Millisecond},
		Timeout:   5 * time.Second,
		UserAgent: "sink-test/1",
		Logger:    zap.New(core),
		Now:       h.clock.Now,
		OnResult:  h.res.add,
	}
	if mod != nil {
		mod(h, &h.cfg)
	}
	h.d = New(h.cfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h.d.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
		if t.Failed() {
			for _, e := range logs.All() {
				t.Logf("log: %s %s %v", e.Level, e.Message, e.ContextMap())
			}
		}
	})
	return h
}

// received is one request seen by a receiver.
type received struct {
	id, ts, sig string
	header      http.Header
	body        []byte
	proto       int
	verifyErr   error
}

// receiver is an HTTPS webhook receiver that verifies every request with
// the Standard Webhooks reference library.
type receiver struct {
	srv    *httptest.Server
	secret string
	mu     sync.Mutex
	reqs   []received
	n      atomic.Int32 // requests that entered the handler
	open   atomic.Int32 // connections open
}

// newReceiver starts a receiver; respond is called with the 0-based index
// of the request (nil: 200 "ok").
func (h *harness) newReceiver(respond func(i int, w http.ResponseWriter, r *http.Request)) *receiver {
	return h.newReceiverH2(false, respond)
}

func (h *harness) newReceiverH2(h2 bool, respond func(i int, w http.ResponseWriter, r *http.Request)) *receiver {
	secret, err := NewSecret()
	if err != nil {
		h.t.Fatal(err)
	}
	rc := &receiver{secret: secret}
	rc.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(rc.n.Add(1)) - 1
		body, _ := io.ReadAll(r.Body)
		rec := received{
			id:     r.Header.Get("webhook-id"),
			ts:     r.Header.Get("webhook-timestamp"),
			sig:    r.Header.Get("webhook-signature"),
			header: r.Header.Clone(),
			body:   body,
			proto:  r.ProtoMajor,
		}
		wh, _ := standardwebhooks.NewWebhook(rc.secret)
		rec.verifyErr = wh.Verify(body, r.Header)
		rc.mu.Lock()
		rc.reqs = append(rc.reqs, rec)
		rc.mu.Unlock()
		if respond == nil {
			io.WriteString(w, "ok")
			return
		}
		respond(i, w, r)
	}))
	rc.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	rc.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			rc.open.Add(1)
		case http.StateClosed, http.StateHijacked:
			rc.open.Add(-1)
		}
	}
	rc.srv.EnableHTTP2 = h2
	rc.srv.StartTLS()
	h.t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.reqs...)
}

// webhook registers an enabled webhook for rc.
func (h *harness) webhook(rc *receiver, mod ...func(*store.Webhook)) store.Webhook {
	h.t.Helper()
	n := h.seq.Add(1)
	w := store.Webhook{
		ID:        fmt.Sprintf("wh_%d", n),
		Name:      fmt.Sprintf("hook %d", n),
		URL:       rc.srv.URL + "/hook",
		Triggers:  []string{"Upload"},
		APIKey:    "quiet-river-1234",
		Enabled:   true,
		Secret:    rc.secret,
		CreatedAt: h.clock.Now(),
		UpdatedAt: h.clock.Now(),
	}
	for _, m := range mod {
		m(&w)
	}
	if err := h.st.CreateWebhook(w); err != nil {
		h.t.Fatalf("CreateWebhook: %v", err)
	}
	return w
}

// enqueue creates n deliveries to the webhook, in order, and notifies.
func (h *harness) enqueue(webhookID string, n int) []store.Delivery {
	h.t.Helper()
	var out []store.Delivery
	for range n {
		i := h.seq.Add(1)
		ev := store.Event{
			ID:        fmt.Sprintf("evt_%d", i),
			Trigger:   "Upload",
			APIKey:    "quiet-river-1234",
			Payload:   fmt.Appendf(nil, `{"event":"Upload","apiKey":"quiet-river-1234","entryIds":["e%d"],"metadataKeys":[],"metadataValues":[]}`, i),
			CreatedAt: h.clock.Now(),
		}
		d, err := h.st.EnqueueDelivery(ev, webhookID, h.clock.Now())
		if err != nil {
			h.t.Fatalf("EnqueueDelivery: %v", err)
		}
		out = append(out, d)
	}
	h.d.Notify()
	return out
}

// waitState waits until the delivery is in state and returns it.
func (h *harness) waitState(id, state string) store.Delivery {
	h.t.Helper()
	var d store.Delivery
	waitFor(h.t, "delivery "+id+" "+state, func() bool {
		var err error
		d, err = h.st.GetDelivery(id)
		return err == nil && d.State == state
	})
	return d
}

// waitResults waits for n results of a delivery and returns them.
func (h *harness) waitResults(id string, n int) []Result {
	h.t.Helper()
	waitFor(h.t, fmt.Sprintf("%d results of %s", n, id), func() bool { return len(h.res.of(id)) >= n })
	return h.res.of(id)
}

func TestDispatchSuccess(t *testing.T) {
	h := newHarness(t, nil)
	rc := h.newReceiver(nil)
	w := h.webhook(rc)
	ds := h.enqueue(w.ID, 3)
	h.d.Start()

	for _, d := range ds {
		got := h.waitState(d.ID, store.StateSucceeded)
		if got.Attempts != 1 || got.LastStatus != 200 {
			t.Errorf("delivery %s: attempts %d, last status %d", d.ID, got.Attempts, got.LastStatus)
		}
		res := h.waitResults(d.ID, 1)[0]
		if res.Outcome != OutcomeSucceeded || res.Attempt != 1 || res.Status != 200 || res.Err != nil || res.WebhookID != w.ID || res.EventID != d.EventID {
			t.Errorf("result %+v", res)
		}
	}
	reqs := rc.requests()
	if len(reqs) != 3 {
		t.Fatalf("receiver got %d requests, want 3", len(reqs))
	}
	// Requests on different connections may reach the handler in any
	// order; match them by webhook-id.
	byID := map[string]store.Delivery{}
	for _, d := range ds {
		byID[d.ID] = d
	}
	for i, r := range reqs {
		if r.verifyErr != nil {
			t.Errorf("request %d: reference Verify: %v", i, r.verifyErr)
		}
		d, ok := byID[r.id]
		if !ok {
			t.Fatalf("request %d: webhook-id %q is not a delivery id", i, r.id)
		}
		delete(byID, r.id)
		ev, err := h.st.GetEvent(d.EventID)
		if err != nil {
			t.Fatal(err)
		}
		if string(r.body) != string(ev.Payload) {
			t.Errorf("request %d: body %s, want %s", i, r.body, ev.Payload)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
		if ua := r.header.Get("User-Agent"); ua != "sink-test/1" {
			t.Errorf("User-Agent %q", ua)
		}
		ts, err := strconv.ParseInt(r.ts, 10, 64)
		if err != nil || time.Since(time.Unix(ts, 0)).Abs() > 5*time.Second {
			t.Errorf("webhook-timestamp %q", r.ts)
		}
		if !strings.HasPrefix(r.sig, "v1,") || strings.Contains(r.sig, " ") {
			t.Errorf("webhook-signature %q", r.sig)
		}
	}
	atts, _, err := h.st.ListAttempts(w.ID, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(atts) != 3 {
		t.Fatalf("%d attempts recorded, want 3", len(atts))
	}
	for _, a := range atts {
		if a.Status != 200 || a.ResponseBody != "ok" || a.Number != 1 || a.Error != "" || a.Duration <= 0 || a.At.IsZero() {
			t.Errorf("attempt %+v", a)
		}
	}
}

func TestDispatchToResolvedName(t *testing.T) {
	// The test certificate is valid for example.com; the fake DNS sends
	// that name to the receiver on 127.0.0.1, allowed here.
	dns := newFakeDNS(t)
	dns.set("example.com", "127.0.0.1")
	h := newHarness(t, func(h *harness, c *Config) {
		c.Client = NewClient(ClientOptions{Policy: Policy{AllowPrivate: true}, Resolver: dns.resolver(), RootCAs: h.pool})
	})
	rc := h.newReceiver(nil)
	_, port, _ := net.SplitHostPort(rc.srv.Listener.Addr().String())
	w := h.webhook(rc, func(w *store.Webhook) { w.URL = "https://example.com:" + port + "/hook" })
	d := h.enqueue(w.ID, 1)[0]
	h.d.Start()
	h.waitState(d.ID, store.StateSucceeded)
	if r := rc.requests(); len(r) != 1 || r[0].verifyErr != nil {
		t.Fatalf("requests %+v", r)
	}
}

func TestRetryThenSuccess(t *testing.T) {
	h := newHarness(t, nil)
	rc := h.newReceiver(func(i int, w http.ResponseWriter, r *http.Request) {
		if i == 0 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
	})
	w := h.webhook(rc)
	d := h.enqueue(w.ID, 1)[0]
	h.d.Start()

	got := h.waitState(d.ID, store.StateSucceeded)
	if got.Attempts != 2 {
		t.Fatalf("attempts %d, want 2", got.Attempts)
	}
	res := h.waitResults(d.ID, 2)
	if res[0].Outcome != OutcomeRetry || res[0].Status != 503 || res[0].Attempt != 1 || res[0].NextAttemptAt.IsZero() {
		t.Errorf("first result %+v", res[0])
	}
	if res[1].Outcome != OutcomeSucceeded || res[1].Attempt != 2 {
		t.Errorf("second result %+v", res[1])
	}
	reqs := rc.requests()
	if len(reqs) != 2 || reqs[0].id != d.ID || reqs[1].id != d.ID {
		t.Fatalf("requests %+v: webhook-id must be the delivery id on every attempt", reqs)
	}
	for _, r := range reqs {
		if r.verifyErr != nil {
			t.Errorf("reference Verify: %v", r.verifyErr)
		}
	}
	atts, _, _ := h.st.ListAttempts(w.ID, "", 10)
	if len(atts) != 2 || atts[0].Number != 2 || atts[1].Number != 1 || atts[1].Status != 503 || !strings.Contains(atts[1].ResponseBody, "busy") {
		t.Errorf("attempts %+v", atts)
	}
}

func TestRetryAfter429(t *testing.T) {
	t.Run("honoured", func(t *testing.T) {
		h := newHarness(t, func(_ *harness, c *Config) { c.Schedule = Schedule{time.Millisecond} })
		rc := h.newReceiver(func(i int, w http.ResponseWriter, r *http.Request) {
			if i == 0 {
				w.Header().Set("Retry-After", "2")
				w.WriteHeader(http.StatusTooManyRequests)
				return
			}
		})
		w := h.webhook(rc)
		d := h.enqueue(w.ID, 1)[0]
		before := h.clock.Now()
		h.d.Start()
		r1 := h.waitResults(d.ID, 1)[0]
		after := h.clock.Now()
		if r1.Outcome != OutcomeRetry || r1.Status != 429 {
			t.Fatalf("first result %+v", r1)
		}
		if r1.NextAttemptAt.Before(before.Add(2*time.Second)) || r1.NextAttemptAt.After(after.Add(2*time.Second)) {
			t.Fatalf("next attempt at +%v, want +2s", r1.NextAttemptAt.Sub(before))
		}
		// The whole webhook waits; the delivery keeps its place in line.
		if got, _ := h.st.GetDelivery(d.ID); got.State != store.StatePending || got.NextAttemptAt.After(r1.NextAttemptAt) {
			t.Fatalf("stored delivery %+v", got)
		}
		if hl := h.st.Health(w.ID); !hl.HoldUntil.Equal(r1.NextAttemptAt) {
			t.Fatalf("webhook held until %v, want %v", hl.HoldUntil, r1.NextAttemptAt)
		}
		h.clock.Advance(2 * time.Second)
		h.d.Notify()
		h.waitState(d.ID, store.StateSucceeded)
	})
	t.Run("capped", func(t *testing.T) {
		h := newHarness(t, func(_ *harness, c *Config) {
			c.Schedule = Schedule{time.Millisecond}
			c.MaxRetryAfter = 30 * time.Millisecond
		})
		rc := h.newReceiver(func(i int, w http.ResponseWriter, r *http.Request) {
			if i == 0 {
				w.Header().Set("Retry-After", "3600")
				w.WriteHeader(http.StatusTooManyRequests)
			}
		})
		w := h.webhook(rc)
		d := h.enqueue(w.ID, 1)[0]
		before := h.clock.Now()
		h.d.Start()
		r1 := h.waitResults(d.ID, 1)[0]
		after := h.clock.Now()
		if r1.NextAttemptAt.Before(before.Add(30*time.Millisecond)) || r1.NextAttemptAt.After(after.Add(30*time.Millisecond)) {
			t.Fatalf("next attempt at +%v, want +30ms", r1.NextAttemptAt.Sub(before))
		}
		h.waitState(d.ID, store.StateSucceeded)
	})
	t.Run("schedule wins when longer", func(t *testing.T) {
		h := newHarness(t, func(_ *harness, c *Config) { c.Schedule = Schedule{time.Hour} })
		rc := h.newReceiver(func(i int, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
		})
		w := h.webhook(rc)
		d := h.enqueue(w.ID, 1)[0]
		before := h.clock.Now()
		h.d.Start()
		r1 := h.waitResults(d.ID, 1)[0]
		if r1.NextAttemptAt.Before(before.Add(48 * time.Minute)) {
			t.Fatalf("next attempt at +%v, want about +1h", r1.NextAttemptAt.Sub(before))
		}
	})
}

func TestGoneDisablesWebhook(t *testing.T) {
	var changes []HealthChange
	var mu sync.Mutex
	h := newHarness(t, func(_ *harness, c *Config) {
		c.PerWebhook = 1
		c.OnHealth = func(hc HealthChange) {
			mu.Lock()
			defer mu.Unlock()
			changes = append(changes, hc)
		}
	})
	var gone atomic.Bool
	gone.Store(true)
	rc := h.newReceiver(func(i int, w http.ResponseWriter, r *http.Request) {
		if gone.Load() {
			w.WriteHeader(http.StatusGone)
		}
	})
	w := h.webhook(rc)
	ds := h.enqueue(w.ID, 2)
	h.d.Start()

	if r := h.waitResults(ds[0].ID, 1)[0]; r.Outcome != OutcomeDisabled || r.Status != 410 {
		t.Errorf("first result %+v", r)
	}
	got, err := h.st.GetWebhook(w.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Enabled || got.DisabledReason != "410 Gone from receiver" {
		t.Errorf("webhook after 410: enabled %v, reason %q", got.Enabled, got.DisabledReason)
	}
	mu.Lock()
	if len(changes) != 1 || changes[0].Change != ChangeDisabled || changes[0].Cause != CauseGone || changes[0].WebhookID != w.ID {
		t.Errorf("health changes %+v, want one disabled (gone)", changes)
	}
	mu.Unlock()
	// Both deliveries are kept, pending, and nothing more is sent.
	first, _ := h.st.GetDelivery(ds[0].ID)
	if first.State != store.StatePending || first.Attempts != 1 || first.LastStatus != 410 {
		t.Errorf("first delivery %+v", first)
	}
	h.d.Notify()
	if cl, err := h.st.ClaimDue(h.clock.Now().Add(time.Hour), time.Minute, 10, nil); err != nil || len(cl) != 0 {
		t.Errorf("claimable from the disabled webhook: %d, %v", len(cl), err)
	}
	if n := rc.n.Load(); n != 1 {
		t.Errorf("receiver got %d requests, want 1", n)
	}
	if second, _ := h.st.GetDelivery(ds[1].ID); second.State != store.StatePending || second.Attempts != 0 {
		t.Errorf("second delivery %+v", second)
	}

	// Enabled again (the receiver is back): both are delivered, in order.
	gone.Store(false)
	got.Enabled = true
	got.DisabledReason = ""
	if err := h.st.UpdateWebhook(got); err != nil {
		t.Fatal(err)
	}
	h.d.Notify()
	h.waitState(ds[0].ID, store.StateSucceeded)
	h.waitState(ds[1].ID, store.StateSucceeded)
	reqs := rc.requests()
	if len(reqs) != 3 || reqs[1].id != ds[0].ID || reqs[2].id != ds[1].ID {
		t.Errorf("requests after enabling: %d", len(reqs))
	}
}

func TestExhaustion(t *testing.T) {
	h := newHarness(t, func(_ *harness, c *Config) { c.Schedule = Schedule{time.Millisecond, 2 * time.Millisecond} })
	rc := h.newReceiver(func(i int, w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom "+strconv.Itoa(i), http.StatusInternalServerError)
	})
	w := h.webhook(rc)
	d := h.enqueue(w.ID, 1)[0]
	h.d.Start()

	got := h.waitState(d.ID, store.StateFailed)
	if got.Attempts != 3 || got.LastStatus != 500 {
		t.Fatalf("delivery %+v", got)
	}
	res := h.waitResults(d.ID, 3)
	for i, r := range res {
		want := OutcomeRetry
		if i == 2 {
			want = OutcomeFailed
		}
		if r.Outcome != want || r.Attempt != i+1 || r.Status != 500 {
			t.Errorf("result %d: %+v", i, r)
		}
	}
	if n := rc.n.Load(); n != 3 {
		t.Errorf("receiver got %d requests, want 3", n)
	}
	atts, _, _ := h.st.ListAttempts(w.ID, "", 10)
	if len(atts) != 3 || !strings.HasPrefix(atts[0].ResponseBody, "boom 2") {
		t.Errorf("attempts %+v", atts)
	}
}

func TestTimeoutRetries(t *testing.T) {
	const timeout = 500 * time.Millisecond
	h := newHarness(t, func(_ *harness, c *Config) {
		c.Timeout = timeout
		// Spare attempts: under a loaded race detector, a handshake can
		// eat an attempt's whole budget.
		c.Schedule = Schedule{5 * time.Millisecond, 5 * time.Millisecond, 5 * time.Millisecond, 5 * time.Millisecond}
	})
	rc := h.newReceiver(func(i int, w http.ResponseWriter, r *http.Request) {
		if i == 0 {
			<-r.Context().Done() // never answers; the client gives up
			return
		}
	})
	w := h.webhook(rc)
	d := h.enqueue(w.ID, 1)[0]
	h.d.Start()

	got := h.waitState(d.ID, store.StateSucceeded)
	res := h.waitResults(d.ID, got.Attempts)
	want := "timeout after " + timeout.String()
	if res[0].Outcome != OutcomeRetry || res[0].Status != 0 || res[0].Err == nil || res[0].Err.Error() != want {
		t.Errorf("first result %+v", res[0])
	}
	if res[0].Duration < timeout {
		t.Errorf("timed-out attempt lasted %v", res[0].Duration)
	}
	atts, _, _ := h.st.ListAttempts(w.ID, "", 10)
	if len(atts) != got.Attempts || atts[len(atts)-1].Error != want || atts[0].Status != 200 {
		t.Errorf("attempts %+v", atts)
	}
}

func TestRedirectIsAFailure(t *testing.T) {
	h := newHarness(t, nil)
	target := h.newReceiver(nil)
	rc := h.newReceiver(func(i int, w http.ResponseWriter, r *http.Request) {
		if i == 0 {
			http.Redirect(w, r, target.srv.URL+"/elsewhere", http.StatusFound)
		}
	})
	w := h.webhook(rc)
	d := h.enqueue(w.ID, 1)[0]
	h.d.Start()

	h.waitState(d.ID, store.StateSucceeded)
	res := h.waitResults(d.ID, 2)
	if res[0].Status != 302 || res[0].Outcome != OutcomeRetry {
		t.Errorf("first result %+v", res[0])
	}
	if n := target.n.Load(); n != 0 {
		t.Errorf("redirect target got %d requests", n)
	}
}

// TestStoredURLCheckedBeforeSending: a webhook URL that registration would
// refuse (it is checked there too) is not sent to, and the attempt's error
// says why without quoting the URL.
func TestStoredURLCheckedBeforeSending(t *testing.T) {
	tests := []struct {
		name, url, want string
	}{
		{"plain http", "http://%s/hook", "webhook url must use https"},
		{"not a URL", "https://bad host/%s", "webhook url is not a valid URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			rc := h.newReceiver(nil)
			w := h.webhook(rc, func(w *store.Webhook) { w.URL = fmt.Sprintf(tt.url, rc.srv.Listener.Addr()) })
			d := h.enqueue(w.ID, 1)[0]
			h.d.Start()
			r := h.waitResults(d.ID, 1)[0]
			if r.Err == nil || r.Err.Error() != tt.want {
				t.Errorf("result error %v, want %q", r.Err, tt.want)
			}
			if n := rc.n.Load(); n != 0 {
				t.Errorf("receiver got %d requests", n)
			}
		})
	}
}

func TestWebhookDeleted(t *testing.T) {
	h := newHarness(t, nil)
	rc := h.newReceiver(nil)
	w := h.webhook(rc)
	d := h.enqueue(w.ID, 1)[0]
	if err := h.st.DeleteWebhook(w.ID); err != nil {
		t.Fatal(err)
	}
	h.d.Start()
	got := h.waitState(d.ID, store.StateFailed)
	if got.Attempts != 0 {
		t.Errorf("attempts %d, want 0", got.Attempts)
	}
	r := h.waitResults(d.ID, 1)[0]
	if r.Outcome != OutcomeFailed || r.Attempt != 0 || r.Err == nil || r.Err.Error() != "webhook deleted" {
		t.Errorf("result %+v", r)
	}
	if n := rc.n.Load(); n != 0 {
		t.Errorf("receiver got %d requests", n)
	}
}

// TestDisabledWebhookKeepsDeliveries: a disabled webhook's deliveries are
// neither sent nor dropped, including one claimed just before the webhook
// was disabled; enabling it delivers them.
func TestDisabledWebhookKeepsDeliveries(t *testing.T) {
	h := newHarness(t, nil)
	rc := h.newReceiver(nil)
	w := h.webhook(rc)
	ds := h.enqueue(w.ID, 3)
	// The first is claimed by someone, then the webhook is disabled: the
	// dispatcher gets the claim with the enabled snapshot it was claimed
	// with... and a disabled one here, as if the change came in between.
	cl, err := h.st.ClaimDue(h.clock.Now(), time.Millisecond, 1, nil)
	if err != nil || len(cl) != 1 {
		t.Fatalf("ClaimDue: %d, %v", len(cl), err)
	}
	w.Enabled = false
	if err := h.st.UpdateWebhook(w); err != nil {
		t.Fatal(err)
	}
	cl[0].Webhook.Enabled = false
	h.d.attempts.Add(1)
	h.d.mu.Lock()
	h.d.inflight++
	h.d.active[cl[0].Delivery.ID] = struct{}{}
	h.d.mu.Unlock()
	h.d.run(cl[0], false, nil, make(chan struct{}))

	h.d.Start()
	for _, d := range ds {
		got, err := h.st.GetDelivery(d.ID)
		if err != nil || got.State != store.StatePending || got.Attempts != 0 {
			t.Errorf("delivery %+v, %v; want pending without attempts", got, err)
		}
	}
	if next, ok, err := h.st.NextDue(); ok || err != nil {
		t.Errorf("NextDue = %v, %v, %v with only a disabled webhook's deliveries", next, ok, err)
	}
	if n := rc.n.Load(); n != 0 {
		t.Errorf("receiver got %d requests from a disabled webhook", n)
	}
	if res := h.res.ofWebhook(w.ID); len(res) != 0 {
		t.Errorf("results %+v", res)
	}

	w.Enabled = true
	if err := h.st.UpdateWebhook(w); err != nil {
		t.Fatal(err)
	}
	h.d.Notify()
	for _, d := range ds {
		h.waitState(d.ID, store.StateSucceeded)
	}
	if n := rc.n.Load(); n != 3 {
		t.Errorf("receiver got %d requests, want 3", n)
	}
}

func TestTransportFailures(t *testing.T) {
	t.Run("connection refused", func(t *testing.T) {
		h := newHarness(t, func(_ *harness, c *Config) { c.Schedule = Schedule{} })
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		rc := h.newReceiver(nil)
		w := h.webhook(rc, func(w *store.Webhook) { w.URL = "https://" + addr + "/hook?token=SECRET-TOKEN" })
		d := h.enqueue(w.ID, 1)[0]
		h.d.Start()
		h.waitState(d.ID, store.StateFailed)
		r := h.waitResults(d.ID, 1)[0]
		if r.Outcome != OutcomeFailed || r.Attempt != 1 || r.Err == nil || !strings.Contains(r.Err.Error(), "connection refused") {
			t.Fatalf("result %+v", r)
		}
		if strings.Contains(r.Err.Error(), "SECRET-TOKEN") {
			t.Errorf("error %q contains the URL", r.Err)
		}
	})
	t.Run("ssrf policy", func(t *testing.T) {
		h := newHarness(t, func(h *harness, c *Config) {
			c.Schedule = Schedule{}
			c.Client = NewClient(ClientOptions{RootCAs: h.pool})
		})
		rc := h.newReceiver(nil)
		w := h.webhook(rc)
		d := h.enqueue(w.ID, 1)[0]
		h.d.Start()
		got := h.waitState(d.ID, store.StateFailed)
		if !strings.Contains(got.LastError, "127.0.0.1 is a loopback address") {
			t.Errorf("last error %q", got.LastError)
		}
		if n := rc.n.Load(); n != 0 {
			t.Errorf("receiver got %d requests", n)
		}
	})
	t.Run("dns rebinding", func(t *testing.T) {
		dns := newFakeDNS(t)
		dns.set("rebind.test", "127.0.0.1")
		h := newHarness(t, func(h *harness, c *Config) {
			c.Schedule = Schedule{}
			c.Client = NewClient(ClientOptions{Resolver: dns.resolver(), RootCAs: h.pool})
		})
		rc := h.newReceiver(nil)
		_, port, _ := net.SplitHostPort(rc.srv.Listener.Addr().String())
		w := h.webhook(rc, func(w *store.Webhook) { w.URL = "https://rebind.test:" + port + "/hook" })
		d := h.enqueue(w.ID, 1)[0]
		h.d.Start()
		got := h.waitState(d.ID, store.StateFailed)
		if !strings.Contains(got.LastError, "127.0.0.1 is a loopback address") {
			t.Errorf("last error %q", got.LastError)
		}
		if n := rc.n.Load(); n != 0 {
			t.Errorf("receiver got %d requests", n)
		}
	})
	t.Run("tls untrusted", func(t *testing.T) {
		h := newHarness(t, func(h *harness, c *Config) {
			c.Schedule = Schedule{}
			c.Client = NewClient(ClientOptions{Policy: Policy{AllowPrivate: true}})
		})
		rc := h.newReceiver(nil)
		w := h.webhook(rc)
		d := h.enqueue(w.ID, 1)[0]
		h.d.Start()
		got := h.waitState(d.ID, store.StateFailed)
		if !strings.Contains(got.LastError, "certificate") {
			t.Errorf("last error %q", got.LastError)
		}
	})
	t.Run("invalid secret", func(t *testing.T) {
		h := newHarness(t, func(_ *harness, c *Config) { c.Schedule = Schedule{} })
		rc := h.newReceiver(nil)
		w := h.webhook(rc, func(w *store.Webhook) { w.Secret = "whsec_dG9vc2hvcnQ=" })
		d := h.enqueue(w.ID, 1)[0]
		h.d.Start()
		got := h.waitState(d.ID, store.StateFailed)
		if got.Attempts != 1 || !strings.Contains(got.LastError, "secret") {
			t.Errorf("delivery %+v", got)
		}
		if n := rc.n.Load(); n != 0 {
			t.Errorf("receiver got %d requests", n)
		}
	})
	t.Run("plain http refused", func(t *testing.T) {
		h := newHarness(t, func(_ *harness, c *Config) { c.Schedule = Schedule{} })
		var hits atomic.Int32
		plain := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
		t.Cleanup(plain.Close)
		rc := h.newReceiver(nil)
		w := h.webhook(rc, func(w *store.Webhook) { w.URL = plain.URL })
		d := h.enqueue(w.ID, 1)[0]
		h.d.Start()
		got := h.waitState(d.ID, store.StateFailed)
		if !strings.Contains(got.LastError, "https") || hits.Load() != 0 {
			t.Errorf("delivery %+v, hits %d", got, hits.Load())
		}
	})
}

func TestSecretRotationSignsWithLiveSecrets(t *testing.T) {
	h := newHarness(t, nil)
	rc := h.newReceiver(nil)
	oldSecret, _ := NewSecret()
	expired, _ := NewSecret()
	w := h.webhook(rc, func(w *store.Webhook) {
		w.PreviousSecrets = []store.PreviousSecret{
			{Secret: oldSecret, ExpiresAt: h.clock.Now().Add(time.Hour)},
			{Secret: expired, ExpiresAt: h.clock.Now().Add(-time.Minute)},
		}
	})
	d := h.enqueue(w.ID, 1)[0]
	h.d.Start()
	h.waitState(d.ID, store.StateSucceeded)
	r := rc.requests()[0]
	if n := len(strings.Fields(r.sig)); n != 2 {
		t.Fatalf("signature %q has %d entries, want 2", r.sig, n)
	}
	for name, s := range map[string]string{"current": rc.secret, "previous": oldSecret} {
		wh, _ := standardwebhooks.NewWebhook(s)
		if err := wh.Verify(r.body, r.header); err != nil {
			t.Errorf("%s secret: %v", name, err)
		}
	}
	wh, _ := standardwebhooks.NewWebhook(expired)
	if err := wh.Verify(r.body, r.header); err == nil {
		t.Error("expired secret still signs")
	}
}

// shortGrace shortens orderGrace for dispatchers built during the test.
func shortGrace(t *testing.T, d time.Duration) {
	old := orderGrace
	orderGrace = d
	t.Cleanup(func() { orderGrace = old })
}

func TestHangingReceiverDoesNotDelayOthers(t *testing.T) {
	shortGrace(t, 20*time.Millisecond)
	h := newHarness(t, func(_ *harness, c *Config) {
		c.Workers = 4
		c.PerWebhook = 2
		c.Timeout = time.Minute
	})
	release := make(chan struct{})
	hanging := h.newReceiver(func(i int, w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) }) // before the server closes
	healthy := h.newReceiver(nil)
	wh := h.webhook(hanging)
	wg := h.webhook(healthy)
	h.enqueue(wh.ID, 5) // claimed first
	good := h.enqueue(wg.ID, 20)
	h.d.Start()

	waitFor(t, "two hanging requests", func() bool { return hanging.n.Load() == 2 })
	for _, d := range good {
		h.waitState(d.ID, store.StateSucceeded)
	}
	if n := hanging.n.Load(); n != 2 {
		t.Errorf("hanging receiver got %d requests, want 2 (per-webhook limit)", n)
	}
	if res := h.res.ofWebhook(wh.ID); len(res) != 0 {
		t.Errorf("hanging webhook has results %+v", res)
	}
	if n := len(healthy.requests()); n != 20 {
		t.Errorf("healthy receiver got %d requests", n)
	}
}

func TestConcurrencyLimits(t *testing.T) {
	h := newHarness(t, func(_ *harness, c *Config) {
		c.Workers = 3
		c.PerWebhook = 2
	})
	var cur, maxGlobal atomic.Int32
	perHook := map[*receiver]*atomic.Int32{}
	var mu sync.Mutex
	maxPer := map[*receiver]int32{}
	var rcs []*receiver
	for range 3 {
		var rc *receiver
		c := new(atomic.Int32)
		rc = h.newReceiver(func(i int, w http.ResponseWriter, r *http.Request) {
			g := cur.Add(1)
			p := c.Add(1)
			for {
				m := maxGlobal.Load()
				if g <= m || maxGlobal.CompareAndSwap(m, g) {
					break
				}
			}
			mu.Lock()
			maxPer[rc] = max(maxPer[rc], p)
			mu.Unlock()
			select {
			case <-time.After(5 * time.Millisecond): // hold the slot a little
			case <-r.Context().Done():
			}
			c.Add(-1)
			cur.Add(-1)
		})
		perHook[rc] = c
		rcs = append(rcs, rc)
	}
	var all []store.Delivery
	for _, rc := range rcs {
		all = append(all, h.enqueue(h.webhook(rc).ID, 8)...)
	}
	h.d.Start()
	for _, d := range all {
		h.waitState(d.ID, store.StateSucceeded)
	}
	if m := maxGlobal.Load(); m > 3 {
		t.Errorf("%d attempts in flight at once, limit 3", m)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, rc := range rcs {
		if maxPer[rc] > 2 {
			t.Errorf("%d attempts in flight to one webhook, limit 2", maxPer[rc])
		}
	}
}

// orderTransport records the order in which requests enter the transport,
// after a random delay that would scramble them if attempts were not
// started in order.
type orderTransport struct {
	base http.RoundTripper
	mu   sync.Mutex
	rnd  *rand.Rand
	ids  []string
}

func (o *orderTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	o.mu.Lock()
	delay := time.Duration(o.rnd.IntN(3000)) * time.Microsecond
	o.mu.Unlock()
	time.Sleep(delay) // injected latency, not synchronisation
	o.mu.Lock()
	//lint:ignore SA1008 the dispatcher sends the spec's lower-case name as is
	o.ids = append(o.ids, r.Header["webhook-id"][0])
	o.mu.Unlock()
	return o.base.RoundTrip(r)
}

func TestFirstAttemptsStartInClaimOrder(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("http2=%v", h2), func(t *testing.T) {
			var ot *orderTransport
			h := newHarness(t, func(h *harness, c *Config) {
				base := NewClient(ClientOptions{Policy: Policy{AllowPrivate: true}, RootCAs: h.pool, HTTP1Only: !h2})
				ot = &orderTransport{base: base.Transport, rnd: rand.New(rand.NewPCG(1, 2))}
				c.Client = &http.Client{Transport: ot, CheckRedirect: base.CheckRedirect}
				c.PerWebhook = 4
			})
			var inflight, peak atomic.Int32
			rc := h.newReceiverH2(h2, func(i int, w http.ResponseWriter, r *http.Request) {
				n := inflight.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				select {
				case <-time.After(2 * time.Millisecond):
				case <-r.Context().Done():
				}
				inflight.Add(-1)
			})
			w := h.webhook(rc)
			ds := h.enqueue(w.ID, 20)
			h.d.Start()
			ds = append(ds, h.enqueue(w.ID, 20)...) // enqueued while busy
			for _, d := range ds {
				h.waitState(d.ID, store.StateSucceeded)
			}
			ot.mu.Lock()
			got := append([]string(nil), ot.ids...)
			ot.mu.Unlock()
			if len(got) != len(ds) {
				t.Fatalf("%d requests, want %d", len(got), len(ds))
			}
			for i, d := range ds {
				if got[i] != d.ID {
					t.Fatalf("request %d is %s, want %s (seq order)", i, got[i], d.ID)
				}
			}
			// The receiver, answering promptly, handled them in that order
			// too, although they used several connections.
			for i, r := range rc.requests() {
				if r.id != ds[i].ID {
					t.Fatalf("receiver handled request %d: %s, want %s", i, r.id, ds[i].ID)
				}
			}
			for _, r := range rc.requests() {
				if want := map[bool]int{false: 1, true: 2}[h2]; r.proto != want {
					t.Fatalf("receiver saw HTTP/%d, want HTTP/%d", r.proto, want)
				}
			}
			t.Logf("peak concurrent requests at the receiver: %d", peak.Load())
		})
	}
}

// TestReceiverSeesPairsInOrder is the Upload-then-Processed case: two
// events enqueued together, while idle connections to the receiver exist,
// must reach its handler in order.
func TestReceiverSeesPairsInOrder(t *testing.T) {
	h := newHarness(t, nil)
	rc := h.newReceiver(nil)
	w := h.webhook(rc)
	h.d.Start()
	for i := range 30 {
		evs := []store.Event{
			{ID: fmt.Sprintf("evt_up_%d", i), Trigger: "Upload", APIKey: w.APIKey, Payload: []byte(`{"event":"Upload"}`)},
			{ID: fmt.Sprintf("evt_pr_%d", i), Trigger: "Upload", APIKey: w.APIKey, Payload: []byte(`{"event":"Processed"}`)},
		}
		ds, err := h.st.Enqueue(evs, h.clock.Now())
		if err != nil || len(ds) != 2 {
			t.Fatalf("Enqueue: %v, %d deliveries", err, len(ds))
		}
		h.d.Notify()
		h.waitState(ds[0].ID, store.StateSucceeded)
		h.waitState(ds[1].ID, store.StateSucceeded)
		reqs := rc.requests()
		if a, b := reqs[len(reqs)-2].id, reqs[len(reqs)-1].id; a != ds[0].ID || b != ds[1].ID {
			t.Fatalf("pair %d reached the receiver as %s, %s; want %s, %s", i, a, b, ds[0].ID, ds[1].ID)
		}
	}
}

// TestSlowReceiverGetsConcurrency: a receiver that reads requests but is
// slow to answer still gets PerWebhook attempts at once after the grace.
func TestSlowReceiverGetsConcurrency(t *testing.T) {
	shortGrace(t, 10*time.Millisecond)
	h := newHarness(t, func(_ *harness, c *Config) { c.PerWebhook = 3 })
	release := make(chan struct{})
	rc := h.newReceiver(func(i int, w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) })
	w := h.webhook(rc)
	ds := h.enqueue(w.ID, 5)
	h.d.Start()
	waitFor(t, "three concurrent requests", func() bool { return rc.n.Load() == 3 })
	got := rc.requests()
	for i := range got {
		if got[i].id != ds[i].ID {
			t.Errorf("request %d is %s, want %s", i, got[i].id, ds[i].ID)
		}
	}
}

// TestConcurrentOrderingFillsPerWebhook: with OrderingConcurrent, a
// receiver that holds every request gets PerWebhook of them at once, at
// once, and never more; the orderGrace that would let strict ordering get
// there is set out of reach, so the test fails under OrderingStrict.
func TestConcurrentOrderingFillsPerWebhook(t *testing.T) {
	const perWebhook, events = 4, 7
	shortGrace(t, time.Hour)
	h := newHarness(t, func(_ *harness, c *Config) {
		c.Ordering = OrderingConcurrent
		c.PerWebhook = perWebhook
		c.Timeout = time.Minute
	})
	release := make(chan struct{}) // each send lets one request answer
	stop := make(chan struct{})
	var inside, peak atomic.Int32
	rc := h.newReceiver(func(i int, w http.ResponseWriter, r *http.Request) {
		n := inside.Add(1)
		defer inside.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		select {
		case <-release:
		case <-stop:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(stop) }) // before the server closes
	w := h.webhook(rc)
	ds := h.enqueue(w.ID, events)
	h.d.Start()

	waitFor(t, fmt.Sprintf("%d requests inside the receiver at once", perWebhook), func() bool { return inside.Load() == perWebhook })
	// The first PerWebhook claimed are the ones in flight, in some order.
	want := map[string]bool{}
	for _, d := range ds[:perWebhook] {
		want[d.ID] = true
	}
	for _, r := range rc.requests() {
		if !want[r.id] {
			t.Errorf("request %s in flight, want one of the first %d deliveries", r.id, perWebhook)
		}
	}
	answer := func() {
		t.Helper()
		select {
		case release <- struct{}{}:
		case <-time.After(10 * time.Second):
			t.Fatal("no request waiting for an answer")
		}
	}
	// Answering one lets the next in, up to the limit again.
	answer()
	waitFor(t, "the next request", func() bool { return rc.n.Load() == perWebhook+1 && inside.Load() == perWebhook })
	for range events - 1 {
		answer()
	}
	for _, d := range ds {
		h.waitState(d.ID, store.StateSucceeded)
	}
	if p := peak.Load(); p != perWebhook {
		t.Errorf("peak %d requests in flight to one webhook, want %d (per-webhook limit)", p, perWebhook)
	}
}

func TestStop(t *testing.T) {
	t.Run("closes idle connections", func(t *testing.T) {
		h := newHarness(t, nil)
		rc := h.newReceiver(nil)
		open := &rc.open
		w := h.webhook(rc)
		d := h.enqueue(w.ID, 1)[0]
		h.d.Start()
		h.waitState(d.ID, store.StateSucceeded)
		if n := open.Load(); n != 1 {
			t.Fatalf("%d connections open after a delivery, want 1 kept alive", n)
		}
		if err := h.d.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		// A stopped dispatcher (a config reloaded away) holds no
		// connection to receivers.
		waitFor(t, "the receiver to see its connection closed", func() bool { return open.Load() == 0 })
	})
	t.Run("before start", func(t *testing.T) {
		h := newHarness(t, nil)
		h.d.Notify()
		if err := h.d.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		h.d.Start() // no-op
		h.d.Notify()
		if err := h.d.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("waits for in-flight attempts", func(t *testing.T) {
		h := newHarness(t, nil)
		release := make(chan struct{})
		rc := h.newReceiver(func(i int, w http.ResponseWriter, r *http.Request) { <-release })
		w := h.webhook(rc)
		d := h.enqueue(w.ID, 1)[0]
		h.d.Start()
		waitFor(t, "request in flight", func() bool { return rc.n.Load() == 1 })
		stopped := make(chan error, 1)
		go func() { stopped <- h.d.Stop(context.Background()) }()
		select {
		case err := <-stopped:
			t.Fatalf("Stop returned %v with an attempt in flight", err)
		default:
		}
		close(release)
		if err := <-stopped; err != nil {
			t.Fatalf("Stop: %v", err)
		}
		if got, _ := h.st.GetDelivery(d.ID); got.State != store.StateSucceeded {
			t.Fatalf("delivery %+v: the attempt finished during Stop and must be recorded", got)
		}
	})
	t.Run("deadline puts the delivery back", func(t *testing.T) {
		h := newHarness(t, func(_ *harness, c *Config) { c.Timeout = time.Minute })
		release := make(chan struct{})
		rc := h.newReceiver(func(i int, w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		})
		t.Cleanup(func() { close(release) })
		w := h.webhook(rc)
		d := h.enqueue(w.ID, 1)[0]
		h.d.Start()
		waitFor(t, "request in flight", func() bool { return rc.n.Load() == 1 })

		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if err := h.d.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Stop = %v, want deadline exceeded", err)
		}
		// The cancelled attempt winds down without being recorded, its
		// delivery due at once for the next dispatcher.
		ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel2()
		if err := h.d.Stop(ctx2); err != nil {
			t.Fatalf("second Stop: %v", err)
		}
		got, _ := h.st.GetDelivery(d.ID)
		if got.State != store.StatePending || got.Attempts != 0 {
			t.Fatalf("delivery %+v, want pending without attempts", got)
		}
		if due := got.NextAttemptAt.Sub(h.clock.Now()); due > 0 {
			t.Fatalf("delivery due in %v, want at once", due)
		}
		if cl, err := h.st.ClaimDue(h.clock.Now(), time.Minute, 10, nil); err != nil || len(cl) != 1 {
			t.Fatalf("claimable after Stop: %d, %v", len(cl), err)
		}
		if res := h.res.of(d.ID); len(res) != 0 {
			t.Fatalf("results %+v", res)
		}
		h.d.Notify() // safe after Stop
	})
}

func TestLogging(t *testing.T) {
	h := newHarness(t, nil)
	rc := h.newReceiver(func(i int, w http.ResponseWriter, r *http.Request) {
		if i == 0 {
			w.WriteHeader(http.StatusBadGateway)
		}
	})
	w := h.webhook(rc)
	d := h.enqueue(w.ID, 1)[0]
	h.d.Start()
	h.waitState(d.ID, store.StateSucceeded)
	h.waitResults(d.ID, 2)
	ev, _ := h.st.GetEvent(d.EventID)

	var retry, success int
	for _, e := range h.logs.All() {
		m := e.ContextMap()
		dump := fmt.Sprint(e.Message, m)
		if strings.Contains(dump, strings.TrimPrefix(rc.secret, SecretPrefix)) || strings.Contains(dump, string(ev.Payload)) || strings.Contains(dump, "entryIds") {
			t.Errorf("log entry leaks the secret or payload: %s", dump)
		}
		if m["delivery_id"] != d.ID {
			continue
		}
		for _, f := range []string{"event_id", "webhook_id", "attempt", "status", "duration"} {
			if _, ok := m[f]; !ok {
				t.Errorf("log entry %q lacks %s", e.Message, f)
			}
		}
		switch m["outcome"] {
		case OutcomeRetry:
			retry++
			if e.Level != zapcore.InfoLevel || m["status"] != int64(502) {
				t.Errorf("retry entry %s %v", e.Level, m)
			}
		case OutcomeSucceeded:
			success++
			if e.Level != zapcore.DebugLevel {
				t.Errorf("success logged at %s", e.Level)
			}
		}
	}
	if retry != 1 || success != 1 {
		t.Errorf("%d retry and %d success log entries, want 1 and 1", retry, success)
	}
}

// failingOutbox is a store whose claims fail, as when its disk is gone.
type failingOutbox struct {
	*store.Store
	calls atomic.Int32
}

func (f *failingOutbox) ClaimDue(time.Time, time.Duration, int, func(string) bool) ([]store.Claimed, error) {
	f.calls.Add(1)
	return nil, errors.New("disk on fire")
}

// TestClaimErrorsLoggedSparingly: a store that keeps failing gets one
// error line, not one per retry.
func TestClaimErrorsLoggedSparingly(t *testing.T) {
	var out *failingOutbox
	h := newHarness(t, func(h *harness, c *Config) {
		out = &failingOutbox{Store: h.st}
		c.Outbox = out
	})
	h.d.Start()
	waitFor(t, "five failed claims", func() bool {
		h.d.Notify()
		return out.calls.Load() >= 5
	})
	lines := h.logs.FilterMessage("claiming due webhook deliveries").All()
	if len(lines) != 1 {
		t.Fatalf("%d error lines for %d failed claims, want 1", len(lines), out.calls.Load())
	}
	if got := lines[0].ContextMap()["error"]; got != "disk on fire" {
		t.Errorf("logged error %v", got)
	}
}

func TestRunnersAreReusedAndStop(t *testing.T) {
	h := newHarness(t, func(_ *harness, c *Config) { c.Workers = 2 })
	rc := h.newReceiver(nil)
	w := h.webhook(rc)
	h.d.Start()
	const n = 20
	for range n {
		d := h.enqueue(w.ID, 1)[0]
		h.waitState(d.ID, store.StateSucceeded)
	}
	// One goroutine per attempt would have started n. A runner that has
	// not yet gone back to wait when the next attempt starts is why this
	// allows more than Workers.
	if started := h.d.runnersStarted.Load(); started < 1 || started > n/2 {
		t.Fatalf("%d runners started for %d attempts one after another", started, n)
	}
	if err := h.d.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "runners to exit after Stop", func() bool { return h.d.runnersLive.Load() == 0 })
}

// countingOutbox is a store that counts the dispatcher's claims.
type countingOutbox struct {
	*store.Store
	claims atomic.Int32
}

func (c *countingOutbox) ClaimDue(now time.Time, lease time.Duration, limit int, accept func(string) bool) ([]store.Claimed, error) {
	c.claims.Add(1)
	return c.Store.ClaimDue(now, lease, limit, accept)
}

// TestLoopWakes: with the loop's poll an hour long, every delivery still
// goes out, so each was claimed after a wake-up; and an attempt that ends
// in success, leaving nothing for the loop to do, does not wake it.
func TestLoopWakes(t *testing.T) {
	tests := []struct {
		name    string
		workers int
		batch   int // enqueued at once, in rounds until n
		fail    int // first requests answered 500
	}{
		// Each wakes the loop once, by its enqueue: a claim per delivery.
		{name: "one at a time", workers: 4, batch: 1},
		// Only the ending attempts, which free the worker the rest wait
		// for, can wake the loop for the rest.
		{name: "held for capacity", workers: 1, batch: 10},
		// Only the failed attempt, whose delivery stays pending, can wake
		// the loop for its retry (5 ms later).
		{name: "retry", workers: 4, batch: 1, fail: 1},
	}
	const n = 10
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out *countingOutbox
			h := newHarness(t, func(h *harness, c *Config) {
				out = &countingOutbox{Store: h.st}
				c.Outbox = out
				c.Workers = tt.workers
				c.Ordering = OrderingConcurrent
			})
			h.d.poll = time.Hour
			rc := h.newReceiver(func(i int, w http.ResponseWriter, r *http.Request) {
				if i < tt.fail {
					w.WriteHeader(http.StatusInternalServerError)
				}
			})
			w := h.webhook(rc)
			h.d.Start()
			for sent := 0; sent < n; sent += tt.batch {
				for _, d := range h.enqueue(w.ID, tt.batch) {
					h.waitState(d.ID, store.StateSucceeded)
				}
			}
			if tt.batch == 1 && tt.fail == 0 {
				// One more when the loop starts, and a few when an
				// enqueue's claim meets the previous attempt still ending
				// (its lease held): that attempt then wakes the loop. An
				// ending attempt that always woke the loop made over 2n.
				if got := out.claims.Load(); got > n+n/2 {
					t.Errorf("%d claims for %d deliveries made one after another, want at most %d", got, n, n+n/2)
				}
			}
		})
	}
}

// TestLoopKeepsUpWithoutPolling: with the loop's poll an hour long,
// deliveries enqueued from several goroutines while others finish all go
// out, whatever the interleaving of enqueues, claims and endings.
func TestLoopKeepsUpWithoutPolling(t *testing.T) {
	for _, tt := range []struct {
		name                string
		workers, perWebhook int
		ordering            Ordering
	}{
		{"concurrent", 8, 4, OrderingConcurrent},
		{"strict", 8, 4, OrderingStrict},
		{"one worker", 1, 4, OrderingConcurrent},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(_ *harness, c *Config) {
				c.Workers, c.PerWebhook, c.Ordering = tt.workers, tt.perWebhook, tt.ordering
			})
			h.d.poll = time.Hour
			rc := h.newReceiver(nil)
			hooks := []store.Webhook{h.webhook(rc), h.webhook(rc)}
			h.d.Start()
			const producers, each = 4, 50
			var wg sync.WaitGroup
			ids := make(chan string, producers*each*3)
			for p := range producers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						for _, d := range h.enqueue(hooks[(p+i)%2].ID, 1+i%3) {
							ids <- d.ID
						}
						if i%7 == 0 {
							runtime.Gosched()
						}
					}
				}()
			}
			wg.Wait()
			close(ids)
			for id := range ids {
				h.waitState(id, store.StateSucceeded)
			}
		})
	}
}

// racingOutbox plays, once, the race a claim can lose against an attempt
// that ends meanwhile: the claim's snapshot still has the attempt's
// delivery queued, its lease is gone, so the claim cannot take it and
// passes over the webhook's later deliveries (store.ClaimDue does so, and
// the dispatcher's accept is never asked), and the attempt ends before the
// claim returns, or while the loop then asks NextDue. The store's own race
// cannot be paused from this package; this plays it at the Outbox
// interface.
type racingOutbox struct {
	*store.Store
	passOver  atomic.Pointer[string] // the webhook the next claim passes over
	during    func()                 // runs before that claim returns
	inNextDue bool                   // or in the NextDue after it
	armed     atomic.Bool            // NextDue is to run during
	nextDue   atomic.Int32           // NextDue calls
}

func (r *racingOutbox) ClaimDue(now time.Time, lease time.Duration, limit int, accept func(string) bool) ([]store.Claimed, error) {
	id := r.passOver.Swap(nil)
	if id == nil {
		return r.Store.ClaimDue(now, lease, limit, accept)
	}
	cl, err := r.Store.ClaimDue(now, lease, limit, func(w string) bool {
		return w != *id && (accept == nil || accept(w))
	})
	if r.inNextDue {
		r.armed.Store(true)
	} else {
		r.during()
	}
	return cl, err
}

func (r *racingOutbox) NextDue() (time.Time, bool, error) {
	r.nextDue.Add(1)
	next, ok, err := r.Store.NextDue()
	if r.armed.Swap(false) {
		r.during()
	}
	return next, ok, err
}

// TestLoopLooksAgainAfterAnEndDuringItsClaim: an attempt that ends while
// the loop claims, after the claim passed over the webhook's next delivery
// (see racingOutbox), makes the loop look again, though the attempt ended
// without waking it (the loop was not held). With the loop's poll an hour
// long, the next delivery would otherwise wait that long.
func TestLoopLooksAgainAfterAnEndDuringItsClaim(t *testing.T) {
	for _, tt := range []struct {
		name      string
		other     bool // the claim takes another webhook's delivery
		inNextDue bool // the attempt ends in the NextDue after the claim
	}{
		{name: "during the claim, nothing else claimed"},
		{name: "during the claim, another webhook's delivery claimed", other: true},
		// Nothing claimed: the loop asks NextDue, which says due now.
		{name: "during the NextDue after the claim", inNextDue: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := &racingOutbox{inNextDue: tt.inNextDue}
			h := newHarness(t, func(h *harness, c *Config) {
				out.Store = h.st
				c.Outbox = out
				c.Workers, c.PerWebhook, c.Ordering = 4, 4, OrderingConcurrent
			})
			h.d.poll = time.Hour
			started, gate := make(chan struct{}), make(chan struct{})
			rc := h.newReceiver(func(i int, w http.ResponseWriter, r *http.Request) {
				if i == 0 {
					close(started)
					<-gate
				}
			})
			w := h.webhook(rc)
			other := h.webhook(h.newReceiver(nil))
			h.d.Start()
			// The loop's first round, with nothing queued, ends with a
			// NextDue: after it, the loop is idle until woken, so the
			// enqueue below makes one round, which claims first and
			// leaves the loop idle and not held.
			waitFor(t, "the loop's first round", func() bool { return out.nextDue.Load() > 0 })
			first := h.enqueue(w.ID, 1)[0]
			<-started

			endings := func() uint64 {
				h.d.mu.Lock()
				defer h.d.mu.Unlock()
				return h.d.endings
			}
			// In the loop's goroutine: no t.Fatal.
			out.during = func() {
				before := endings()
				close(gate)
				// Both of the first attempt's ends: its request's (it
				// frees a worker) and its recording's.
				for deadline := time.Now().Add(10 * time.Second); endings() < before+2; time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) {
						t.Error("the first attempt did not end")
						return
					}
				}
			}
			ids := []string{first.ID}
			for _, wh := range []string{w.ID, other.ID}[:1+btoi(tt.other)] {
				d, err := h.st.EnqueueDelivery(store.Event{ID: "evt_" + wh, Trigger: "Upload", APIKey: "quiet-river-1234", Payload: []byte(`{}`), CreatedAt: h.clock.Now()}, wh, h.clock.Now())
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, d.ID)
			}
			out.passOver.Store(&w.ID)
			h.d.Notify()
			for _, id := range ids {
				h.waitState(id, store.StateSucceeded)
			}
			if out.passOver.Load() != nil || out.armed.Load() {
				t.Fatal("no claim passed over the webhook, or no NextDue followed")
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
