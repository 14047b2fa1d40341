package caddymodule_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/events"
)

func init() {
	caddy.RegisterModule(eventRecorder{})
}

// recorded holds the Caddy events the eventRecorder saw.
var recorded = struct {
	mu   sync.Mutex
	list []caddy.Event
}{}

// eventRecorder is a Caddy event handler module (events.handlers) that
// records the plugin's events, as another module subscribing to them would
// see them.
type eventRecorder struct{}

// CaddyModule returns the Caddy module information.
func (eventRecorder) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "events.handlers.echo3d_test_recorder",
		New: func() caddy.Module { return new(eventRecorder) },
	}
}

// Handle records e.
func (eventRecorder) Handle(_ context.Context, e caddy.Event) error {
	if strings.HasPrefix(e.Name(), "echo3d_") {
		recorded.mu.Lock()
		recorded.list = append(recorded.list, e)
		recorded.mu.Unlock()
	}
	return nil
}

// UnmarshalCaddyfile takes no options.
func (*eventRecorder) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	return nil
}

var (
	_ caddyevents.Handler   = eventRecorder{}
	_ caddyfile.Unmarshaler = (*eventRecorder)(nil)
)

// recordedEvents returns the recorded events named name about webhookID.
func recordedEvents(name, webhookID string) []caddy.Event {
	recorded.mu.Lock()
	defer recorded.mu.Unlock()
	var out []caddy.Event
	for _, e := range recorded.list {
		if e.Name() == name && e.Data["webhook_id"] == webhookID {
			out = append(out, e)
		}
	}
	return out
}

