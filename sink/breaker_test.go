package sink

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/store"
)

// changeLog collects what the dispatcher reports through OnHealth.
type changeLog struct {
	mu   sync.Mutex
	list []HealthChange
	ch   chan HealthChange
}

func newChangeLog() *changeLog { return &changeLog{ch: make(chan HealthChange, 100)} }

func (c *changeLog) add(hc HealthChange) {
	c.mu.Lock()
	c.list = append(c.list, hc)
	c.mu.Unlock()
	select {
	case c.ch <- hc:
	default:
	}
}

func (c *changeLog) all() []HealthChange {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]HealthChange(nil), c.list...)
}

// wait returns the next reported change of the given kind.
func (c *changeLog) wait(t *testing.T, change string) HealthChange {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case hc := <-c.ch:
			if hc.Change == change {
				return hc
			}
		case <-deadline:
			t.Fatalf("no %s change within 10s (got %+v)", change, c.all())
		}
	}
}

// TestObserve drives the breaker and the failure streak through their
// states with a fake clock.
func TestObserve(t *testing.T) {
	changes := newChangeLog()
	h := newHarness(t, func(_ *harness, c *Config) {
		c.Breaker = BreakerConfig{FailureRatio: 0.6, MinAttempts: 4, Window: time.Minute, Pause: 10 * time.Second, MaxPause: 40 * time.Second}
		c.DisableAfter = time.Hour
		c.OnHealth = changes.add
	})
	rc := h.newReceiver(nil)
	w := h.webhook(rc)
	now := h.clock.Now()
	fail := func(probe bool) {
		h.d.observe(observation{webhookID: w.ID, failed: true, probe: probe, err: "HTTP 503"}, now)
	}
	ok := func() { h.d.observe(observation{webhookID: w.ID}, now) }
	health := func() store.Health { return h.st.Health(w.ID) }

	// A failure starts the streak, a success ends it.
	fail(false)
	if hl := health(); !hl.FailingSince.Equal(now) || hl.Breaker != store.BreakerClosed {
		t.Fatalf("after a failure: %+v", hl)
	}
	ok()
	if hl := health(); !hl.IsZero() {
		t.Fatalf("after a success: %+v, want zero", hl)
	}
	ok()
	fail(false) // 2 of 4 failed: under 60 %
	if len(changes.all()) != 0 {
		t.Fatalf("changes %+v before the breaker opens", changes.all())
	}
	// 3 of 5 failed, at least 4 attempts: opens.
	fail(false)
	hl := health()
	if hl.Breaker != store.BreakerOpen || !hl.HoldUntil.Equal(now.Add(10*time.Second)) || hl.Pause != 10*time.Second {
		t.Fatalf("after the third failure in five: %+v, want open for 10s", hl)
	}
	if c := changes.all(); len(c) != 1 || c[0].Change != ChangePaused || c[0].Attempts != 5 || c[0].FailureRatio != 0.6 {
		t.Fatalf("changes %+v, want paused at 3/5", c)
	}

	// A straggler (not a probe) failing does not extend the pause; failed
	// probes double it up to MaxPause.
	fail(false)
	if got := health(); got.Pause != 10*time.Second {
		t.Errorf("straggler changed the pause: %+v", got)
	}
	for _, want := range []time.Duration{20 * time.Second, 40 * time.Second, 40 * time.Second} {
		now = now.Add(hl.Pause)
		fail(true)
		hl = health()
		if hl.Pause != want || !hl.HoldUntil.Equal(now.Add(want)) || hl.Breaker != store.BreakerOpen {
			t.Fatalf("after a failed probe: %+v, want pause %v", hl, want)
		}
	}
	// A successful probe closes it.
	now = now.Add(hl.Pause)
	ok()
	if hl := health(); !hl.IsZero() {
		t.Errorf("after a successful probe: %+v, want zero", hl)
	}
	if c := changes.all(); c[len(c)-1].Change != ChangeResumed {
		t.Errorf("last change %+v, want resumed", c[len(c)-1])
	}

	// A gap without attempts longer than DisableAfter starts the streak
	// afresh.
	fail(false)
	now = now.Add(2 * time.Hour)
	fail(false)
	if hl := health(); !hl.FailingSince.Equal(now) {
		t.Errorf("FailingSince %v after a 2h gap, want %v", hl.FailingSince, now)
	}
	// Failing, with attempts, for DisableAfter: disabled once.
	streak := now
	for range 3 {
		now = now.Add(25 * time.Minute)
		fail(false)
	}
	if hl := health(); hl.DisabledAt.IsZero() || !hl.FailingSince.Equal(streak) {
		t.Fatalf("after 75 minutes of failure: %+v, want disabled", hl)
	}
	got, _ := h.st.GetWebhook(w.ID)
	if got.Enabled || !strings.Contains(got.DisabledReason, "no successful attempt since") || !strings.Contains(got.DisabledReason, "HTTP 503") {
		t.Errorf("webhook %+v, want disabled with a reason", got)
	}
	fail(false)
	var disabled int
	for _, c := range changes.all() {
		if c.Change == ChangeDisabled {
			disabled++
			if c.Cause != CauseFailing || !c.FailingSince.Equal(streak) {
				t.Errorf("disabled change %+v", c)
			}
		}
	}
	if disabled != 1 {
		t.Errorf("%d disabled changes, want 1", disabled)
	}

	// Enabling forgets everything.
	got.Enabled = true
	if err := h.st.UpdateWebhook(got); err != nil {
		t.Fatal(err)
	}
	if hl := health(); !hl.IsZero() {
		t.Errorf("after enabling: %+v", hl)
	}
}

// TestBreakerPausesAndProbes: a receiver answering 503 to everything trips
// the breaker; the backlog then waits in the outbox, using none of its
// retries, while one probe at a time tests the receiver; once it is back,
// everything is delivered. Probes go one at a time whatever the ordering,
// though with OrderingConcurrent nothing else keeps attempts apart.
func TestBreakerPausesAndProbes(t *testing.T) {
	for _, o := range []Ordering{OrderingStrict, OrderingConcurrent} {
		t.Run(string(o), func(t *testing.T) { testBreakerPausesAndProbes(t, o) })
	}
}

func testBreakerPausesAndProbes(t *testing.T, ordering Ordering) {
	const events, pause = 30, 150 * time.Millisecond
	changes := newChangeLog()
	h := newHarness(t, func(_ *harness, c *Config) {
		c.Ordering = ordering
		c.PerWebhook = 4
		c.Schedule = make(Schedule, 50)
		for i := range c.Schedule {
			c.Schedule[i] = 10 * time.Millisecond
		}
		c.Breaker = BreakerConfig{MinAttempts: 4, Window: time.Minute, Pause: pause, MaxPause: 2 * pause}
		c.DisableAfter = -1
		c.OnHealth = changes.add
	})
	var down atomic.Bool
	down.Store(true)
	var inflight, maxAfter atomic.Int32
	var paused atomic.Int64 // UnixNano of the pause; 0 before
	var mu sync.Mutex
	var starts []time.Time // of requests starting well after the pause
	rc := h.newReceiver(func(i int, w http.ResponseWriter, r *http.Request) {
		n := inflight.Add(1)
		defer inflight.Add(-1)
		if p := paused.Load(); p != 0 && time.Since(time.Unix(0, p)) > 50*time.Millisecond && down.Load() {
			mu.Lock()
			starts = append(starts, time.Now())
			mu.Unlock()
			for {
				m := maxAfter.Load()
				if n <= m || maxAfter.CompareAndSwap(m, n) {
					break
				}
			}
		}
		if down.Load() {
			time.Sleep(5 * time.Millisecond) // lets overlapping probes show
			http.Error(w, "down", http.StatusServiceUnavailable)
		}
	})
	w := h.webhook(rc)
	ds := h.enqueue(w.ID, events)
	h.d.Start()

	pc := changes.wait(t, ChangePaused)
	paused.Store(time.Now().UnixNano())
	before := rc.n.Load()
	// Let the receiver be probed a few times.
	waitFor(t, "three probes", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(starts) >= 3
	})
	down.Store(false)
	for _, d := range ds {
		h.waitState(d.ID, store.StateSucceeded)
	}
	changes.wait(t, ChangeResumed)

	mu.Lock()
	probes := append([]time.Time(nil), starts...)
	mu.Unlock()
	for i := 1; i < len(probes); i++ {
		if gap := probes[i].Sub(probes[i-1]); gap < pause*8/10 {
			t.Errorf("probes %d and %d only %v apart, want at least the pause (%v)", i-1, i, gap, pause)
		}
	}
	if m := maxAfter.Load(); m > 1 {
		t.Errorf("%d requests in flight at once while paused, want 1", m)
	}
	untouched := 0
	for _, d := range ds {
		if got, _ := h.st.GetDelivery(d.ID); got.Attempts == 1 {
			untouched++
		}
	}
	failed := int(rc.n.Load()) - events
	t.Logf("breaker: paused after %d attempts (%d failed), %d failed requests in all (%d before the pause was seen, %d probes while paused), %d of %d deliveries delivered at their first attempt",
		pc.Attempts, int(pc.FailureRatio*float64(pc.Attempts)+0.5), failed, before, len(probes), untouched, events)
	// Without the breaker the 10ms retries would have made hundreds of
	// failed requests over the outage; with it: those before the pause,
	// the attempts already in flight then (PerWebhook), and the probes.
	if limit := int(before) + 4 + len(probes) + 1; failed > limit {
		t.Errorf("%d failed requests, want at most %d", failed, limit)
	}
	if untouched < events-failed {
		t.Errorf("%d deliveries delivered at their first attempt, want at least %d (never tried during the outage)", untouched, events-failed)
	}
	if hl := h.st.Health(w.ID); !hl.IsZero() {
		t.Errorf("health after recovery %+v", hl)
	}
	// The pause is logged at warn, with the webhook and the event whose
	// attempt tripped it; the resumption at info.
	levels := map[string]zapcore.Level{}
	for _, e := range h.logs.All() {
		m := e.ContextMap()
		if strings.HasPrefix(e.Message, "webhook paused") || strings.HasPrefix(e.Message, "webhook resumed") {
			levels[e.Message[:14]] = e.Level
			if m["webhook_id"] != w.ID || m["event_id"] == "" {
				t.Errorf("log %q lacks webhook_id or event_id: %v", e.Message, m)
			}
		}
	}
	if lp, ok := levels["webhook paused"]; !ok || lp != zapcore.WarnLevel || len(levels) != 2 || levels["webhook resume"] != zapcore.InfoLevel {
		t.Errorf("pause and resume logged at %v", levels)
	}
}