// waitUntil polls cond every 10ms until it holds or within passes.
func waitUntil(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// scrape reads the admin endpoint's /metrics and returns every
// caddy_echo3d_webhooks_ sample, keyed by name and labels as printed.
func scrape(t *testing.T) map[string]float64 {
	t.Helper()
	resp, err := http.Get(adminURL + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "caddy_echo3d_webhooks_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// configWith returns a Caddyfile with extra global options, the app's
// options and the plugin in front of upstream.
func configWith(extraGlobal, appOpts, upstream string) string {
	return fmt.Sprintf(`{
	%s
	%s
	echo3d_webhooks {
%s
	}
}
%s {
	echo3d_webhooks
	reverse_proxy %s
}
`, globalHead(), extraGlobal, appOpts, proxyURL, upstream)
}

// TestBreakerDisableEventsAndMetrics follows a webhook whose receiver
// fails through a real Caddy: failed attempts are logged in the delivery
// log, the breaker pauses it, it is disabled after disable_after, each step
// reaches a Caddy event subscriber and the metrics; its events are kept and
// delivered once it is enabled again; the metrics survive a reload.
func TestBreakerDisableEventsAndMetrics(t *testing.T) {
	rc := newReceiver(t)
	rc.mu.Lock()
	rc.status = http.StatusServiceUnavailable
	rc.mu.Unlock()
	upstream := okUpstream()
	defer upstream.Close()
	subscribe := ""
	for _, name := range []string{"delivered", "failed", "paused", "resumed", "disabled"} {
		subscribe += "\n\t\ton echo3d_webhook_" + name + " echo3d_test_recorder"
	}
	dir := filepath.Join(t.TempDir(), "store")
	opts := func(timeout string) string {
		return fmt.Sprintf(`
		storage %s
		retry %s
		timeout %s
		allow_private_targets
		trusted_ca_file %s
		breaker {
			min_attempts 3
			window 1m
			pause 150ms
			max_pause 300ms
		}
		disable_after 1500ms`, dir, strings.TrimSpace(strings.Repeat("30ms ", 60)), timeout, writeCA(t, rc))
	}
	cfg := func(timeout string) string {
		return configWith("events {"+subscribe+"\n\t}", opts(timeout), upstream.Listener.Addr().String())
	}
	tester := newTester(t)
	load(t, tester, cfg("5s"))
	before := scrape(t)

	const n = 5
	hook := createWebhook(t, "failing", rc.url("/failing"), "breaker-key", "CollectionMetadataAdd")
	for i := range n {
		postMetadata(t, "breaker-key", "k", fmt.Sprint("v", i))
	}

	waitUntil(t, "echo3d_webhook_disabled", 15*time.Second, func() bool {
		return len(recordedEvents("echo3d_webhook_disabled", hook.ID)) > 0
	})
	failed := recordedEvents("echo3d_webhook_failed", hook.ID)
	paused := recordedEvents("echo3d_webhook_paused", hook.ID)
	disabled := recordedEvents("echo3d_webhook_disabled", hook.ID)
	if len(failed) < 3 || len(paused) < 1 || len(disabled) != 1 {
		t.Fatalf("events: %d failed, %d paused, %d disabled", len(failed), len(paused), len(disabled))
	}
	f := failed[0].Data
	if f["status"] != 503 || f["outcome"] != "retry" || f["event_id"] == "" || f["delivery_id"] == "" || f["error"] != "HTTP 503" {
		t.Errorf("failed event data %v", f)
	}
	if d := disabled[0].Data; d["cause"] != "failing" || !strings.Contains(fmt.Sprint(d["reason"]), "no successful attempt") {
		t.Errorf("disabled event data %v", d)
	}
	if p := paused[0].Data; p["until"] == nil || p["attempts"] == nil {
		t.Errorf("paused event data %v", p)
	}
	if origin := disabled[0].Origin(); origin == nil || origin.CaddyModule().ID != "echo3d_webhooks" {
		t.Errorf("event origin %v, want the echo3d_webhooks app", origin)
	}

	var got webhook
	status, body := adminCall(t, http.MethodGet, "/echo3d/webhooks/"+hook.ID, nil)
	if err := json.Unmarshal(body, &got); status != http.StatusOK || err != nil || got.Enabled || !strings.Contains(got.DisabledReason, "no successful attempt") {
		t.Fatalf("webhook after auto-disable: %d %s", status, body)
	}
	// Its health says why, in the view and in the list.
	if h := got.Health; h.DisabledAt.IsZero() || h.FailingSince.IsZero() || h.LastFailureAt.IsZero() || h.FailingSince.After(h.DisabledAt) {
		t.Errorf("health after auto-disable: %s", body)
	}
	var listed []webhook
	status, body = adminCall(t, http.MethodGet, "/echo3d/webhooks?apiKey=breaker-key", nil)
	if err := json.Unmarshal(body, &listed); status != http.StatusOK || err != nil || len(listed) != 1 || listed[0].Health != got.Health {
		t.Errorf("listed health differs from the webhook's %+v: %d %s", got.Health, status, body)
	}
	// Every attempt is in the delivery log, with status and duration.
	var log struct {
		Attempts []struct {
			Status     int    `json:"status"`
			DurationNs int64  `json:"durationNs"`
			EventID    string `json:"eventId"`
			Error      string `json:"error"`
		} `json:"attempts"`
	}
	status, body = adminCall(t, http.MethodGet, "/echo3d/webhooks/"+hook.ID+"/deliveries?limit=500", nil)
	if err := json.Unmarshal(body, &log); status != http.StatusOK || err != nil || len(log.Attempts) < 3 {
		t.Fatalf("delivery log: %d %s", status, body)
	}
	for _, a := range log.Attempts {
		if a.Status != 503 || a.DurationNs <= 0 || a.EventID == "" {
			t.Errorf("attempt %+v", a)
		}
	}

	m := scrape(t)
	delta := func(key string) float64 { return m[key] - before[key] }
	for key, want := range map[string]float64{
		`caddy_echo3d_webhooks_outbox_depth`:                               n,
		`caddy_echo3d_webhooks_breaker_state{state="disabled"}`:            1,
		`caddy_echo3d_webhooks_breaker_state{state="closed"}`:              0,
		`caddy_echo3d_webhooks_events_skipped_total{reason="store_error"}`: before[`caddy_echo3d_webhooks_events_skipped_total{reason="store_error"}`],
	} {
		if got, ok := m[key]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", key, got, ok, want)
		}
	}
	for key, want := range map[string]float64{
		`caddy_echo3d_webhooks_webhooks_disabled_total{cause="failing"}`:              1,
		`caddy_echo3d_webhooks_events_derived_total{trigger="CollectionMetadataAdd"}`: n,
	} {
		if got := delta(key); got != want {
			t.Errorf("%s grew by %v, want %v", key, got, want)
		}
	}
	if delta(`caddy_echo3d_webhooks_webhooks_paused_total`) < 1 || delta(`caddy_echo3d_webhooks_deliveries_total{result="retry"}`) < 3 ||
		delta(`caddy_echo3d_webhooks_attempt_duration_seconds_count{result="retry"}`) < 3 {
		t.Errorf("paused, retry or duration metrics did not grow: %v", m)
	}
	if age := m[`caddy_echo3d_webhooks_oldest_undelivered_seconds`]; age <= 0 || age > 60 {
		t.Errorf("oldest_undelivered_seconds = %v", age)
	}

	// Enabled again with the receiver back: the kept events are delivered.
	rc.mu.Lock()
	rc.status = http.StatusOK
	rc.got = nil
	rc.mu.Unlock()
	status, body = adminCall(t, http.MethodPut, "/echo3d/webhooks/"+hook.ID, map[string]any{
		"name": "failing", "url": rc.url("/failing"), "triggers": []string{"CollectionMetadataAdd"}, "enabled": true,
	})
	if status != http.StatusOK {
		t.Fatalf("enable: %d %s", status, body)
	}
	var enabled webhook
	if err := json.Unmarshal(body, &enabled); err != nil || !enabled.Health.DisabledAt.IsZero() {
		t.Errorf("health once enabled again: %s", body)
	}
	seen := map[string]bool{}
	for _, d := range rc.waitFor(t, n, waitWithin) {
		var p events.Payload
		if err := json.Unmarshal(d.Body, &p); err != nil {
			t.Fatal(err)
		}
		seen[p.MetadataValues[0]] = true
		verify(t, hook.Secret, d)
	}
	if len(seen) != n {
		t.Errorf("after enabling, %d distinct events delivered, want %d", len(seen), n)
	}
	waitUntil(t, "delivered events", 5*time.Second, func() bool {
		return len(recordedEvents("echo3d_webhook_delivered", hook.ID)) >= n
	})
	if d := recordedEvents("echo3d_webhook_delivered", hook.ID)[0].Data; d["status"] != 200 || d["attempt"] == nil {
		t.Errorf("delivered event data %v", d)
	}
	waitUntil(t, "an empty outbox", 5*time.Second, func() bool { return scrape(t)[`caddy_echo3d_webhooks_outbox_depth`] == 0 })
	waitUntil(t, "a healthy webhook", 5*time.Second, func() bool {
		var w webhook
		_, body := adminCall(t, http.MethodGet, "/echo3d/webhooks/"+hook.ID, nil)
		return json.Unmarshal(body, &w) == nil && w.Health.Breaker == "closed" && w.Health.FailingSince.IsZero() && w.Health.HoldUntil.IsZero()
	})

	// Reload: the metrics are registered again, counters kept.
	afterRun := scrape(t)
	tester.InitServer(cfg("6s"), "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	reloaded := scrape(t)
	for _, key := range []string{
		`caddy_echo3d_webhooks_deliveries_total{result="succeeded"}`,
		`caddy_echo3d_webhooks_events_derived_total{trigger="CollectionMetadataAdd"}`,
		`caddy_echo3d_webhooks_webhooks_disabled_total{cause="failing"}`,
	} {
		if reloaded[key] < afterRun[key] || reloaded[key] == 0 {
			t.Errorf("after reload %s = %v, before %v", key, reloaded[key], afterRun[key])
		}
	}
	if v, ok := reloaded[`caddy_echo3d_webhooks_breaker_state{state="closed"}`]; !ok || v != 1 {
		t.Errorf("after reload breaker_state closed = %v (present %v), want 1", v, ok)
	}
}

// timedReceiver records when each event (by metadata value) arrived.
type timedReceiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	at  map[string][]time.Time
}

func newTimedReceiver(t *testing.T, hang <-chan struct{}) *timedReceiver {
	rc := &timedReceiver{at: map[string][]time.Time{}}
	rc.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		now := time.Now()
		var p events.Payload
		if json.Unmarshal(body, &p) == nil && len(p.MetadataValues) == 1 {
			rc.mu.Lock()
			rc.at[p.MetadataValues[0]] = append(rc.at[p.MetadataValues[0]], now)
			rc.mu.Unlock()
		}
		if hang != nil {
			select {
			case <-hang:
			case <-r.Context().Done():
			}
		}
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

// arrival returns when value first arrived.
func (rc *timedReceiver) arrival(value string) (time.Time, bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	at := rc.at[value]
	if len(at) == 0 {
		return time.Time{}, false
	}
	return at[0], true
}

// counts returns how many distinct values arrived and how many requests.
func (rc *timedReceiver) counts() (distinct, total int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, at := range rc.at {
		total += len(at)
	}
	return len(rc.at), total
}

// TestOrderingConcurrent: with `ordering concurrent`, a receiver that holds
// every request gets per_webhook of them at once, together. Under the
// default strict ordering each attempt would wait orderGrace (1s) after the
// previous request was written, so four held requests would arrive over at
// least 3s.
func TestOrderingConcurrent(t *testing.T) {
	const perWebhook = 4
	hold := make(chan struct{})
	rc := newTimedReceiver(t, hold)
	upstream := okUpstream()
	defer upstream.Close()
	tester := newTester(t)
	load(t, tester, configWith("", fmt.Sprintf(`
		storage memory
		timeout 30s
		per_webhook %d
		ordering concurrent
		allow_private_targets
		trusted_ca_file %s`, perWebhook, writeCA(t, &receiver{srv: rc.srv})), upstream.Listener.Addr().String()))
	t.Cleanup(func() { close(hold) }) // before the config is unloaded
	createWebhook(t, "held", rc.srv.URL+"/hold", "held-key", "CollectionMetadataAdd")
	for i := range perWebhook + 2 {
		resp, err := http.Post(fmt.Sprintf("%s/post?key=held-key&data=n&value=v%d", proxyURL, i), "", nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	waitUntil(t, fmt.Sprintf("%d held requests", perWebhook), 10*time.Second, func() bool {
		_, total := rc.counts()
		return total >= perWebhook
	})
	var first, last time.Time
	for i := range perWebhook + 2 {
		at, ok := rc.arrival(fmt.Sprint("v", i))
		if !ok {
			continue
		}
		if first.IsZero() || at.Before(first) {
			first = at
		}
		if at.After(last) {
			last = at
		}
	}
	if spread := last.Sub(first); spread >= 2*time.Second {
		t.Errorf("the %d held requests arrived over %v, want them together (strict ordering spaces them 1s apart)", perWebhook, spread)
	}
	if _, total := rc.counts(); total != perWebhook {
		t.Errorf("the receiver holds %d requests, want per_webhook (%d)", total, perWebhook)
	}
}

// percentile returns the p-th percentile (0..100) of ds.
func percentile(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

// TestSlowReceiverNextToHealthy measures, through a real Caddy, the latency
// of proxied calls and of their delivery to a healthy receiver, first alone,
// then next to a receiver that hangs every request while events keep
// coming for it. The healthy receiver's latencies must stay about the same.
func TestSlowReceiverNextToHealthy(t *testing.T) {
	hang := make(chan struct{})
	slow := newTimedReceiver(t, hang)
	healthy := newTimedReceiver(t, nil)
	upstream := okUpstream()
	defer upstream.Close()
	tester := newTester(t)
	load(t, tester, configWith("", fmt.Sprintf(`
		storage memory
		retry 100ms 200ms 400ms
		timeout 10s
		workers 8
		per_webhook 4
		allow_private_targets
		trusted_ca_file %s`, writeCA(t, &receiver{srv: healthy.srv})), upstream.Listener.Addr().String()))
	// Before the config is unloaded (which waits for attempts in flight)
	// and the servers close.
	t.Cleanup(func() { close(hang) })
	createWebhook(t, "healthy", healthy.srv.URL+"/ok", "healthy-key", "CollectionMetadataAdd")

	client := &http.Client{Timeout: 10 * time.Second}
	send := func(key, value string) (time.Duration, error) {
		start := time.Now()
		resp, err := client.Post(fmt.Sprintf("%s/post?key=%s&data=n&value=%s", proxyURL, key, value), "", nil)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("status %d", resp.StatusCode)
		}
		return time.Since(start), nil
	}
	// measure sends rounds events for the healthy webhook one after the
	// other and returns the proxy and delivery latencies.
	measure := func(phase string, rounds int) (proxy, delivery []time.Duration) {
		for i := range rounds {
			value := fmt.Sprintf("%s-%d", phase, i)
			start := time.Now()
			d, err := send("healthy-key", value)
			if err != nil {
				t.Fatalf("%s: proxied call: %v", value, err)
			}
			proxy = append(proxy, d)
			var at time.Time
			waitUntil(t, "delivery of "+value, 10*time.Second, func() bool {
				var ok bool
				at, ok = healthy.arrival(value)
				return ok
			})
			delivery = append(delivery, at.Sub(start))
		}
		return proxy, delivery
	}

	// background sends events for key every 10ms until stop is called;
	// sent counts them.
	background := func(key string) (sent *atomic.Int64, stop func()) {
		done := make(chan struct{})
		sent = new(atomic.Int64)
		var wg sync.WaitGroup
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				case <-time.After(10 * time.Millisecond):
				}
				if _, err := send(key, fmt.Sprint("more-", i)); err == nil {
					sent.Add(1)
				}
			}
		})
		return sent, func() {
			close(done)
			wg.Wait()
		}
	}

	const rounds = 40
	measure("warmup", 5)
	aloneProxy, aloneDelivery := measure("alone", rounds)

	// Control: the same background traffic, for a healthy neighbour. On a
	// loaded machine (and under -race) that traffic alone costs CPU.
	neighbour := newTimedReceiver(t, nil)
	createWebhook(t, "neighbour", neighbour.srv.URL+"/ok", "busy-key", "CollectionMetadataAdd")
	sent, stop := background("busy-key")
	waitUntil(t, "background traffic", 10*time.Second, func() bool { return sent.Load() >= 10 })
	before := sent.Load()
	busyProxy, busyDelivery := measure("busy", rounds)
	busySent := sent.Load() - before
	stop()

	// The hanging receiver: a backlog, and events keep coming for it.
	createWebhook(t, "hanging", slow.srv.URL+"/hang", "slow-key", "CollectionMetadataAdd")
	for i := range 50 {
		if _, err := send("slow-key", fmt.Sprint("backlog-", i)); err != nil {
			t.Fatal(err)
		}
	}
	sent, stop = background("slow-key")
	// Attempts to one webhook start one after the other, the next one
	// orderGrace (1s) after the previous request was written when no
	// response comes: per_webhook requests are held after about 3s.
	waitUntil(t, "the hanging receiver to hold its requests", 10*time.Second, func() bool {
		_, total := slow.counts()
		return total >= 4
	})
	before = sent.Load()
	nextProxy, nextDelivery := measure("next", rounds)
	slowSent := sent.Load() - before
	stop()
	_, hung := slow.counts()

	stats := func(ds []time.Duration) string {
		return fmt.Sprintf("p50 %v p95 %v max %v", percentile(ds, 50).Round(10*time.Microsecond),
			percentile(ds, 95).Round(10*time.Microsecond), slices.Max(ds).Round(10*time.Microsecond))
	}
	t.Logf("healthy receiver, %d events per phase: alone: delivery %s; proxied call %s", rounds, stats(aloneDelivery), stats(aloneProxy))
	t.Logf("next to a healthy neighbour (%d events for it during the phase): delivery %s; proxied call %s",
		busySent, stats(busyDelivery), stats(busyProxy))
	t.Logf("next to a hanging receiver (%d requests held, a backlog of 50 and %d more events for it during the phase): delivery %s; proxied call %s",
		hung, slowSent, stats(nextDelivery), stats(nextProxy))

	// Generous bounds, with absolute floors, for a busy 2-core machine:
	// against the same traffic to a healthy neighbour, the hang itself
	// must cost little; against no traffic at all, a generous factor.
	for _, c := range []struct {
		what              string
		alone, busy, next []time.Duration
	}{
		{"delivery", aloneDelivery, busyDelivery, nextDelivery},
		{"proxied call", aloneProxy, busyProxy, nextProxy},
	} {
		if a, b := percentile(c.busy, 50), percentile(c.next, 50); b > 2*a+10*time.Millisecond {
			t.Errorf("%s p50 %v next to a hanging receiver, %v next to a healthy one", c.what, b, a)
		}
		if a, b := percentile(c.alone, 50), percentile(c.next, 50); b > 5*a+25*time.Millisecond {
			t.Errorf("%s p50 %v next to a hanging receiver, %v alone", c.what, b, a)
		}
		if a, b := percentile(c.busy, 95), percentile(c.next, 95); b > 4*a+150*time.Millisecond {
			t.Errorf("%s p95 %v next to a hanging receiver, %v next to a healthy one", c.what, b, a)
		}
	}
	if hung > 4 {
		t.Errorf("the hanging receiver holds %d requests, want at most per_webhook (4)", hung)
	}
}