// TestAutoDisable: a webhook failing for longer than DisableAfter is
// disabled and reported; its deliveries are kept, unclaimed, and delivered
// once it is enabled again.
func TestAutoDisable(t *testing.T) {
	changes := newChangeLog()
	h := newHarness(t, func(_ *harness, c *Config) {
		c.Schedule = make(Schedule, 200)
		for i := range c.Schedule {
			c.Schedule[i] = 20 * time.Millisecond
		}
		c.Breaker = BreakerConfig{Off: true}
		c.DisableAfter = 300 * time.Millisecond
		c.OnHealth = changes.add
	})
	var down atomic.Bool
	down.Store(true)
	rc := h.newReceiver(func(i int, w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "nope", http.StatusInternalServerError)
		}
	})
	w := h.webhook(rc)
	ds := h.enqueue(w.ID, 3)
	h.d.Start()

	c := changes.wait(t, ChangeDisabled)
	if c.Cause != CauseFailing || c.WebhookID != w.ID || !strings.Contains(c.Reason, "HTTP 500") {
		t.Errorf("disabled change %+v", c)
	}
	got, _ := h.st.GetWebhook(w.ID)
	if got.Enabled || got.DisabledReason != c.Reason {
		t.Errorf("webhook %+v, want disabled with %q", got, c.Reason)
	}
	// Wait for the attempts in flight to end: nothing is claimed after.
	waitFor(t, "attempts to end", func() bool {
		h.d.mu.Lock()
		defer h.d.mu.Unlock()
		return h.d.inflight == 0
	})
	n := rc.n.Load()
	h.d.Notify()
	if _, ok, err := h.st.NextDue(); ok || err != nil {
		t.Errorf("NextDue = %v, %v while the only webhook is disabled", ok, err)
	}
	for _, d := range ds {
		if got, _ := h.st.GetDelivery(d.ID); got.State != store.StatePending {
			t.Errorf("delivery %+v, want pending (kept)", got)
		}
	}
	if depth, _ := h.st.QueueDepth(); depth != 3 {
		t.Errorf("QueueDepth = %d, want 3", depth)
	}

	down.Store(false)
	got.Enabled = true
	got.DisabledReason = ""
	if err := h.st.UpdateWebhook(got); err != nil {
		t.Fatal(err)
	}
	h.d.Notify()
	for _, d := range ds {
		h.waitState(d.ID, store.StateSucceeded)
	}
	if rc.n.Load() < n+3 {
		t.Errorf("receiver got %d requests after enabling, want 3", rc.n.Load()-n)
	}
	if hl := h.st.Health(w.ID); !hl.IsZero() {
		t.Errorf("health after enabling and success %+v", hl)
	}
}
